"""Training: one shared loop; the three experiments differ only by their weighting strategy."""
