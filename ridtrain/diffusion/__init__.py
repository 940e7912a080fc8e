"""The diffusion models the fight is over: loading diffusers targets (real or proxy), their
denoising and Adv-SDS losses, and the small models this project trains as stand-ins (tiny, proxy).
Both sides use them; they use neither side."""
