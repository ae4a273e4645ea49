"""Training: typed config, data, losses, the loop and checkpoints."""
