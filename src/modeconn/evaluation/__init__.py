"""Measuring weight vectors: loss and error, BN recomputation, points, paths, planes, ensembles."""
