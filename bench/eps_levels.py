"""Does one generator serve every eps? The bundled model takes eps as an input (delta = eps *
tanh(g(x))); this compares it, at each eps, with a generator trained at that eps alone, both as a
percentage of AdvDM-200 at the same eps, on the held-out photos.

    python bench/eps_levels.py --model default --dedicated 4=runs/eps4/train/final \\
        --dedicated 8=default --dedicated 12=runs/eps12/train/final \\
        -t ridtrain/weights/proxies/proxy-a -t ridtrain/weights/proxies/proxy-b \\
        --heldout-target ridtrain/weights/proxies/proxy-heldout --images runs/corpus/heldout --out docs/efficacy

Every protected image is a full-size 8-bit PNG made as `rid protect` makes it; measures are those of
bench/efficacy_report.py (denoising-MSE increase over clean, common random numbers), untransformed.
Writes eps_levels.json into --out and prints the table. AdvDM runs resume, and evaluations are
cached, under --work.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from efficacy_report import cached_evaluate, content_key, protect_rid, write_set

from ridtrain import pixels
from ridtrain.attacker.attacks import run_attack
from ridtrain.data import find_images
from ridtrain.diffusion.targets import load_target


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="default", help="the generator that takes eps as input")
    ap.add_argument("--dedicated", action="append", required=True, metavar="EPS=MODEL", help="a generator trained at EPS alone (repeat)")
    ap.add_argument("-t", "--target", action="append", required=True, help="training proxy (repeat)")
    ap.add_argument("--heldout-target", required=True)
    ap.add_argument("--images", type=Path, required=True)
    ap.add_argument("--out", type=Path, default=Path("docs/efficacy"))
    ap.add_argument("--work", type=Path, default=Path("runs/eps-levels"))
    ap.add_argument("--side", type=int, default=128, help="the attacker's working side")
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--advdm-steps", type=int, default=200)
    args = ap.parse_args()

    dedicated = {}
    for item in args.dedicated:
        eps, sep, model = item.partition("=")
        if not sep or not eps.isdigit():
            ap.error(f"--dedicated wants EPS=MODEL, got {item!r}")
        dedicated[int(eps)] = model
    train_targets = [load_target(t) for t in args.target]
    everything = train_targets + [load_target(args.heldout_target)]
    groups = {"train": [t.name for t in train_targets], "heldout": [everything[-1].name]}
    target_key = content_key([*args.target, args.heldout_target], {})
    files, root = find_images(args.images), args.images
    clean_dir = write_set(files, root, lambda p: pixels.load_image(p).rgb, args.work / "clean", "none")

    rows = {}
    for eps, model in sorted(dedicated.items()):
        work = args.work / f"eps{eps}"
        advdm = work / f"AdvDM-{args.advdm_steps}"
        run_attack(root, advdm, train_targets, "advdm", eps, args.side, steps=args.advdm_steps)
        sets = {"advdm": advdm / "images"}
        protect_rid(args.model, files, root, work / "rid-eps-input", eps)
        sets["eps_input"] = work / "rid-eps-input"
        protect_rid(model, files, root, work / "rid-dedicated", eps)
        sets["dedicated"] = work / "rid-dedicated"
        gains = {}
        for name, folder in sets.items():
            report = cached_evaluate(args.work / "evaluations", target_key, everything, clean_dir, folder,
                                     eps_levels=eps, side=args.side, samples=args.samples)
            per_target = {t: c["protected"]["denoise_mse"] - c["clean"]["denoise_mse"] for t, c in report["targets"].items()}
            gains[name] = {g: float(np.mean([per_target[t] for t in ts])) for g, ts in groups.items()}
        rows[eps] = {
            "dedicated_model": model,
            "denoise_mse_gain": gains,
            "pct_of_advdm": {kind: {g: 100 * gains[kind][g] / gains["advdm"][g] for g in groups} for kind in ("eps_input", "dedicated")},
        }
        print(f"eps {eps}: " + json.dumps(rows[eps]["pct_of_advdm"]), flush=True)

    args.out.mkdir(parents=True, exist_ok=True)
    summary = {"model": args.model, "images": [str(f.relative_to(root)) for f in files], "side": args.side,
               "samples": args.samples, "advdm_steps": args.advdm_steps, "targets": groups, "levels": rows}
    (args.out / "eps_levels.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"\nRID as % of AdvDM-{args.advdm_steps} at the same eps (denoising-MSE gain; train = mean of the training proxies)")
    print(f"{'eps':>4} {'eps-input train':>16} {'dedicated train':>16} {'eps-input held-out':>19} {'dedicated held-out':>19}")
    for eps, row in rows.items():
        p = row["pct_of_advdm"]
        print(f"{eps:>4} {p['eps_input']['train']:>15.1f}% {p['dedicated']['train']:>15.1f}% "
              f"{p['eps_input']['heldout']:>18.1f}% {p['dedicated']['heldout']:>18.1f}%")


if __name__ == "__main__":
    main()
