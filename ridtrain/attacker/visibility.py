"""How visible a protection is on a large photograph: the flat-region figure of issue 31.

The eye finds a perturbation where the photo gives it nothing to hide behind (a clear sky, a wall,
a misty lake), and there it sees the smooth, coherent part of it (stripes, blotches) far more than
pixel-scale grain of the same RMS. So, on the photo at full size (no resizing: a pattern drawn at the
working size, shorter side 512, is upsampled 3.125x on a 2560x1600 photo, and that is what shows at
100 %):

- **Flat pixels** are those where the luma of the ORIGINAL photo has a standard deviation below
  `FLAT_STD` = 2 levels in a `WINDOW` = 15 px square window centred on the pixel; the rest are
  textured. The flat fraction is their share of the photo.
- **The smooth delta** is delta = protected - original, in 8-bit levels, taken in luma (BT.601:
  0.299 R + 0.587 G + 0.114 B, the weights JPEG uses), blurred with a Gaussian of `SIGMA` = 2 px.
- **The flat figure** is the RMS of the smooth delta over the flat pixels, in levels. The same RMS
  over the textured pixels is given for comparison (it should be allowed to be larger: texture masks
  it), and so are the RMS of the raw (unblurred) luma delta in both regions.

Why luma and not every channel: a perturbation shows as a change of brightness first; the eye
resolves colour-only changes at far coarser scales and lower contrast. Luma is also what the flat
mask is computed on, so the figure compares like with like. A delta that is the same in R, G and
B (grey stripes) scores the same in luma as per channel; a colour-only delta scores lower. For
comparison `flat_smooth_rms_rgb` is the RMS over the flat pixels of all three blurred channels;
on the bundled model's deltas on 2560x1600 photos it reads 0.5-9 % below the luma figure, never
above, so luma is the stricter of the two there. Issue 31 and FACTS.md quote 1.2-1.7 levels for
the bundled model without saying which; bench/visibility_report.py prints both (its table is in
docs/efficacy/README.md, "Visibility on large photographs").

Both filters reflect at the border and come from kornia (a dependency already): a box filter for
the local mean and mean square (std = sqrt(E[y^2] - E[y]^2), in float64 so that the difference does
not cancel), and a Gaussian of kernel size 2*ceil(4*sigma)+1.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch

WINDOW = 15  # px, side of the square window of the local luma std
FLAT_STD = 2.0  # levels: below this local luma std a pixel is flat
SIGMA = 2.0  # px, the Gaussian that keeps the part of delta the eye sees
LUMA = (0.299, 0.587, 0.114)  # BT.601


@dataclass(frozen=True)
class Visibility:
    flat_fraction: float  # share of the photo's pixels that are flat
    flat_smooth_rms: float  # THE figure: RMS of the blurred luma delta over flat pixels, levels
    textured_smooth_rms: float  # the same over textured pixels
    flat_raw_rms: float  # RMS of the unblurred luma delta over flat pixels
    textured_raw_rms: float  # ... and over textured ones
    flat_smooth_rms_rgb: float  # the flat figure per channel: RMS of the blurred R, G, B deltas over flat pixels

    def as_dict(self) -> dict:
        return asdict(self)


def _levels(img: np.ndarray) -> torch.Tensor:
    """(H,W,3) uint8, or float in 8-bit levels (0..255) -> float64 (1,3,H,W)."""
    a = np.asarray(img)
    if a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) RGB image, got shape {a.shape}")
    return torch.from_numpy(a.astype(np.float64)).permute(2, 0, 1)[None]


def luma(x: torch.Tensor) -> torch.Tensor:
    """(N,3,H,W) RGB -> (N,1,H,W) BT.601 luma, same units."""
    w = torch.tensor(LUMA, dtype=x.dtype).view(1, 3, 1, 1)
    return (x * w).sum(1, keepdim=True)


def local_std(y: torch.Tensor, window: int = WINDOW) -> torch.Tensor:
    """Standard deviation of y (N,1,H,W) in a window x window square around each pixel."""
    from kornia.filters import box_blur

    y = y - y.mean()  # smaller numbers, less cancellation in E[y^2] - E[y]^2
    mean = box_blur(y, (window, window), border_type="reflect")
    mean_sq = box_blur(y * y, (window, window), border_type="reflect")
    return (mean_sq - mean * mean).clamp_min(0).sqrt()


def flat_mask(original: np.ndarray, window: int = WINDOW, flat_std: float = FLAT_STD) -> np.ndarray:
    """(H,W) bool: where the original photo's local luma std is below flat_std levels."""
    return (local_std(luma(_levels(original)), window) < flat_std)[0, 0].numpy()


def smooth(d: torch.Tensor, sigma: float = SIGMA) -> torch.Tensor:
    """(N,C,H,W) blurred by a Gaussian of sigma px (reflecting at the border)."""
    from kornia.filters import gaussian_blur2d

    k = 2 * math.ceil(4 * sigma) + 1
    return gaussian_blur2d(d, (k, k), (sigma, sigma), border_type="reflect")


def visibility(original: np.ndarray, protected: np.ndarray, window: int = WINDOW, flat_std: float = FLAT_STD,
               sigma: float = SIGMA) -> Visibility:
    """The flat-region figure (module docstring) of `protected` against `original`, both (H,W,3)
    RGB at full size: uint8, or floats in 8-bit levels. A region with no pixels gives nan."""
    x, p = _levels(original), _levels(protected)
    if x.shape != p.shape:
        raise ValueError(f"original {tuple(x.shape[2:])} and protected {tuple(p.shape[2:])} differ in size")
    flat = local_std(luma(x), window)[0, 0] < flat_std
    d = torch.cat([luma(p - x), p - x], 1)  # (1, 4, H, W): luma, R, G, B
    s = smooth(d, sigma)[0]
    d = d[0]

    def rms(v: torch.Tensor, where: torch.Tensor) -> float:  # v (C,H,W): over the C channels at `where`
        return float(v[:, where].square().mean().sqrt()) if bool(where.any()) else math.nan

    return Visibility(flat_fraction=float(flat.double().mean()), flat_smooth_rms=rms(s[:1], flat),
                      textured_smooth_rms=rms(s[:1], ~flat), flat_raw_rms=rms(d[:1], flat),
                      textured_raw_rms=rms(d[:1], ~flat), flat_smooth_rms_rgb=rms(s[1:], flat))
