"""Permutation symmetries of any traceable network, and aligning one network to another with them."""
