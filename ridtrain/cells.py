"""Period cells: the torch arithmetic of the attacks on a repeating tile. The attacker's
purifications (ridtrain/attacker/purify.py) attack with it, and training
(ridtrain/defender/train.py) augments with the same attacks, so it sits below both sides."""

from __future__ import annotations

import torch


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
