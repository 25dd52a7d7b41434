"""LightningModules (model, loss, metrics). The AU detector lands with the sweeps issue (#3)."""
