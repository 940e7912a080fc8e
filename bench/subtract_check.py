"""A quick look at checkpoints against the attacks on a public generator: a minute each, not a report.

    python bench/subtract_check.py runs/default/train/checkpoint-0000500 runs/default/train/final

For each generator, on the held-out photos against one proxy (denoising MSE, `rid eval`'s path
and draws, fewer of them): the efficacy (protected minus clean), and for each purification asked
for (ridtrain/attacker/purify.py; by default the five that subtract an estimate of delta) the share of it
kept (purified protected less purified clean, as the report has it; and, in brackets, purified
protected less the clean photo as it is: what the attacker's training sees against the photos he
wanted), with the mean cosine between the full-size deltas of two protections of one photo (1 for a
deterministic generator). The attacker's purification runs on clean and protected photos alike;
subtract-public-model runs the same generator with seeds of the attacker's own, subtract-tile-fit
reads its tiles, subtract-code-search searches its code, and
subtract-mean-delta averages MEAN_DELTA_PHOTOS photos of --mean-delta-images protected now. Each
protection draws a fresh seed, so two runs differ by a few points: use bench/efficacy_report.py
for figures to quote.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from ridtrain import pixels
from ridtrain.attacker.evaluate import check_disjoint, mean_delta_pairs, target_losses
from ridtrain.attacker.purify import MEAN_DELTA_PHOTOS, PurifyContext, check_names, mean_working_delta, public_tiles, purify
from ridtrain.data import DATA_MULTIPLE, find_images
from ridtrain.defender.generators import load_generator
from ridtrain.defender.protect import TorchProtector
from ridtrain.diffusion.targets import load_target

SUBTRACTING = ("subtract-public-model", "subtract-periodic-mean", "subtract-tile-fit", "subtract-code-search", "subtract-mean-delta")


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))


def check(model: str, target, images: list[Path], purifications, side: int, samples: int, mean_delta_images: Path) -> dict:
    gen = load_generator(model)
    protector = TorchProtector(gen)
    context = PurifyContext(protector=protector, side=side, generator=gen)
    if "subtract-tile-fit" in purifications:
        context.tiles = public_tiles(gen)
    if "subtract-mean-delta" in purifications:
        files = find_images(mean_delta_images)[:MEAN_DELTA_PHOTOS]
        context.mean_delta = mean_working_delta(mean_delta_pairs(files, mean_delta_images, gen.config.eps, gen), side)

    def mse(rgb):
        return target_losses(target, pixels.working_image(pixels.to_float(rgb), side, DATA_MULTIPLE), samples, 0)[1]

    gain, cosines = 0.0, []
    left, over_clean = dict.fromkeys(purifications, 0.0), dict.fromkeys(purifications, 0.0)
    for path in images:
        clean = pixels.load_image(path).rgb
        first, second = protector.protect_array(clean), protector.protect_array(clean)
        cosines.append(cosine(first.astype(float) - clean, second.astype(float) - clean))
        base = mse(clean)
        gain += (mse(first) - base) / len(images)
        for name in purifications:
            purified = mse(purify(first, name, context))
            left[name] += (purified - mse(purify(clean, name, context))) / len(images)
            over_clean[name] += (purified - base) / len(images)
    pct = lambda d: {name: 100 * v / gain if gain else None for name, v in d.items()}  # noqa: E731
    return {"gain": gain, "kept_pct": pct(left), "over_unpurified_clean_pct": pct(over_clean), "cos_two_seeds": float(np.mean(cosines))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+", help="saved generators (folders) or bundled names")
    ap.add_argument("-t", "--target", default="ridtrain/weights/proxies/proxy-a")
    ap.add_argument("--images", type=Path, default=Path("runs/corpus/heldout"))
    ap.add_argument("--purify", default=",".join(SUBTRACTING), help="comma-separated purifications (ridtrain/attacker/purify.py)")
    ap.add_argument("--mean-delta-images", type=Path, default=Path("runs/corpus/train"))
    ap.add_argument("--side", type=int, default=128, help="the attacker's working side")
    ap.add_argument("--samples", type=int, default=4)
    args = ap.parse_args()
    purifications = check_names(args.purify.split(","))
    target, images = load_target(args.target), find_images(args.images)
    if "subtract-mean-delta" in purifications:
        check_disjoint(find_images(args.mean_delta_images), images)
    print("kept: purified protected less purified clean; (over clean): purified protected less the clean photo as it is")
    print(f"{'model':44} {'gain':>9} " + " ".join(f"{name.removeprefix('subtract-') + ' kept (over clean)':>30}" for name in purifications) + f" {'cos(two seeds)':>15}")
    for model in args.models:
        r = check(model, target, images, purifications, args.side, args.samples, args.mean_delta_images)
        kept = " ".join(f"{r['kept_pct'][name]:18.0f} % ({r['over_unpurified_clean_pct'][name]:4.0f} %)" for name in purifications)
        print(f"{model:44} {r['gain']:+9.5f} {kept} {r['cos_two_seeds']:15.3f}", flush=True)


if __name__ == "__main__":
    main()
