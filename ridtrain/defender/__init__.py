"""The defender: the generator (generators, seeds), its training (train, augment) against the
diffusion targets, and the PyTorch reference protection of a photo (protect)."""
