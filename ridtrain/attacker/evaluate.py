"""`rid eval`: how much a perturbation disturbs the targets, against noise of the same size.

Protected images are made exactly as a user gets them (`rid protect`: full size, 8 bits), then
clean and protected go through the attacker's pre-processing (the canonical working size) into
each target. Every condition sees the same draws of t, n and the VAE posterior (common random
numbers, seeded per image and sample), so differences between conditions are not sampling noise.

With purifications (ridtrain/attacker/purify.py), clean and protected photos also go through each one
before the attacker's pre-processing, with the same draws, and the report gives the efficacy left
and "kept" = 100 * efficacy after / efficacy without it. Every purification, the subtracting
ones included, is applied to the clean photos too: an attacker who cannot tell protected photos
from clean ones purifies them all, so the clean baseline is the purified clean photo.
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path

import numpy as np
import torch

from ridtrain import pixels
from ridtrain.attacker.purify import (CODE_SEARCH_STARTS, CODE_SEARCH_STEPS, MEAN_DELTA_PHOTOS, PurifyContext, check_names,
                                      mean_working_delta, public_tiles, purify)
from ridtrain.data import DATA_MULTIPLE, find_images
from ridtrain.diffusion.sds import adv_sds_loss, denoise_loss
from ridtrain.diffusion.taef2 import latent_shift

CONDITIONS = ("clean", "protected", "gaussian", "uniform")
LATENT_SIDE = 512  # the attacker's scale for the latent shift: FLUX.2 personalization reads photos at 512 and up
PURIFIED_CONDITIONS = ("clean", "protected")  # the noise baselines are reported unpurified only
MEASURES = ("adv_sds", "denoise_mse")


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


def resolve_eps(gen, eps_levels: int | None) -> int:
    """The bound evaluated: the one asked for, else the generator's, else 8 (--protected)."""
    return eps_levels or (gen.config.eps if gen is not None else 8)


def evaluate(targets, images, protected_dir=None, gen=None, eps_levels=None, side=512, samples=4, seed=0,
             purifications=(), context: PurifyContext | None = None, encoders: dict | None = None,
             latent_side: int = LATENT_SIDE) -> dict:
    """Either `gen` (a generator, run through the `rid protect` path) or `protected_dir` (images
    with the same relative names as `images`, any of our output suffixes) gives the protected images.
    `purifications` (names of ridtrain.attacker.purify.PURIFICATIONS, with the `context` the subtracting
    ones need) are measured on top, with the same draws as the unpurified photos. `encoders`
    ({name: latent encoder}, e.g. TAEF2) add the relative latent shift at `latent_side`, the
    attacker's scale (report["latent"])."""
    from ridtrain.defender.protect import protect_array

    if (gen is None) == (protected_dir is None):
        raise ValueError("give exactly one of a generator or a folder of protected images")
    purifications = check_names(purifications)
    eps_levels = resolve_eps(gen, eps_levels)
    root, files = Path(images), find_images(images)
    sums = {tg.name: {c: [0.0, 0.0] for c in CONDITIONS} for tg in targets}
    purified = {p: {tg.name: {c: [0.0, 0.0] for c in PURIFIED_CONDITIONS} for tg in targets} for p in purifications}
    latent = LatentShifts(encoders or {}, purifications, latent_side, len(files))
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
        draws = seed + 7919 * i  # the same (t, n, posterior) for every condition and purification of this image
        _accumulate(sums, targets, inputs, samples, draws, len(files))
        latent.add(clean, protected, eps_levels, torch.Generator().manual_seed(seed + 1_000_003 * i + 1))
        # the noise that a purification adds: one draw per photo, the same for its clean and protected copies
        photo_context = dataclasses.replace(context or PurifyContext(), noise_seed=seed + 1_000_003 * i + 2)
        for name in purifications:
            pair = purify(clean, name, photo_context), purify(protected, name, photo_context)
            inputs = {"clean": _working(pair[0], side), "protected": _working(pair[1], side)}
            _accumulate(purified[name], targets, inputs, samples, draws, len(files))
            latent.add_purified(name, *pair)
    report = {
        "images": len(files),
        "eps_levels": eps_levels,
        "side": side,
        "samples_per_image": samples,
        "targets": _as_measures(sums),
        "delta": {k: float(np.mean([s[k] for s in stats])) for k in stats[0]} if stats else {},
        "seconds_per_image": seconds / len(files) if gen is not None and files else None,
    }
    if purifications:
        report["purified"] = {name: _as_measures(per) for name, per in purified.items()}
        report["kept_pct"] = kept_pct(report)
    if encoders:
        report["latent"] = latent.report()
    return report


class LatentShifts:
    """The relative latent shift |E(x') - E(x)| / |E(x)| of each encoder, mean over the photos: x'
    protected, or one of the noise baselines of conditions() (drawn at the latent side), and x' and
    x both purified by each purification. Photos are encoded at `side` (the short side, multiples
    of the encoders' stride 8), the scale an attacker's model reads them at."""

    def __init__(self, encoders: dict, purifications, side: int, images: int):
        self.encoders, self.side, self.images = encoders, side, images
        self.sums = {e: dict.fromkeys(CONDITIONS[1:], 0.0) for e in encoders}
        self.purified = {p: dict.fromkeys(encoders, 0.0) for p in purifications}

    def _shifts(self, clean: torch.Tensor, others: dict) -> dict:
        out = {}
        for name, encoder in self.encoders.items():
            device = next(encoder.parameters()).device
            with torch.no_grad():
                z = encoder(clean.to(device))
                out[name] = {c: latent_shift(z, encoder(x.to(device))).item() for c, x in others.items()}  # one photo
        return out

    def add(self, clean: np.ndarray, protected: np.ndarray, eps_levels: int, noise_gen: torch.Generator) -> None:
        if not self.encoders:
            return
        inputs = conditions(_working(clean, self.side), _working(protected, self.side), eps_levels / 255, noise_gen)
        for name, shifts in self._shifts(inputs.pop("clean"), inputs).items():
            for c, v in shifts.items():
                self.sums[name][c] += v / self.images

    def add_purified(self, purification: str, clean: np.ndarray, protected: np.ndarray) -> None:
        if not self.encoders:
            return
        for name, shifts in self._shifts(_working(clean, self.side), {"protected": _working(protected, self.side)}).items():
            self.purified[purification][name] += shifts["protected"] / self.images

    def report(self) -> dict:
        out = {"measure": "|E(x') - E(x)| / |E(x)|, mean over the photos", "side": self.side, "shift": self.sums}
        if self.purified:
            out["purified"] = self.purified
            out["kept_pct"] = {p: {e: _pct(v, self.sums[e]["protected"]) for e, v in per.items()} for p, per in self.purified.items()}
        return out


def _accumulate(sums: dict, targets, inputs: dict, samples: int, draws: int, images: int) -> None:
    """Add (Adv-SDS, denoising MSE) / images of each input, for each target, to sums[target][input]."""
    for tg in targets:
        for name, x in inputs.items():
            sds, mse = target_losses(tg, x.to(tg.alphas_cumprod.device), samples, draws)
            sums[tg.name][name][0] += sds / images
            sums[tg.name][name][1] += mse / images


def _as_measures(sums: dict) -> dict:
    return {t: {c: dict(zip(MEASURES, v)) for c, v in conds.items()} for t, conds in sums.items()}


def kept_pct(report: dict) -> dict:
    """purification -> target -> measure -> 100 * (efficacy after it) / (efficacy without it);
    None where the unpurified efficacy is 0."""
    out = {}
    for name, per_target in report["purified"].items():
        out[name] = {}
        for tg, conds in per_target.items():
            base = report["targets"][tg]
            out[name][tg] = {m: _pct(conds["protected"][m] - conds["clean"][m], base["protected"][m] - base["clean"][m])
                             for m in MEASURES}
    return out


def _pct(value: float, reference: float) -> float | None:
    return 100 * value / reference if reference else None


def latent_table(report: dict) -> str:
    """Rows: the protected photo, the noise baselines of the same size and each purification; per
    encoder, the relative latent shift (and for purifications the % of the unpurified shift kept)."""
    latent = report["latent"]
    encoders = list(latent["shift"])
    lines = [f"relative latent shift |E(x') - E(x)| / |E(x)| at side {latent['side']}",
             f"{'input':24}" + "".join(f"{e:>22}" for e in encoders)]
    for c in CONDITIONS[1:]:
        lines.append(f"{c:24}" + "".join(f"{latent['shift'][e][c]:.4f}".rjust(22) for e in encoders))
    for p, per in latent.get("purified", {}).items():
        kept = latent["kept_pct"][p]
        cells = [f"{per[e]:.4f} ({'n/a' if kept[e] is None else f'{kept[e]:.1f} %'})" for e in encoders]
        lines.append(f"{'protected, ' + p:24}" + "".join(c.rjust(22) for c in cells))
    return "\n".join(lines)


def kept_table(report: dict, measure: str = "denoise_mse") -> str:
    """Rows: no purification and each purification; per target, the efficacy (protected - clean)
    and the percentage of the unpurified efficacy kept."""
    targets = list(report["targets"])
    lines = [f"efficacy = protected - clean, {measure}, and % kept of the unpurified efficacy",
             f"{'purification':24}" + "".join(f"{t:>28}" for t in targets)]
    rows = {"none": report["targets"], **report.get("purified", {})}
    for name, per_target in rows.items():
        cells = []
        for t in targets:
            gain = per_target[t]["protected"][measure] - per_target[t]["clean"][measure]
            kept = 100.0 if name == "none" else report["kept_pct"][name][t][measure]
            cells.append(f"{gain:+.6f} ({'n/a' if kept is None else f'{kept:.1f} %'})".rjust(28))
        lines.append(f"{name:24}" + "".join(cells))
    return "\n".join(lines)


def purify_context(purifications, images, eps_levels: int, side: int, gen=None, attacker_model: str | None = None,
                   mean_delta_images=None, mean_delta_protected=None, load_public=None) -> tuple[PurifyContext, dict]:
    """What `evaluate` needs for the subtracting purifications, and notes on it for the report.

    subtract-public-model runs `attacker_model` as an attacker gets it, asked for the evaluated
    bound: `load_public(attacker_model)` gives (protector, backend), its shipped ONNX export when it
    has one (ridexport.backends.public_protector, which this layer cannot import); subtract-tile-fit reads its tiles from its
    weights, and subtract-code-search runs it in PyTorch. subtract-mean-delta averages the deltas of
    the first MEAN_DELTA_PHOTOS photos of `mean_delta_images` (other photos than `images`),
    protected by `gen` with fresh seeds, or read from `mean_delta_protected` (same names)."""
    check_names(purifications)
    context, notes = PurifyContext(eps_levels=eps_levels, side=side), {}
    if "subtract-public-model" in purifications:
        if attacker_model is None:
            raise ValueError("subtract-public-model needs the public model (--attacker-model)")
        if load_public is None:
            raise ValueError("subtract-public-model needs load_public (ridexport.backends.public_protector)")
        context.protector, backend = load_public(attacker_model)
        notes["subtract-public-model"] = {"model": str(attacker_model), "backend": backend, "eps_levels": eps_levels}
    if {"subtract-tile-fit", "subtract-code-search"} & set(purifications):
        from ridtrain.defender.generators import load_generator

        if attacker_model is None:
            raise ValueError("subtract-tile-fit and subtract-code-search need the public model (--attacker-model)")
        context.generator = load_generator(attacker_model)
        if "subtract-tile-fit" in purifications:
            context.tiles = public_tiles(context.generator)
            notes["subtract-tile-fit"] = {"model": str(attacker_model), "tiles": len(context.tiles)}
        if "subtract-code-search" in purifications:
            notes["subtract-code-search"] = {"model": str(attacker_model), "starts": CODE_SEARCH_STARTS, "steps": CODE_SEARCH_STEPS}
    if "subtract-mean-delta" in purifications:
        if mean_delta_images is None:
            raise ValueError("subtract-mean-delta needs other photos to estimate the mean delta from (--mean-delta-images)")
        files = find_images(mean_delta_images)[:MEAN_DELTA_PHOTOS]
        check_disjoint(files, find_images(images))
        pairs = mean_delta_pairs(files, Path(mean_delta_images), eps_levels, gen, mean_delta_protected)
        context.mean_delta = mean_working_delta(pairs, side)
        notes["subtract-mean-delta"] = {"photos": len(files), "from": str(mean_delta_images), "working_side": side,
                                        "estimator": "oracle: mean of (protected - clean) at the working size"}
    return context, notes


def mean_delta_pairs(files, root: Path, eps_levels: int, gen=None, protected_dir=None) -> list[tuple[np.ndarray, np.ndarray]]:
    """(clean, protected) uint8 pairs of the mean-delta photos: protected now by `gen` (a fresh
    seed each, as users get them), or read from `protected_dir`."""
    from ridtrain.defender.protect import protect_array

    if (gen is None) == (protected_dir is None):
        raise ValueError("the mean delta needs exactly one of the generator (--model) or protected copies of its photos (--mean-delta-protected)")
    pairs = []
    for path in files:
        clean = pixels.load_image(path).rgb
        protected = protect_array(gen, clean, eps_levels) if gen is not None else pixels.load_image(_match(Path(protected_dir), root, path)).rgb
        if protected.shape != clean.shape:
            raise ValueError(f"{path}: its protected copy has another size")
        pairs.append((clean, protected))
    return pairs


def check_disjoint(estimation: list[Path], evaluated: list[Path]) -> None:
    """A photo in both sets would let the mean delta carry its own image-specific delta."""
    shared = {p.resolve() for p in estimation} & {p.resolve() for p in evaluated}
    if shared:
        raise ValueError(f"the mean-delta photos must be other photos than the evaluated ones; shared: {sorted(map(str, shared))}")


def _match(protected_dir: Path, root: Path, image: Path) -> Path:
    rel = image.relative_to(root) if root.is_dir() else Path(image.name)
    for suffix in (".png", ".webp", rel.suffix):
        candidate = protected_dir / rel.with_suffix(suffix)
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"no protected image for {rel} in {protected_dir}")
