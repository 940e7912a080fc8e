"""Short training trials of the default recipe, scored on the held-out photos: which change helps?

    python bench/recipe_trials.py --steps 500 \\
        --trial "plain=arch_overrides={} pgd_lambda=1.0 lr=0.0005" \\
        --trial "tile=pgd_lambda=1.0 lr=0.0005" \\
        --trial "tile-lambda0=pgd_lambda=0.0" \\
        --trial "bundled="

Each trial is `rid train --config configs/default.yaml OVERRIDES steps=N` into --work/NAME (resumed
if there). Every checkpoint is scored as the bundled model is (`rid eval`'s path: full-size 8-bit
protected photos, the attacker's working side) against --target: its denoising-MSE gain as a
percentage of that of the --reference protected photos (AdvDM-200 from the efficacy report).
--parts MODEL scores a trained model whole, its tile alone and its net alone. Writes
recipe_trials.json into --out and prints the table.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import torch

from ridtrain.attacker.evaluate import evaluate
from ridtrain.defender.generators import load_generator
from ridtrain.diffusion.targets import load_target


def gain(report: dict) -> float:
    """Mean over targets of the denoising-MSE increase, protected over clean."""
    rows = report["targets"].values()
    return sum(r["protected"]["denoise_mse"] - r["clean"]["denoise_mse"] for r in rows) / len(rows)


PARTS = {  # name -> the tensors zeroed; a randomised model's tile is the fixed one plus its code's mix of tiles
    "tile only": ("head.weight", "head.bias"),
    "fixed tile only": ("head.weight", "head.bias", "code_tile_bank"),
    "net only": ("tile", "code_tile_bank"),
}


def parts(model: str):
    """(name, generator): the model whole, and with parts zeroed (PARTS; a part the model lacks
    is skipped): its tile alone (the head zeroed), its image-independent tile alone (also the
    code's tiles zeroed), its net alone (both tiles zeroed)."""
    whole = load_generator(model)
    yield "whole", whole
    names = dict(whole.named_parameters())
    for name, zeroed in PARTS.items():
        if name == "fixed tile only" and "code_tile_bank" not in names:
            continue
        gen = load_generator(model)
        for key in zeroed:
            if key in names:
                torch.nn.init.zeros_(gen.get_parameter(key))
        yield name, gen


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trial", action="append", metavar="NAME=OVERRIDES", help="key=value overrides, space separated (repeat)")
    ap.add_argument("--config", default="configs/default.yaml")
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--every", type=int, default=250, help="checkpoint and score every N steps")
    ap.add_argument("-t", "--target", default="ridtrain/weights/proxies/proxy-a")
    ap.add_argument("--images", type=Path, default=Path("runs/corpus/heldout"))
    ap.add_argument("--reference", type=Path, default=Path("runs/efficacy/AdvDM-200/images"))
    ap.add_argument("--side", type=int, default=128, help="the attacker's working side")
    ap.add_argument("--samples", type=int, default=4)
    ap.add_argument("--work", type=Path, default=Path("runs/recipe-trials"))
    ap.add_argument("--out", type=Path, default=Path("docs/efficacy"))
    ap.add_argument("--parts", help="also score this model's tile alone and its net alone (no training)")
    args = ap.parse_args()

    targets = [load_target(args.target)]
    settings = dict(side=args.side, samples=args.samples)
    reference = gain(evaluate(targets, args.images, protected_dir=args.reference, eps_levels=8, **settings))
    rows = []
    for part, gen in parts(args.parts) if args.parts else ():
        pct = 100 * gain(evaluate(targets, args.images, gen=gen, eps_levels=gen.config.eps, **settings)) / reference
        rows.append({"trial": f"parts of {args.parts}", "overrides": part, "step": None, "pct_of_reference": pct})
        print(f"{args.parts}: {part:10} {pct:6.1f} % of the reference", flush=True)
    for trial in args.trial or ():
        name, _, overrides = trial.partition("=")
        output = args.work / name
        command = [sys.executable, "-m", "rid.cli", "train", "--config", args.config, *overrides.split(),
                   f"steps={args.steps}", f"checkpoint_every={args.every}", f"output={output}", "keep_checkpoints=1000"]
        subprocess.run(command + (["--resume"] if any(output.glob("checkpoint-*")) else []), check=True)
        for checkpoint in sorted(output.glob("checkpoint-*")):
            gen = load_generator(checkpoint)
            pct = 100 * gain(evaluate(targets, args.images, gen=gen, eps_levels=gen.config.eps, **settings)) / reference
            step = int(checkpoint.name.split("-")[1])
            rows.append({"trial": name, "overrides": overrides, "step": step, "pct_of_reference": pct})
            print(f"{name:16} step {step:5}  {pct:6.1f} % of the reference", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    summary = {"config": args.config, "target": args.target, "images": str(args.images), "reference": str(args.reference),
               "reference_gain": reference, **settings, "trials": rows}
    (args.out / "recipe_trials.json").write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
