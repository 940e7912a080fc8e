"""Differentiable robustness augmentations applied to x + delta before the targets see it, so that
the perturbation survives JPEG re-encoding and resizing."""

from __future__ import annotations

import kornia
import torch
import torch.nn.functional as F


def _uniform(n, lo, hi, device):
    return lo + (hi - lo) * torch.rand(n, device=device)


def random_jpeg(x: torch.Tensor, quality=(50.0, 95.0)) -> torch.Tensor:
    """kornia's differentiable JPEG at a random quality per image."""
    q = _uniform(len(x), *quality, device=x.device)
    return kornia.enhance.jpeg_codec_differentiable(x, q)


def random_resize(x: torch.Tensor, scale=(0.5, 1.0)) -> torch.Tensor:
    """Down-scale by a random factor and back (bilinear, antialiased), keeping the shape."""
    s = float(_uniform(1, *scale, device="cpu"))
    h, w = x.shape[-2:]
    small = F.interpolate(x, size=(max(1, round(h * s)), max(1, round(w * s))), mode="bilinear", antialias=True, align_corners=False)
    return F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)


def robustness_augment(x: torch.Tensor, cfg) -> torch.Tensor:
    if cfg.aug_jpeg_prob > 0 and torch.rand(()) < cfg.aug_jpeg_prob:
        x = random_jpeg(x, cfg.aug_jpeg_quality)
    if cfg.aug_resize_prob > 0 and torch.rand(()) < cfg.aug_resize_prob:
        x = random_resize(x, cfg.aug_resize_scale)
    return x.clamp(0, 1)
