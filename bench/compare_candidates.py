"""Compare trained generators on the held-out photos, quickly enough to pick one: the TAEF2 latent
shift at the attacker's scale (RID, Gaussian noise of RID's L2, and the committed encoder PGD-50
as the reference), what JPEG 75, a 0.5x resize and subtract-public-model leave of it, PSNR and
SSIM, the proxies' efficacy (denoise_mse, protected - clean, at side 128, as bench/efficacy_report.py
measures it), and the grid share on flat grey (bench/grid_check.py, its first 4 seeds). The report
of record stays bench/efficacy_report.py; this is for choosing between candidates, e.g. after a GPU
run.

    python bench/compare_candidates.py ridtrain/weights/default runs/gpu/*/final --json runs/gpu/compare.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from grid_check import backgrounds, periodic_share, seeded_deltas  # noqa: E402

from ridtrain.attacker.evaluate import evaluate  # noqa: E402
from ridtrain.attacker.purify import PurifyContext  # noqa: E402
from ridtrain.defender.generators import load_generator  # noqa: E402
from ridtrain.defender.protect import TorchProtector  # noqa: E402
from ridtrain.diffusion.taef2 import load_taef2  # noqa: E402
from ridtrain.diffusion.targets import load_targets  # noqa: E402

PURIFICATIONS = ("jpeg75", "resize0.5", "subtract-public-model")
PROXIES = [f"ridtrain/weights/proxies/proxy-{k}" for k in "abc"]
PGD_50 = Path("bench/cache/encoder-pgd/PGD-50/images")


def latent_row(report: dict) -> dict:
    lat = report["latent"]
    row = {"shift": lat["shift"]["taef2"]["protected"], "gaussian": lat["shift"]["taef2"]["gaussian"],
           "psnr": report["delta"]["psnr"], "ssim": report["delta"]["ssim"]}
    row.update({p: lat["purified"][p]["taef2"] for p in lat.get("purified", {})})
    return row


def proxy_efficacy(report: dict) -> float:
    return float(np.mean([t["protected"]["denoise_mse"] - t["clean"]["denoise_mse"] for t in report["targets"].values()]))


def print_row(name: str, r: dict, reference: float | None) -> None:
    fmt = lambda k, spec: format(r[k], spec) if k in r else "-"  # noqa: E731
    print(f"{name[-44:]:44}{r['shift']:>7.3f}{r['shift'] / r['gaussian']:>7.2f}x{(100 * r['shift'] / reference if reference else 100):>6.0f}%"
          f"{fmt('jpeg75', '.3f'):>8}{fmt('resize0.5', '.3f'):>8}{fmt('subtract-public-model', '.3f'):>8}"
          f"{r['psnr']:>6.1f}{r['ssim']:>6.3f}{fmt('proxies', '+.5f'):>10}{fmt('grid_pct', '.1f'):>7}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+", help="generator folders (or 'default')")
    ap.add_argument("--images", default="runs/corpus/heldout")
    ap.add_argument("--eps", type=int, default=8)
    ap.add_argument("--samples", type=int, default=8, help="(t, noise) draws per photo and proxy")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    encoders = {"taef2": load_taef2("encoder", device=device)}
    proxies = load_targets(PROXIES, device=device)
    print(f"{'model':44}{'shift':>7}{'x noise':>8}{'% PGD':>7}{'jpeg75':>8}{'resize':>8}{'sub-pub':>8}{'PSNR':>6}{'SSIM':>6}"
          f"{'proxies':>10}{'grid':>7}", flush=True)
    rows = {}
    if PGD_50.is_dir():
        rows["encoder-PGD-50"] = latent_row(evaluate([], args.images, protected_dir=PGD_50, eps_levels=args.eps, encoders=encoders,
                                                     purifications=PURIFICATIONS[:2]))
        print_row("encoder-PGD-50", rows["encoder-PGD-50"], None)
    for model in args.models:
        gen = load_generator(model)
        context = PurifyContext(protector=TorchProtector(gen), eps_levels=args.eps, generator=gen)
        row = latent_row(evaluate([], args.images, gen=gen, eps_levels=args.eps, encoders=encoders,
                                  purifications=PURIFICATIONS, context=context))
        row["proxies"] = proxy_efficacy(evaluate(proxies, args.images, gen=gen, eps_levels=args.eps, side=128, samples=args.samples))
        grey = backgrounds()["flat grey"]
        period = gen.stride * grey.shape[0] // gen.config.working_side
        # one draw of a randomised model can be far from the next: the mean of grid_check's first 4 seeds
        row["grid_pct"] = 100 * np.mean([periodic_share(delta, period) for delta in seeded_deltas(gen, grey, args.eps, 4)])
        rows[model] = row
        print_row(model, row, rows.get("encoder-PGD-50", {}).get("shift"))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
