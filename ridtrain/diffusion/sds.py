"""The objectives: Adv-SDS (what RID minimises) and the denoising loss (what AdvDM maximises).

Adv-SDS for one target, x' = x + delta in [0,1]:
    z = encode(x'),  t ~ U{t_min..t_max},  n ~ N(0, I),  z_t = sqrt(a_t) z + sqrt(1 - a_t) n
    n̂ = UNet(z_t, t, text(" "))   (no gradient),   w(t) = 1 - a_t
    loss = 1/2 || z_t - stopgrad(z_t + w (n̂ - n)) ||²      (sum over C,H,W; mean over the batch)
d loss / d z_t = -w (n̂ - n), so a descent step moves z_t along +w (n̂ - n), off the data manifold.
The gradient reaches delta through the VAE encoder only.
"""

from __future__ import annotations

import torch

from ridtrain.diffusion.targets import DiffusionTarget


def sample_timesteps(target: DiffusionTarget, n: int, t_min: int = 0, t_max: int | None = None, generator=None) -> torch.Tensor:
    t_max = target.num_timesteps - 1 if t_max is None else t_max
    if not 0 <= t_min <= t_max < target.num_timesteps:
        raise ValueError(f"need 0 <= t_min <= t_max < {target.num_timesteps}, got {t_min}..{t_max}")
    device = target.alphas_cumprod.device
    return torch.randint(t_min, t_max + 1, (n,), device=device, generator=generator)


def _draw(target, z, t, noise, t_range, generator):
    if t is None:
        t = sample_timesteps(target, len(z), *t_range, generator=generator)
    if noise is None:
        noise = torch.randn(z.shape, device=z.device, generator=generator)
    return t, noise


def adv_sds_loss(target: DiffusionTarget, x: torch.Tensor, t=None, noise=None, t_range=(0, None), generator=None) -> torch.Tensor:
    """The Adv-SDS loss of images x in [0,1] against one target (differentiable in x)."""
    z = target.encode(x, generator=generator)
    t, noise = _draw(target, z, t, noise, t_range, generator)
    z_t = target.add_noise(z, t, noise)
    with torch.no_grad():
        n_hat = target.predict_noise(z_t, t)
        w = (1 - target.alphas_cumprod[t]).view(-1, 1, 1, 1)
        goal = z_t + w * (n_hat - noise)
    return 0.5 * (z_t - goal).pow(2).flatten(1).sum(1).mean()


def ensemble_sds_loss(targets, x, t_range=(0, None), generator=None) -> torch.Tensor:
    """Mean Adv-SDS loss over targets; each target draws its own t and n."""
    return sum(adv_sds_loss(tg, x, t_range=t_range, generator=generator) for tg in targets) / len(targets)


def denoise_loss(target: DiffusionTarget, x: torch.Tensor, t=None, noise=None, t_range=(0, None), generator=None) -> torch.Tensor:
    """The target's training loss E||UNet(z_t, t) - n||² (mean over elements), differentiable in x
    through both the encoder and the UNet. AdvDM maximises it; eval reports it."""
    z = target.encode(x, generator=generator)
    t, noise = _draw(target, z, t, noise, t_range, generator)
    return (target.predict_noise(target.add_noise(z, t, noise), t) - noise).pow(2).mean()
