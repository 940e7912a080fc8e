"""`rid eval`: how much a perturbation disturbs the targets, against noise of the same size.

Protected images are made exactly as a user gets them (`rid protect`: full size, 8 bits), then
clean and protected go through the attacker's pre-processing (the canonical working size) into
each target. Every condition sees the same draws of t, n and the VAE posterior (common random
numbers, seeded per image and sample), so differences between conditions are not sampling noise.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import torch

from ridtrain import pixels
from ridtrain.data import DATA_MULTIPLE, find_images
from ridtrain.sds import adv_sds_loss, denoise_loss

CONDITIONS = ("clean", "protected", "gaussian", "uniform")


def _working(rgb: np.ndarray, side: int) -> torch.Tensor:
    return pixels.working_image(pixels.to_float(rgb), side, DATA_MULTIPLE)


def conditions(clean: torch.Tensor, protected: torch.Tensor, eps: float, gen: torch.Generator) -> dict:
    """The four inputs compared: clean, protected, Gaussian noise with the protected delta's L2
    norm, uniform noise in [-eps, eps]. The noises are added at the working size in float (no
    8-bit rounding), while the protected image went through the full-size 8-bit path and the
    attacker's resize: noise gets the more favourable treatment of the two."""
    delta = protected - clean
    gauss = torch.randn(clean.shape, generator=gen)
    gauss *= delta.norm() / gauss.norm().clamp_min(1e-12)
    uniform = (2 * torch.rand(clean.shape, generator=gen) - 1) * eps
    return {
        "clean": clean,
        "protected": protected,
        "gaussian": (clean + gauss).clamp(0, 1),
        "uniform": (clean + uniform).clamp(0, 1),
    }


@torch.no_grad()
def target_losses(target, x: torch.Tensor, samples: int, seed: int) -> tuple[float, float]:
    """Mean Adv-SDS objective and denoising MSE over `samples` seeded draws of (t, n, posterior)."""
    sds = mse = 0.0
    for k in range(samples):
        g = torch.Generator(device=target.alphas_cumprod.device).manual_seed(seed + k)
        sds += adv_sds_loss(target, x, generator=g).item()
        g.manual_seed(seed + k)
        mse += denoise_loss(target, x, generator=g).item()
    return sds / samples, mse / samples


def delta_stats(clean: np.ndarray, protected: np.ndarray) -> dict:
    """L-inf (8-bit levels), L2 and PSNR on the [0,1] scale, SSIM, of full-size 8-bit images."""
    from kornia.metrics import ssim

    a, b = clean.astype(np.float64) / 255, protected.astype(np.float64) / 255
    mse = float(np.mean((a - b) ** 2))
    ta, tb = (torch.from_numpy(v).permute(2, 0, 1)[None].float() for v in (a, b))
    return {
        "linf_levels": int(np.abs(clean.astype(int) - protected.astype(int)).max()),
        "l2": float(np.sqrt(np.sum((a - b) ** 2))),
        "psnr": math.inf if mse == 0 else 10 * math.log10(1 / mse),
        "ssim": float(ssim(ta, tb, 11).mean()),
    }


def evaluate(targets, images, protected_dir=None, gen=None, eps_levels=None, side=512, samples=4, seed=0) -> dict:
    """Either `gen` (a generator, run through the `rid protect` path) or `protected_dir` (images
    with the same relative names as `images`, any of our output suffixes) gives the protected images."""
    from ridtrain.protect import protect_array

    if (gen is None) == (protected_dir is None):
        raise ValueError("give exactly one of a generator or a folder of protected images")
    eps_levels = eps_levels or (gen.config.eps if gen is not None else 8)
    root, files = Path(images), find_images(images)
    sums = {tg.name: {c: [0.0, 0.0] for c in CONDITIONS} for tg in targets}
    stats, seconds = [], 0.0
    for i, path in enumerate(files):
        clean = pixels.load_image(path).rgb
        if gen is not None:
            tic = time.perf_counter()
            protected = protect_array(gen, clean, eps_levels)
            seconds += time.perf_counter() - tic
        else:
            match = _match(Path(protected_dir), root, path)
            protected = pixels.load_image(match).rgb
            if protected.shape != clean.shape:
                raise ValueError(f"{match}: protected image is {protected.shape[1]}x{protected.shape[0]}, the clean one {clean.shape[1]}x{clean.shape[0]}")
        stats.append(delta_stats(clean, protected))
        noise_gen = torch.Generator().manual_seed(seed + 1_000_003 * i)
        inputs = conditions(_working(clean, side), _working(protected, side), eps_levels / 255, noise_gen)
        for tg in targets:
            for name, x in inputs.items():
                sds, mse = target_losses(tg, x.to(tg.alphas_cumprod.device), samples, seed + 7919 * i)
                sums[tg.name][name][0] += sds / len(files)
                sums[tg.name][name][1] += mse / len(files)
    return {
        "images": len(files),
        "eps_levels": eps_levels,
        "side": side,
        "samples_per_image": samples,
        "targets": {t: {c: {"adv_sds": v[0], "denoise_mse": v[1]} for c, v in conds.items()} for t, conds in sums.items()},
        "delta": {k: float(np.mean([s[k] for s in stats])) for k in stats[0]} if stats else {},
        "seconds_per_image": seconds / len(files) if gen is not None and files else None,
    }


def _match(protected_dir: Path, root: Path, image: Path) -> Path:
    rel = image.relative_to(root) if root.is_dir() else Path(image.name)
    for suffix in (".png", ".webp", rel.suffix):
        candidate = protected_dir / rel.with_suffix(suffix)
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"no protected image for {rel} in {protected_dir}")
