"""The weight-space core: curve families, the flat view of a network, the curve model, planes."""
