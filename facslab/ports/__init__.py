"""Weights trained elsewhere, read into facslab's PyTorch networks."""
