"""Training images: a folder of photos, brought to the working size by the canonical pixel pipeline,
then random crops at several scales, flips and colour jitter. Where a per-image PGD delta was
precomputed (`rid attack`, same working size), the crop is taken at native resolution (a resize
would blur the delta into something no longer adversarial) and cropped and flipped with the image.
A file that fails to decode is reported once and replaced by another image."""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch.utils.data import Dataset

from ridtrain import pixels

DATA_MULTIPLE = 8  # working sizes of training data and of `rid attack` are multiples of the VAE factor


def find_images(root: str | Path) -> list[Path]:
    root = Path(root)
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise FileNotFoundError(f"no such image file or folder: {root}")
    return sorted(p for p in root.rglob("*") if pixels.is_image_path(p.relative_to(root)) and p.is_file())


def load_working(path: str | Path, side: int) -> torch.Tensor:
    """(3,h,w) float in [0,1] at the working size for `side`, as `rid attack` and training see it."""
    return pixels.working_image(pixels.to_float(pixels.load_image(path).rgb), side, DATA_MULTIPLE)[0]


def delta_path(delta_root: str | Path, image_root: str | Path, image: Path) -> Path:
    rel = image.relative_to(image_root) if Path(image_root).is_dir() else Path(image.name)
    return Path(delta_root) / rel.with_name(rel.name + ".safetensors")


class CropDataset(Dataset):
    """Items: (x crop (3,c,c), delta_pgd crop (3,c,c) or zeros, has_delta bool)."""

    def __init__(self, root, side=512, crop=128, crop_scale=(0.25, 1.0), flip=True, color_jitter=0.1, pgd_deltas=None, cache=False):
        self.root, self.files = Path(root), find_images(root)
        if not self.files:
            raise FileNotFoundError(f"no images under {root}")
        self.side, self.crop, self.crop_scale = side, crop, crop_scale
        self.flip, self.jitter, self.pgd_deltas = flip, color_jitter, pgd_deltas
        self.bad: set[int] = set()
        self.cache = {} if cache else None  # decoded working images, for small corpora read many times
        if pgd_deltas:
            found = sum(delta_path(pgd_deltas, self.root, f).is_file() for f in self.files)
            if not found:
                raise FileNotFoundError(f"pgd_deltas {pgd_deltas}: no delta matches any image under {root}")
            print(f"pgd deltas for {found} of {len(self.files)} images", file=sys.stderr)

    def __len__(self):
        return len(self.files)

    def _delta(self, path: Path, shape) -> torch.Tensor | None:
        if not self.pgd_deltas:
            return None
        file = delta_path(self.pgd_deltas, self.root, path)
        if not file.is_file():
            return None
        delta = load_file(file)["delta"].float()
        if delta.shape != shape:
            raise ValueError(f"{file}: delta shape {tuple(delta.shape)} != working image {tuple(shape)}; was it made with side={self.side}?")
        return delta

    def _load(self, i) -> tuple[int, torch.Tensor]:
        for j in [i] + torch.randperm(len(self.files)).tolist():
            if j in self.bad:
                continue
            if self.cache is not None and j in self.cache:
                return j, self.cache[j]
            try:
                x = load_working(self.files[j], self.side)
                if self.cache is not None:
                    self.cache[j] = x
                return j, x
            except pixels.ImageError as err:
                print(f"skipping {self.files[j]}: {err}", file=sys.stderr)
                self.bad.add(j)
        raise FileNotFoundError(f"no decodable image under {self.root}")

    def __getitem__(self, i):
        i, x = self._load(i)
        delta = self._delta(self.files[i], x.shape)
        has_delta = delta is not None
        if has_delta:
            both = self._native_crop(torch.cat([x, delta]))  # (6, c, c): image and delta cut together
            x, delta = both[:3], both[3:]
        else:
            x, delta = self._random_crop(x), torch.zeros(3, self.crop, self.crop)
            if self.jitter:  # never with a delta: jitter would make the PGD delta stale
                x = self._color_jitter(x)
        if self.flip and torch.rand(()) < 0.5:
            x, delta = x.flip(-1), delta.flip(-1)
        return x, delta, has_delta

    def _random_crop(self, t: torch.Tensor) -> torch.Tensor:
        h, w = t.shape[-2:]
        lo, hi = self.crop_scale
        s = max(1, min(h, w, round(min(h, w) * (lo + (hi - lo) * float(torch.rand(()))))))
        top, left = int(torch.randint(0, h - s + 1, ())), int(torch.randint(0, w - s + 1, ()))
        t = t[:, top : top + s, left : left + s]
        return F.interpolate(t[None], size=(self.crop, self.crop), mode="bilinear", antialias=True, align_corners=False)[0]

    def _native_crop(self, t: torch.Tensor) -> torch.Tensor:
        """A crop x crop window at the working resolution; no resize touches the delta."""
        h, w = t.shape[-2:]
        if min(h, w) < self.crop:
            raise ValueError(f"crop {self.crop} is larger than the working image {h}x{w} (side {self.side})")
        top, left = int(torch.randint(0, h - self.crop + 1, ())), int(torch.randint(0, w - self.crop + 1, ()))
        return t[:, top : top + self.crop, left : left + self.crop]

    def _color_jitter(self, x: torch.Tensor) -> torch.Tensor:
        a = self.jitter
        b, c, s = (1 + a * (2 * torch.rand(3) - 1)).tolist()
        gray = x.mean(0, keepdim=True)
        x = (x - gray) * s + gray  # saturation
        x = (x - x.mean()) * c + x.mean()  # contrast
        return (x * b).clamp(0, 1)  # brightness
