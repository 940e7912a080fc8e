"""Efficacy report: RID against per-image PGD baselines and noise, on held-out photos, for the two
training proxies and the held-out (black-box) one.

    python bench/efficacy_report.py --model default \\
        -t ridtrain/weights/proxies/proxy-a -t ridtrain/weights/proxies/proxy-b \\
        --heldout-target ridtrain/weights/proxies/proxy-heldout --images runs/corpus/heldout --out docs/efficacy

Methods, all at the same eps: RID (the model, through `rid protect`), AdvDM at 50 and 200 PGD
steps and ASPL-lite (both against the training proxies, as a defender would run them), Gaussian
noise with the RID delta's L2 norm, uniform +-eps noise, and no perturbation. Every protected image
is a full-size 8-bit PNG, as users get them. Measures (`rid eval`, common random numbers): the
Adv-SDS objective and the denoising MSE of each proxy; efficacy = protected minus clean. The
image transforms (JPEG 95/85/75, 0.5x downscale) are applied to clean and protected alike; the
noise baselines are reported untransformed only. Writes efficacy.json and efficacy.png into --out
and prints the tables. PGD runs resume from --work when interrupted, and each evaluation is cached
there under the hash of everything it reads (images, target weights, settings), so a re-run after
retraining RID evaluates RID alone.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import time
from pathlib import Path

import numpy as np
from PIL import Image

from ridtrain import pixels
from ridtrain.attacks import run_attack
from ridtrain.data import find_images
from ridtrain.evaluate import evaluate
from ridtrain.protect import load_backend, protect_array
from ridtrain.targets import load_target

TRANSFORMS = ("none", "jpeg95", "jpeg85", "jpeg75", "down0.5")
MEASURES = ("denoise_mse", "adv_sds")


def transform(rgb: np.ndarray, name: str) -> np.ndarray:
    if name == "none":
        return rgb
    im = Image.fromarray(rgb)
    if name.startswith("jpeg"):
        buf = io.BytesIO()
        im.save(buf, format="JPEG", quality=int(name[4:]))
        return np.asarray(Image.open(buf).convert("RGB"))
    w, h = im.size
    return np.asarray(im.resize((max(1, round(w * 0.5)), max(1, round(h * 0.5))), Image.BICUBIC))


def write_set(files: list[Path], root: Path, source, out: Path, name: str) -> Path:
    """Each image of `files` (via source(path) -> rgb), transformed, as out/<rel>.png."""
    for path in files:
        dst = out / path.relative_to(root).with_suffix(".png")
        dst.parent.mkdir(parents=True, exist_ok=True)
        pixels.save_image(dst, transform(source(path), name))
    return out


def protect_rid(model: str, files, root: Path, out: Path, eps: int) -> float:
    """RID-protected full-size PNGs; returns the median seconds per image of the array path."""
    protector = load_backend(model, "torch")
    seconds = []
    for path in files:
        rgb = pixels.load_image(path).rgb
        tic = time.perf_counter()
        protected = protect_array(protector.gen, rgb, eps)
        seconds.append(time.perf_counter() - tic)
        dst = out / path.relative_to(root).with_suffix(".png")
        dst.parent.mkdir(parents=True, exist_ok=True)
        pixels.save_image(dst, protected)
    return float(np.median(seconds))


def attack_seconds(out: Path) -> float:
    """Median seconds per image of a run_attack folder, from its deltas' metadata (so that a
    resumed run still reports the time of every image)."""
    from safetensors import safe_open

    times = []
    for file in sorted((out / "deltas").rglob("*.safetensors")):
        with safe_open(file, "pt") as f:
            times.append(float(f.metadata()["seconds"]))
    return float(np.median(times))


def content_key(folders, settings: dict) -> str:
    """sha256 over every file under `folders` (relative path and bytes) and the settings."""
    h = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for folder in folders:
        folder = Path(folder)
        for file in sorted(p for p in folder.rglob("*") if p.is_file()):
            h.update(str(file.relative_to(folder)).encode() + b"\0" + file.read_bytes())
    return h.hexdigest()


def cached_evaluate(cache: Path, target_key: str, targets, clean_dir: Path, prot_dir: Path, **settings) -> dict:
    """`evaluate` of a protected set against its clean set, reused when nothing it reads changed."""
    file = cache / f"{content_key([clean_dir, prot_dir], {'targets': target_key, **settings})}.json"
    if file.is_file():
        return json.loads(file.read_text())
    report = evaluate(targets, clean_dir, protected_dir=prot_dir, **settings)
    cache.mkdir(parents=True, exist_ok=True)
    tmp = file.with_name(file.name + ".tmp")
    tmp.write_text(json.dumps(report))
    tmp.replace(file)
    return report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("-t", "--target", action="append", required=True, help="training proxy (repeat)")
    ap.add_argument("--heldout-target", required=True)
    ap.add_argument("--images", type=Path, required=True)
    ap.add_argument("--out", type=Path, default=Path("docs/efficacy"))
    ap.add_argument("--work", type=Path, default=Path("runs/efficacy"))
    ap.add_argument("--eps", type=int, default=8)
    ap.add_argument("--side", type=int, default=128, help="the attacker's working side (the proxies work at small sizes)")
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--advdm-steps", default="50,200")
    args = ap.parse_args()

    train_targets = [load_target(t) for t in args.target]
    heldout = load_target(args.heldout_target)
    everything = train_targets + [heldout]
    files, root = find_images(args.images), args.images
    protected, seconds = {}, {}
    for steps in map(int, args.advdm_steps.split(",")):
        name = f"AdvDM-{steps}"
        run_attack(root, args.work / name, train_targets, "advdm", args.eps, args.side, steps=steps)
        protected[name], seconds[name] = args.work / name / "images", attack_seconds(args.work / name)
    run_attack(root, args.work / "ASPL-lite", train_targets, "aspl", args.eps, args.side)
    protected["ASPL-lite"], seconds["ASPL-lite"] = args.work / "ASPL-lite" / "images", attack_seconds(args.work / "ASPL-lite")

    seconds["RID"] = protect_rid(args.model, files, root, args.work / "RID", args.eps)  # last: the baselines resume
    protected = {"RID": args.work / "RID", **protected}
    target_key = content_key([*args.target, args.heldout_target], {})
    results = {}  # transform -> method -> target -> measure -> {clean, protected, efficacy}
    for tname in TRANSFORMS:
        clean_dir = write_set(files, root, lambda p: pixels.load_image(p).rgb, args.work / "sets" / tname / "clean", tname)
        results[tname] = {}
        for method, folder in protected.items():
            prot_dir = write_set(files, root, lambda p, f=folder: pixels.load_image(f / p.relative_to(root).with_suffix(".png")).rgb,
                                 args.work / "sets" / tname / method, tname)
            report = cached_evaluate(args.work / "evaluations", target_key, everything, clean_dir, prot_dir,
                                     eps_levels=args.eps, side=args.side, samples=args.samples)
            results[tname][method] = {}
            for tg, conds in report["targets"].items():
                row = {m: {"clean": conds["clean"][m], "protected": conds["protected"][m],
                           "efficacy": conds["protected"][m] - conds["clean"][m]} for m in MEASURES}
                results[tname][method][tg] = row
                if tname == "none" and method == "RID":  # the noise baselines, against RID's delta
                    for noise in ("gaussian", "uniform"):
                        results[tname].setdefault(noise.capitalize(), {})[tg] = {
                            m: {"clean": conds["clean"][m], "protected": conds[noise][m], "efficacy": conds[noise][m] - conds["clean"][m]}
                            for m in MEASURES}
            print(f"{tname:8} {method:10} " + "  ".join(f"{tg}: {row['denoise_mse']['efficacy']:+.5f}"
                                                        for tg, row in results[tname][method].items()), flush=True)

    names = {"train": [t.name for t in train_targets], "heldout": [heldout.name]}
    headline = headlines(results, seconds, names)
    summary = {"images": [str(f.relative_to(root)) for f in files], "eps_levels": args.eps, "side": args.side,
               "samples": args.samples, "targets": names, "seconds_per_image": seconds, "results": results, "headline": headline}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "efficacy.json").write_text(json.dumps(summary, indent=2) + "\n")
    plot(results["none"], names, args.out / "efficacy.png")
    print_tables(results, seconds, headline)


def mean_efficacy(results, tname, method, targets, measure="denoise_mse") -> float:
    return float(np.mean([results[tname][method][t][measure]["efficacy"] for t in targets]))


def headlines(results, seconds, names) -> dict:
    out = {}
    for measure in MEASURES:
        for group, targets in names.items():
            rid, ref = mean_efficacy(results, "none", "RID", targets, measure), mean_efficacy(results, "none", "AdvDM-200", targets, measure)
            out[f"rid_vs_advdm200_{group}_{measure}_pct"] = 100 * rid / ref if ref else None
        rid_all = mean_efficacy(results, "none", "RID", names["train"] + names["heldout"], measure)
        jpeg = mean_efficacy(results, "jpeg75", "RID", names["train"] + names["heldout"], measure)
        out[f"rid_jpeg75_survival_{measure}_pct"] = 100 * jpeg / rid_all if rid_all else None
    out["speed_ratio_advdm200_over_rid"] = seconds["AdvDM-200"] / seconds["RID"] if seconds.get("RID") else None
    return out


def print_tables(results, seconds, headline) -> None:
    for measure in MEASURES:
        print(f"\nefficacy = protected - clean, {measure} (higher is stronger protection)")
        for tname, methods in results.items():
            targets = list(next(iter(methods.values())))
            print(f"{tname:8} {'method':11}" + "".join(f"{t:>16}" for t in targets))
            for method, rows in methods.items():
                print(f"{'':8} {method:11}" + "".join(f"{rows[t][measure]['efficacy']:>+16.6f}" for t in targets))
    print("\nseconds per image: " + ", ".join(f"{k} {v:.3f}" for k, v in seconds.items() if v is not None))
    print("headline: " + json.dumps({k: (round(v, 1) if isinstance(v, float) else v) for k, v in headline.items()}))


def plot(rows, names, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    targets = names["train"] + names["heldout"]
    methods = list(rows)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    for ax, measure in zip(axes, MEASURES):
        width = 0.8 / len(methods)
        for k, method in enumerate(methods):
            ax.bar(np.arange(len(targets)) + k * width, [rows[method][t][measure]["efficacy"] for t in targets], width, label=method)
        ax.set_xticks(np.arange(len(targets)) + 0.4 - width / 2, [t + (" (held out)" if t in names["heldout"] else "") for t in targets])
        ax.set_title(f"{measure}: protected - clean")
        ax.axhline(0, color="black", linewidth=0.5)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
