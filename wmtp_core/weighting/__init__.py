"""Per-token weighting for the three experiments: critic TD/GAE weights, Rho-1 excess-loss weights, ablations."""
