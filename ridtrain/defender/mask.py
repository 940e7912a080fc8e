"""Where a photo can hide the change: a texture mask that scales delta down where the photo is flat.

Why: on flat regions (skies, walls) a smooth delta of one or two levels shows at 100 %, while the
same change in texture does not (docs/efficacy/README.md, "Visibility on large photographs"). The
mask is part of the generator's graph (generators._Generator.forward), so every runtime that runs
the exported model applies it at parity, and training learns to spend the budget where it is.

    y    = 255 * luma(x)                       (Rec. 601 weights; x in [0,1])
    dev  = avgpool_w((y - avgpool_w(y))^2)     (the local energy of the photo's detail)
    mask = clip((sqrt(dev) - offset) / scale, floor, 1)

`dev` is not the local variance: a linear gradient equals its own local mean, so it has no
detail and counts as flat, however steep. That is what masking needs (a sky's gradient hides
nothing), and the two passes are stable in float32, where E[y²] - E[y]² is not.

over a w x w window at the working size (7 px there is about 20 px of a 2560x1600 photo). offset
and scale are in 8-bit levels: below `offset` levels of local std the photo counts as flat and
keeps `floor` of delta; from offset + scale on it keeps all of it. The defaults are the 30-minute
CPU run of ../shared/FACTS.md ("A mask and a real purifier in training").
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

LUMA = (0.299, 0.587, 0.114)


class TextureMask(nn.Module):
    def __init__(self, window: int = 7, offset: float = 1.5, scale: float = 6.0, floor: float = 0.05):
        super().__init__()
        if window < 1 or window % 2 == 0:
            raise ValueError(f"the mask's window must be odd and positive, got {window}")
        if scale <= 0 or not 0 <= floor <= 1:
            raise ValueError(f"the mask needs scale > 0 and 0 <= floor <= 1, got scale {scale}, floor {floor}")
        self.window, self.offset, self.scale, self.floor = window, offset, scale, floor
        self.register_buffer("luma", torch.tensor(LUMA).view(1, 3, 1, 1) * 255, persistent=False)

    def local_std(self, x: torch.Tensor) -> torch.Tensor:
        """(N,1,H,W): sqrt(dev), the RMS of the luma's detail around each pixel, in 8-bit levels."""
        y = (x * self.luma).sum(dim=1, keepdim=True)  # (N, 1, H, W), levels
        pool = lambda t: F.avg_pool2d(t, self.window, stride=1, padding=self.window // 2, count_include_pad=False)  # noqa: E731
        return pool((y - pool(y)) ** 2).sqrt()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N,1,H,W) in [floor, 1], for x (N,3,H,W) in [0,1]."""
        return ((self.local_std(x) - self.offset) / self.scale).clamp(self.floor, 1.0)
