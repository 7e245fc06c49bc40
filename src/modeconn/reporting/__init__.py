"""Figures and the HTML report, drawn from typed results."""
