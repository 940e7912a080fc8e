"""Training and judging in PyTorch, one subpackage per side: defender (the generator and its
training), attacker (the attacks and the judge), diffusion (the models both work against); the
shared modules (pixels, data, corpus, config, bundled) beside them."""
