"""Does a model's perturbation show a grid on flat backgrounds? On a flat grey and on a smooth sky
gradient, 512 px (where a repeating pattern is most visible), two shares of delta's energy at the
model's cell period p (its stride, in photo pixels: 8 for a stride-8 model at working side 512; 64
for a stride-16 one at 128):
- the mean cell: the energy of delta's own mean p-px cell, tiled. 100 % is an exact grid.
- harmonics: the power of delta's spectrum within 2 bins of the multiples of 1/p (not 0), which
  also counts a grid whose cells vary slowly in strength. The table gives what white noise would put there.
A randomised model draws a new pattern for every seed, and one draw can be far from the next, so
each figure is the mean over --seeds fixed seeds, with the range of the draws.
Also saves a picture of each model's delta on them (the first seed), amplified.

    python bench/grid_check.py --model default --model runs/taef2-s/final --out docs/efficacy/grid.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from ridtrain.defender.generators import load_generator
from ridtrain.defender.protect import protect_array


def backgrounds(side: int = 512) -> dict:
    grey = np.full((side, side, 3), 128, np.uint8)
    ramp = np.linspace(0, 1, side)[:, None, None]
    sky = (np.array([70, 110, 190]) * (1 - ramp) + np.array([170, 200, 235]) * ramp) * np.ones((1, side, 1))
    return {"flat grey": grey, "sky gradient": np.rint(sky).astype(np.uint8)}


def periodic_share(delta: np.ndarray, period: int) -> float:
    """||the mean period-cell of delta, tiled||² / ||delta||², per channel, over whole cells."""
    h, w = (s - s % period for s in delta.shape[:2])
    d = delta[:h, :w].astype(np.float64)
    cell = d.reshape(h // period, period, w // period, period, 3).mean(axis=(0, 2))
    tiled = np.tile(cell, (h // period, w // period, 1))
    return float((tiled**2).sum() / max((d**2).sum(), 1e-12))


def harmonic_share(delta: np.ndarray, period: int, bins: int = 2) -> tuple[float, float]:
    """Share of delta's power (mean removed, summed over channels) within `bins` of the grid's
    harmonics (k/period, l/period cycles per pixel, not both 0), and the share of the spectrum
    those bins are: what white noise would put there."""
    d = delta.astype(np.float64) - delta.mean(axis=(0, 1))
    power = (np.abs(np.fft.fft2(d, axes=(0, 1))) ** 2).sum(-1)
    near = [np.abs(f * period - np.round(f * period)) * n / period <= bins
            for f, n in ((np.fft.fftfreq(power.shape[0]), power.shape[0]), (np.fft.fftfreq(power.shape[1]), power.shape[1]))]
    harmonic = near[0][:, None] & near[1][None, :]
    lowest = [np.round(np.fft.fftfreq(n) * period) == 0 for n in power.shape]
    harmonic &= ~(lowest[0][:, None] & lowest[1][None, :])  # the slow changes around 0 are no grid
    return float(power[harmonic].sum() / max(power.sum(), 1e-12)), float(harmonic.mean())


def seeded_deltas(gen, rgb: np.ndarray, eps: int, seeds: int):
    """The model's 8-bit delta on `rgb` for each of the fixed seeds 0, 1, ... (a seed is 16 bytes of i)."""
    for i in range(seeds):
        yield protect_array(gen, rgb, eps, seed=bytes([i]) * 16).astype(int) - rgb.astype(int)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", action="append", required=True)
    ap.add_argument("--eps", type=int, default=8)
    ap.add_argument("--seeds", type=int, default=8, help="fixed seeds per model and background (a deterministic model: 1)")
    ap.add_argument("--out", type=Path, help="a PNG of each model's delta on each background, x12 around grey")
    args = ap.parse_args()
    images = backgrounds()
    print(f"{'model':40}{'background':16}{'period':>7}{'mean cell':>17}{'harmonics':>17}{'(noise)':>9}{'|delta| mean':>17}"
          f"   (mean over {args.seeds} seeds, min-max)")
    span = lambda v, scale, spec: f"{format(scale * np.mean(v), spec)} ({format(scale * min(v), spec)}-{format(scale * max(v), spec)})"  # noqa: E731
    crops = []
    for model in args.model:
        gen, row = load_generator(model), []
        for name, rgb in images.items():
            period = gen.stride * rgb.shape[0] // gen.config.working_side
            cells, shares, levels = [], [], []
            for i, delta in enumerate(seeded_deltas(gen, rgb, args.eps, args.seeds)):
                share, noise = harmonic_share(delta, period)
                cells.append(periodic_share(delta, period))
                shares.append(share)
                levels.append(np.abs(delta).mean())
                if i == 0:
                    row.append(np.clip(128 + 12 * delta[:96, :96], 0, 255).astype(np.uint8))
            print(f"{model[-40:]:40}{name:16}{period:>7}{span(cells, 100, '.0f'):>17}{span(shares, 100, '.0f'):>17}"
                  f"{100 * noise:>8.1f}%{span(levels, 1, '.2f'):>17}", flush=True)
        crops.append(np.concatenate(row, axis=1))
    if args.out:
        from PIL import Image

        picture = np.concatenate(crops, axis=0).repeat(3, axis=0).repeat(3, axis=1)
        Image.fromarray(picture).save(args.out)
        print(f"wrote {args.out}: rows {', '.join(args.model)}; columns {', '.join(images)} (96 px of each, x3; seed 0)")


if __name__ == "__main__":
    main()
