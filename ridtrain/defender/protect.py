"""The PyTorch reference protection of one photo, and the bytes-in, bytes-out step that `rid
protect` (rid/protect.py) and the server (server_fallback/uploads.py) both call.

Each photo goes through the canonical pipeline of ridtrain.pixels; the generator runs once per
photo at the working size, and its delta is resized back to the photo's own size, so the output
has exactly the input's (oriented) size and every pixel is within +-eps levels of the input.
"""

from __future__ import annotations

import numpy as np
import torch

import ridpixels
from ridtrain.defender.generators import check_eps
from ridtrain.defender.seeds import code_for
from ridtrain.pixels import MAX_PIXELS, add_delta, check_format, encode_image, load_image, to_float, to_uint8, working_image


def protect_array(gen, rgb: np.ndarray, eps_levels: int | None = None, seed: bytes | str | None = None) -> np.ndarray:
    """uint8 (H,W,3) -> protected uint8 (H,W,3); eps in 8-bit levels, default the model's. A
    randomised generator gets the code of `seed` (ridtrain/defender/seeds.py); None draws a fresh seed,
    which is what real use must do."""
    out = to_uint8(protected_float(gen, rgb, eps_levels, seed))
    ridpixels.check_bound(rgb, out, check_eps(gen.config.eps if eps_levels is None else eps_levels))
    return out


def protected_float(gen, rgb: np.ndarray, eps_levels: int | None = None, seed: bytes | str | None = None) -> torch.Tensor:
    """uint8 (H,W,3) -> the protected photo before rounding, float32 (1,3,H,W) in [0,1]."""
    eps = check_eps(gen.config.eps if eps_levels is None else eps_levels) / 255.0
    x = to_float(rgb).to(gen.device)  # (1, 3, H, W)
    with torch.inference_mode():
        delta = gen(working_image(x, **gen.working_size_rule), eps, code_tensor(gen, seed))  # (1, 3, hw, ww)
        return add_delta(x, delta, eps).cpu()


def code_tensor(gen, seed: bytes | str | None) -> torch.Tensor | None:
    """The (1, code_dim) code of a seed for a randomised generator (a fresh seed when None);
    None for a deterministic one, which takes no code."""
    if not gen.code_dim:
        return None
    return torch.from_numpy(code_for(seed, gen.code_dim))[None]


class TorchProtector:
    """The PyTorch reference behind the same call as ridexport.runtime.OnnxProtector."""

    def __init__(self, gen):
        self.gen, self.config = gen, gen.config

    def protect_array(self, rgb: np.ndarray, eps_levels: int | None = None, seed: bytes | str | None = None) -> np.ndarray:
        return protect_array(self.gen, rgb, eps_levels, seed)

    def protected_float(self, rgb: np.ndarray, eps_levels: int | None = None, seed: bytes | str | None = None) -> np.ndarray:
        return protected_float(self.gen, rgb, eps_levels, seed).numpy()


def protect_bytes(protector, data: bytes, eps: int | None = None, fmt: str = "png", keep_metadata: bool = False,
                  max_pixels: int = MAX_PIXELS, seed: bytes | str | None = None) -> bytes:
    """An image file's bytes -> the protected image encoded as `fmt` (ridpixels.OUTPUT_FORMATS:
    png, jpeg, webp), with a TorchProtector or OnnxProtector. The CLI and the server both call
    this, so the same photo and seed give the same bytes (seed None: a fresh one). Raises
    ImageError: alpha_not_supported, before any protecting, for a photo with transparent parts
    asked for as JPEG."""
    dec = load_image(data, max_pixels)
    check_format(fmt, dec.alpha)
    out = protector.protect_array(dec.rgb, eps, seed)
    return encode_image(out, dec.alpha, fmt, exif=dec.exif if keep_metadata else None, icc=dec.icc_profile)
