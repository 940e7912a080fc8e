"""A quick look at checkpoints against the public-model attack: a minute each, not a report.

    python bench/subtract_check.py runs/default/train/checkpoint-0000500 runs/default/train/final

For each generator, on the held-out photos against one proxy (denoising MSE, `rid eval`'s path
and draws, fewer of them): the efficacy (protected minus clean), the efficacy left after
subtract-public-model (ridtrain/purify.py; the attacker runs the same generator with seeds of
their own, on clean and protected photos alike), the share kept, and the mean cosine between the
full-size deltas of two protections of one photo (1 for a deterministic generator). Each
protection draws a fresh seed, so two runs differ by a few points: use bench/efficacy_report.py
for figures to quote.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from ridtrain import pixels
from ridtrain.data import DATA_MULTIPLE, find_images
from ridtrain.evaluate import target_losses
from ridtrain.generators import load_generator
from ridtrain.protect import TorchProtector
from ridtrain.purify import subtract_public_model
from ridtrain.targets import load_target


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))


def check(model: str, target, images: list[Path], side: int, samples: int) -> dict:
    protector = TorchProtector(load_generator(model))

    def mse(rgb):
        return target_losses(target, pixels.working_image(pixels.to_float(rgb), side, DATA_MULTIPLE), samples, 0)[1]

    gain = left = 0.0
    cosines = []
    for path in images:
        clean = pixels.load_image(path).rgb
        first, second = protector.protect_array(clean), protector.protect_array(clean)
        cosines.append(cosine(first.astype(float) - clean, second.astype(float) - clean))
        gain += (mse(first) - mse(clean)) / len(images)
        left += (mse(subtract_public_model(first, protector)) - mse(subtract_public_model(clean, protector))) / len(images)
    return {"gain": gain, "after_subtract": left, "kept_pct": 100 * left / gain if gain else None, "cos_two_seeds": float(np.mean(cosines))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+", help="saved generators (folders) or bundled names")
    ap.add_argument("-t", "--target", default="ridtrain/weights/proxies/proxy-a")
    ap.add_argument("--images", type=Path, default=Path("runs/corpus/heldout"))
    ap.add_argument("--side", type=int, default=128, help="the attacker's working side")
    ap.add_argument("--samples", type=int, default=4)
    args = ap.parse_args()
    target, images = load_target(args.target), find_images(args.images)
    print(f"{'model':48} {'gain':>9} {'after subtract':>15} {'kept':>6} {'cos(two seeds)':>15}")
    for model in args.models:
        r = check(model, target, images, args.side, args.samples)
        print(f"{model:48} {r['gain']:+9.5f} {r['after_subtract']:+15.5f} {r['kept_pct']:5.0f} % {r['cos_two_seeds']:15.3f}", flush=True)


if __name__ == "__main__":
    main()
