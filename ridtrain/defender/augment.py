"""Differentiable robustness augmentations applied to x + delta before the targets see it, so that
the perturbation survives JPEG re-encoding and resizing; and the two torch primitives of the
attacks that training also uses as augmentations (cell_mean, tile_fit: ridtrain/attacker/purify.py
attacks with them, ridtrain/defender/train.py trains against them)."""

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


def cell_mean(x: torch.Tensor, period: int) -> torch.Tensor:
    """(N, C, period, period): the mean of x's (N, C, h, w) period x period cells, less its flat
    mean per channel."""
    n, c, h, w = x.shape
    cell = x.reshape(n, c, h // period, period, w // period, period).mean(dim=(2, 4))
    return cell - cell.mean(dim=(2, 3), keepdim=True)


def tile_fit(x: torch.Tensor, basis: torch.Tensor, period: int) -> torch.Tensor:
    """x (N, C, h, w) fitted, in each period x period cell, by least squares with the tiles
    `basis` (T, C·period², in pixel_shuffle's order); differentiable in x and in the basis. A
    ridge of 1e-6 of the Gram matrix's mean diagonal keeps near-zero tiles solvable."""
    n, c, h, w = x.shape
    if h % period or w % period:
        raise ValueError(f"the tile fit needs sides that are multiples of {period}, got {h}x{w}")
    cells = x.reshape(n, c, h // period, period, w // period, period).permute(0, 2, 4, 1, 3, 5).reshape(n, -1, c * period**2)
    gram = basis @ basis.T
    gram = gram + 1e-6 * gram.diagonal().mean() * torch.eye(len(basis), device=x.device, dtype=x.dtype)
    fit = torch.linalg.solve(gram, basis @ cells.transpose(1, 2)).transpose(1, 2) @ basis  # (N, cells, C·p²)
    return fit.reshape(n, h // period, w // period, c, period, period).permute(0, 3, 1, 4, 2, 5).reshape(n, c, h, w)
