"""The frontier (issue 31, item 4): how far each method moves TAEF2's latent against what it costs in
image quality, at several eps. The model (the bundled one by default) at each --eps, and white-box
encoder PGD at each --pgd-eps, on the corpus's held-out photos at the attacker's scale.

    python bench/frontier.py --model default --images runs/corpus/heldout --out docs/efficacy

Measures are the latent report's (bench/latent_report.py, through ridtrain.attacker.evaluate): the
relative TAEF2 shift |E(x') - E(x)| / |E(x)| at --latent-side, and PSNR and SSIM of the full-size 8-bit
protected photo against the clean one, each the mean over the photos. The model protects each photo
as `rid protect` does (full size, 8 bits) with each of --seeds fixed seeds (the same codes as
bench/visibility_report.py), and the row is the mean over the seeds (their range in the JSON): a
fixed list, so that a re-run gives the same figure; fresh seeds are draws of the same distribution.

Encoder PGD (`rid attack --method encoder`: steps of 1/255, a uniform random start in the eps ball,
at --latent-side) comes from --pgd-cache through latent_report.pgd_images, keyed by the photos' bytes
and the settings, and is run (minutes a photo) and cached when missing. That cache's folders are named
by the steps alone (PGD-50), so eps 8, the latent report's, stays at --pgd-cache itself and every
other eps gets its own root, --pgd-cache/eps<N>/PGD-<steps>, in the same layout.

Prints the table (eps, method, shift, PSNR, SSIM) and writes frontier.json and frontier.png into --out.
Evaluations are cached under --work (latent_report.cached: keyed by every file they read).
"""

from __future__ import annotations

import argparse
import json
import time
from argparse import Namespace
from pathlib import Path

import numpy as np
import torch

from latent_report import cached, pgd_images  # bench/ is on sys.path when run as a script
from ridexport.backends import load_backend
from ridtrain import pixels
from ridtrain.attacker.evaluate import evaluate
from ridtrain.bundled import model_card
from ridtrain.data import find_images
from ridtrain.diffusion.taef2 import load_encoders
from visibility_report import SEEDS

REPORT_EPS = 8  # the latent report's eps: its PGD cache sits at --pgd-cache itself


def pgd_cache_root(base: Path, eps: int) -> Path:
    """Where encoder PGD at `eps` is cached: pgd_images names its folders by the steps alone."""
    return base if eps == REPORT_EPS else base / f"eps{eps}"


def protect_seeded(protector, files, root: Path, out: Path, eps: int, seed: str) -> Path:
    """Each photo protected with the fixed `seed`, as full-size 8-bit PNGs under `out`."""
    for path in files:
        dst = out / path.relative_to(root).with_suffix(".png")
        dst.parent.mkdir(parents=True, exist_ok=True)
        pixels.save_image(dst, protector.protect_array(pixels.load_image(path).rgb, eps, seed))
    return out


def measure(root: Path, folder: Path, eps: int, side: int, encoder, work: Path) -> dict:
    """shift, gaussian_same_l2, PSNR and SSIM of a protected folder, as the latent report measures them."""
    key = {"frontier": 1, "eps": eps, "side": side}

    def run():
        report = evaluate([], root, protected_dir=folder, eps_levels=eps, encoders={"taef2": encoder}, latent_side=side)
        shift = report["latent"]["shift"]["taef2"]
        return {"shift": shift["protected"], "gaussian_same_l2": shift["gaussian"], "psnr": report["delta"]["psnr"],
                "ssim": report["delta"]["ssim"]}

    return cached(work / "evaluations", key, [root, folder], run)


def frontier(model: str, root: Path, eps_list, pgd_eps, steps: int, seeds, side: int, pgd_cache: Path, work: Path) -> list[dict]:
    """The rows, model first (mean over `seeds`, with per-seed values), then encoder PGD."""
    files = find_images(root)
    (encoder,) = load_encoders(["taef2"])
    protector = load_backend(model, "torch")
    rows = []
    for eps in eps_list:
        per_seed = [measure(root, protect_seeded(protector, files, root, work / "model" / f"eps{eps}" / f"seed{k}", eps, seed),
                            eps, side, encoder, work) for k, seed in enumerate(seeds)]
        mean = {m: float(np.mean([s[m] for s in per_seed])) for m in per_seed[0]}
        rows.append({"eps": eps, "method": "model", **mean, "per_seed": per_seed})
    for eps in pgd_eps:
        args = Namespace(eps=eps, latent_side=side, pgd_cache=pgd_cache_root(pgd_cache, eps), work=work)
        folder, seconds = pgd_images(files, root, ["taef2"], args, steps)
        rows.append({"eps": eps, "method": f"encoder PGD-{steps}", **measure(root, folder, eps, side, encoder, work),
                     "cache": str(args.pgd_cache / f"PGD-{steps}"), "seconds_per_photo": float(np.median(list(seconds.values())))})
    return rows


def print_table(rows: list[dict]) -> None:
    print(f"{'eps':>4}  {'method':16}{'shift':>7}{'noise':>7}{'PSNR':>7}{'SSIM':>7}")
    for r in rows:
        spread = ""
        if "per_seed" in r and len(r["per_seed"]) > 1:
            shifts = [s["shift"] for s in r["per_seed"]]
            spread = f"   shift over {len(shifts)} seeds {min(shifts):.3f}-{max(shifts):.3f}"
        print(f"{r['eps']:>4}  {r['method']:16}{r['shift']:>7.3f}{r['gaussian_same_l2']:>7.3f}{r['psnr']:>7.1f}{r['ssim']:>7.3f}{spread}")


def write_figure(rows: list[dict], path: Path, title: str, model_label: str) -> None:
    """Shift against PSNR and against SSIM, one line per method (the model's named `model_label`), each
    point labelled with its eps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
    for ax, measure_name, label in ((axes[0], "psnr", "PSNR of the protected photo (dB)"), (axes[1], "ssim", "SSIM")):
        for method in dict.fromkeys(r["method"] for r in rows):
            some = [r for r in rows if r["method"] == method]
            xs, ys = [r[measure_name] for r in some], [r["shift"] for r in some]
            ax.plot(xs, ys, "o-", label=model_label if method == "model" else method)
            for r, x, y in zip(some, xs, ys):
                ax.annotate(f"ε {r['eps']}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
        ax.set_xlabel(label + "  (better to the right)")
        ax.set_ylabel("relative TAEF2 latent shift")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--images", type=Path, default=Path("runs/corpus/heldout"))
    ap.add_argument("--out", type=Path, default=Path("docs/efficacy"))
    ap.add_argument("--work", type=Path, default=Path("runs/frontier"))
    ap.add_argument("--eps", default="4,8,12,16", help="the model's eps levels, comma-separated")
    ap.add_argument("--pgd-eps", default="4,8", help="encoder PGD's eps levels, comma-separated")
    ap.add_argument("--pgd-steps", type=int, default=50)
    ap.add_argument("--pgd-cache", type=Path, default=Path("bench/cache/encoder-pgd"))
    ap.add_argument("--latent-side", type=int, default=512)
    ap.add_argument("--seeds", type=int, default=3, help=f"how many of the {len(SEEDS)} fixed seeds to average")
    ap.add_argument("--threads", type=int, default=2, help="torch's intra-op threads (1 is faster on a busy machine)")
    args = ap.parse_args(argv)
    if not 1 <= args.seeds <= len(SEEDS):
        ap.error(f"--seeds is 1..{len(SEEDS)}")
    eps_list, pgd_eps = ([int(v) for v in s.split(",")] for s in (args.eps, args.pgd_eps))
    torch.set_num_threads(args.threads)

    tic = time.perf_counter()
    rows = frontier(args.model, args.images, eps_list, pgd_eps, args.pgd_steps, SEEDS[:args.seeds], args.latent_side,
                    args.pgd_cache, args.work)
    images = [str(f.relative_to(args.images)) for f in find_images(args.images)]
    print(f"relative TAEF2 latent shift at side {args.latent_side}, PSNR and SSIM of the full-size 8-bit photo, mean over "
          f"{len(images)} photos; the model: mean over {args.seeds} fixed seeds; noise: Gaussian of the same L2")
    print_table(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    name = model_card(args.model).get("name", Path(args.model).name)
    summary = {"model": args.model, "model_name": name, "images": images, "side": args.latent_side, "seeds": list(SEEDS[:args.seeds]),
               "pgd_steps": args.pgd_steps, "rows": rows}
    (args.out / "frontier.json").write_text(json.dumps(summary, indent=1) + "\n")
    write_figure(rows, args.out / "frontier.png",
                 f"TAEF2 latent shift at side {args.latent_side} against the protected photo's quality, mean over {len(images)} "
                 f"held-out photos", f"{name} (mean of {args.seeds} seeds)")
    print(f"wrote {args.out / 'frontier.json'} and {args.out / 'frontier.png'} ({time.perf_counter() - tic:.0f} s)")


if __name__ == "__main__":
    main()
