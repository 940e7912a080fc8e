"""Efficacy report: RID against per-image PGD baselines and noise, on held-out photos, for the
training proxies and each held-out (black-box) one, and what is left after an attacker's purifications.

    python bench/efficacy_report.py --model default \\
        -t ridtrain/weights/proxies/proxy-a -t ridtrain/weights/proxies/proxy-b \\
        --heldout-target ridtrain/weights/proxies/proxy-heldout \\
        --heldout-target ridtrain/weights/proxies/proxy-heldout-vae --images runs/corpus/heldout --out docs/efficacy
    python bench/efficacy_report.py --model default --latent taef2 --images runs/corpus/heldout --out docs/efficacy

With --latent (a real model's encoder: taef2, FLUX.2's, vendored) it also prints the latent table of
bench/latent_report.py (RID, encoder PGD-50 and -200, noise; the decoded damage, D(E(x')) against
D(E(x)); the purification set; PSNR, SSIM, speed) into latent.json, with taef2-decoded.png: what the attacker's model sees of each photo.
Without -t it prints that table alone.

Methods, all at the same eps: RID (the model, through `rid protect`, a fresh seed per photo), AdvDM
at 50 and 200 PGD steps and ASPL-lite (`--no-aspl` skips it; all against the training proxies, as
a defender would run them), Gaussian noise with the RID delta's L2 norm, uniform +-eps noise, and
no perturbation. Every protected image is a full-size 8-bit PNG, as users get them. Measures (`rid
eval`, common random numbers): the Adv-SDS objective and the denoising MSE of each proxy; efficacy
= protected minus clean. Transfer is reported per held-out proxy: they need not share the
training proxies' VAE.

Purifications (ridtrain/attacker/purify.py) are applied to clean and protected photos alike, the
subtracting ones included (an attacker purifies every photo he collects): JPEG 95/85/75 and the
app's own JPEG download (purify.DOWNLOAD_JPEG, at ridpixels.OUTPUT_FORMATS' quality), 0.5x resize
and back, Gaussian blur sigma 1, and the five that subtract an estimate of delta:
- subtract-public-model: the model's shipped ONNX export when it has one, run with the attacker's
  own fresh seed;
- subtract-mean-delta: the mean delta of 16 other protected photos (--mean-delta-images);
- subtract-periodic-mean: each photo's own mean period-16 cell at the working size (no model, no
  other photo);
- subtract-tile-fit: the model's tiles, read from its weights, fitted to each cell of each photo;
- subtract-code-search: the model's delta for the code a gradient search finds in each photo.
And three models an attacker can download (ridtrain/attacker/pretrained.py): ffdnet, noise+ffdnet
and noisy-upscale (FFDNet; noise, then FFDNet; half size, noise, waifu2x 2x).
For subtract-mean-delta RID's 16 photos are protected with fresh seeds, and AdvDM-200's mean delta
comes from AdvDM runs of --mean-delta-advdm-steps (default 50: 16 more AdvDM-200 runs, each 280 s
a photo against three proxies in the 2026-12-02 report, are too slow for 2 cores); other
methods get no mean delta (n/a). "Kept" = 100 * efficacy after / efficacy without purification,
a ratio of means over the targets of a group. The noise baselines are reported unpurified only.

Writes efficacy.json and efficacy.png into --out and prints the tables. PGD runs resume from --work
when interrupted, and each evaluation is cached there under the hash of everything it reads
(images, purified sets, target weights, settings), so a re-run after retraining RID evaluates RID
alone. Purified sets are rewritten only when their inputs change. RID's seeds are never fixed: a
randomised RID gives other files on every run, and is evaluated again each time, as it should be.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path

import numpy as np

from latent_report import decoded_figure, latent_report, print_latent  # bench/ is on sys.path when run as a script
from ridexport.backends import load_backend, onnx_folder, public_protector
from ridtrain import pixels
from ridtrain.attacker.attacks import run_attack
from ridtrain.attacker.evaluate import check_disjoint, evaluate, mean_delta_pairs
from ridtrain.attacker.purify import (CODE_SEARCH_STARTS, CODE_SEARCH_STEPS, MEAN_DELTA_PHOTOS, PURIFICATIONS, PurifyContext,
                                      mean_working_delta, public_tiles, purify)
from ridtrain.bundled import resolve_model_path
from ridtrain.data import find_images
from ridtrain.defender.protect import protect_array
from ridtrain.diffusion.targets import load_target

TRANSFORMS = ("none", *PURIFICATIONS)
MEASURES = ("denoise_mse", "adv_sds")
REFERENCE = "AdvDM-200"  # the per-image PGD baseline RID is measured against
KEPT_METHODS = ("RID", REFERENCE)  # whose efficacy kept after each purification the headline reports
MEAN_DELTA_METHODS = KEPT_METHODS  # the others get no mean delta: subtract-mean-delta is n/a for them


def write_set(files: list[Path], root: Path, source, out: Path, name: str, context: PurifyContext | None = None,
              context_key: str = "") -> Path:
    """Each image of `files` (via source(path) -> rgb), purified by `name` ("none": as it is), as
    out/<rel>.png. The set is rewritten only when what it is made of changed: a stamp beside the
    folder holds the hash of the source pixels, the purification and `context_key` (what the
    context's part it uses depends on). A randomised purification (subtract-public-model draws a
    fresh seed) would otherwise give new files, and so miss the evaluation cache, on every run."""
    sources = {path: source(path) for path in files}
    key = hashlib.sha256(json.dumps([name, context_key]).encode())
    for path, rgb in sources.items():
        key.update(f"{path.relative_to(root)}\0{rgb.shape}\0".encode() + np.ascontiguousarray(rgb).tobytes())
    stamp, dsts = out.with_name(out.name + ".inputs"), {path: out / path.relative_to(root).with_suffix(".png") for path in files}
    if stamp.is_file() and stamp.read_text() == key.hexdigest() and all(dst.is_file() for dst in dsts.values()):
        return out
    for path, rgb in sources.items():
        dsts[path].parent.mkdir(parents=True, exist_ok=True)
        pixels.save_image(dsts[path], rgb if name == "none" else purify(rgb, name, context))
    stamp.write_text(key.hexdigest())
    return out


def protect_rid(model: str, files, root: Path, out: Path, eps: int) -> float:
    """RID-protected full-size PNGs; returns the median seconds per image of the array path."""
    protector = load_backend(model, "torch")
    protect_array(protector.gen, pixels.load_image(files[0]).rgb, eps)  # warm-up: the first call pays one-off costs
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
    ap.add_argument("-t", "--target", action="append", default=[], help="training proxy (repeat)")
    ap.add_argument("--heldout-target", action="append", default=[], help="held-out proxy, never trained against (repeat)")
    ap.add_argument("--images", type=Path, required=True)
    ap.add_argument("--out", type=Path, default=Path("docs/efficacy"))
    ap.add_argument("--work", type=Path, default=Path("runs/efficacy"))
    ap.add_argument("--eps", type=int, default=8)
    ap.add_argument("--side", type=int, default=128, help="the attacker's working side (the proxies work at small sizes)")
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--advdm-steps", default="50,200")
    ap.add_argument("--transforms", default=",".join(TRANSFORMS), type=check_transforms,
                    help="comma-separated, starting with none (default: all)")
    ap.add_argument("--aspl", action=argparse.BooleanOptionalAction, default=True, help="also run ASPL-lite")
    ap.add_argument("--mean-delta-images", type=Path, default=Path("runs/corpus/train"),
                    help=f"subtract-mean-delta: the first {MEAN_DELTA_PHOTOS} photos here (sorted) give each method's mean delta")
    ap.add_argument("--mean-delta-advdm-steps", type=int, default=50,
                    help=f"PGD steps of the AdvDM runs that estimate {REFERENCE}'s mean delta (16 AdvDM-200 runs are 16x the cost of one)")
    ap.add_argument("--latent", action="append", default=[], help="a latent encoder for the latent table: taef2 (repeat)")
    ap.add_argument("--latent-side", type=int, default=512, help="the side the latent table encodes photos at (the attacker's scale)")
    ap.add_argument("--pgd-steps", type=lambda t: [int(v) for v in t.split(",")], default=[50, 200], help="encoder PGD steps")
    ap.add_argument("--pgd-cache", type=Path, default=Path("bench/cache/encoder-pgd"), help="encoder PGD's protected photos, kept")
    args = ap.parse_args()
    if not args.target and not args.latent:
        ap.error("give training proxies (-t, with --heldout-target) or a latent encoder (--latent), or both")
    if args.target and not args.heldout_target:
        ap.error("the proxy table needs at least one --heldout-target")
    if args.latent:
        run_latent(args)
    if args.target:
        run_proxies(args)


def run_latent(args) -> None:
    files, root = find_images(args.images), args.images
    rid_folder = args.work / "latent" / "RID"
    seconds = protect_rid(args.model, files, root, rid_folder, args.eps)
    attacker, backend = public_protector(args.model)
    model_files = onnx_folder(args.model) if backend == "onnx" else resolve_model_path(args.model)
    attacker_key = content_key([model_files, resolve_model_path(args.model)], {"backend": backend})
    latent, folders = latent_report(args, files, root, rid_folder, seconds, load_backend(args.model, "torch").gen, attacker,
                                    attacker_key)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "latent.json").write_text(json.dumps(latent, indent=2) + "\n")
    reference = latent["reference"]
    decoded_figure(files, root, {"clean": None, "RID": folders["RID"], reference: folders[reference]},
                   args.latent_side, args.out / "taef2-decoded.png")
    print_latent(latent)


def run_proxies(args) -> None:
    train_targets = [load_target(t) for t in args.target]
    heldouts = [load_target(t) for t in args.heldout_target]
    everything = train_targets + heldouts
    files, root = find_images(args.images), args.images
    protected, seconds = run_baselines(args, root, train_targets)
    seconds["RID"] = protect_rid(args.model, files, root, args.work / "RID", args.eps)  # last: the baselines resume
    protected = {"RID": args.work / "RID", **protected}
    contexts, keys, notes = purification_contexts(args, files, train_targets, protected)
    target_key = content_key([*args.target, *args.heldout_target], {})
    load_clean = lambda p: pixels.load_image(p).rgb  # noqa: E731
    results, skipped = {}, {}  # transform -> method -> target -> measure -> {clean, protected, efficacy}
    for tname in args.transforms.split(","):
        results[tname] = {}
        for method, folder in protected.items():
            if tname == "subtract-mean-delta" and contexts[method].mean_delta is None:
                skipped.setdefault(tname, {})[method] = "n/a: no mean delta estimated for this method"
                continue
            if tname == "subtract-tile-fit" and contexts[method].tiles is None:
                skipped.setdefault(tname, {})[method] = "n/a: the model has no tiles (pattern 0)"
                continue
            clean_dir, prot_dir = set_folders(args.work / "sets", tname, method)
            key = keys.get((tname, method), "")
            write_set(files, root, load_clean, clean_dir, tname, contexts[method], key)
            write_set(files, root, lambda p, f=folder: pixels.load_image(f / p.relative_to(root).with_suffix(".png")).rgb,
                      prot_dir, tname, contexts[method], key)
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
            print(f"{tname:22} {method:10} " + "  ".join(f"{tg}: {row['denoise_mse']['efficacy']:+.5f}"
                                                          for tg, row in results[tname][method].items()), flush=True)

    names = {"train": [t.name for t in train_targets], "heldout": [t.name for t in heldouts]}
    headline = headlines(results, seconds, names)
    summary = {"images": [str(f.relative_to(root)) for f in files], "eps_levels": args.eps, "side": args.side,
               "samples": args.samples, "targets": names, "seconds_per_image": seconds, "purification": notes,
               "skipped": skipped, "results": results, "headline": headline}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "efficacy.json").write_text(json.dumps(summary, indent=2) + "\n")
    plot(results["none"], names, args.out / "efficacy.png")
    print_tables(results, seconds, headline, notes)


def run_baselines(args, root: Path, train_targets) -> tuple[dict, dict]:
    """AdvDM at each --advdm-steps and (unless --no-aspl) ASPL-lite, resumed from --work: their
    protected folders and median seconds per image."""
    protected, seconds = {}, {}
    runs = [(f"AdvDM-{steps}", "advdm", {"steps": steps}) for steps in map(int, args.advdm_steps.split(","))]
    if args.aspl:
        runs.append(("ASPL-lite", "aspl", {}))
    for name, method, kwargs in runs:
        run_attack(root, args.work / name, train_targets, method, args.eps, args.side, **kwargs)
        protected[name], seconds[name] = args.work / name / "images", attack_seconds(args.work / name)
    return protected, seconds


def set_folders(sets: Path, tname: str, method: str) -> tuple[Path, Path]:
    """(clean, protected) folders of a method's purified sets. The clean photos purified by a
    mean delta depend on the method whose delta it is; every other clean set is shared."""
    if tname == "subtract-mean-delta":
        return sets / tname / method / "clean", sets / tname / method / "protected"
    return sets / tname / "clean", sets / tname / method


def purification_contexts(args, files, train_targets, protected: dict) -> tuple[dict, dict, dict]:
    """Per method: the PurifyContext (the public model as shipped; a mean delta for RID and the
    reference), the stamp keys of what the subtracting purifications depend on, and notes for the JSON."""
    attacker, backend = public_protector(args.model)
    generator = load_backend(args.model, "torch").gen  # the attacker's copy in PyTorch: the mean delta, tiles, code search
    model_files = onnx_folder(args.model) if backend == "onnx" else resolve_model_path(args.model)
    attacker_key = content_key([model_files], {"backend": backend, "eps": args.eps})
    photos = find_images(args.mean_delta_images)[:MEAN_DELTA_PHOTOS]
    check_disjoint(photos, files)
    mean_deltas = {}  # 16 more AdvDM runs: only when subtract-mean-delta is asked for
    wanted = "subtract-mean-delta" in args.transforms.split(",")
    if wanted:
        mean_deltas["RID"] = mean_working_delta(mean_delta_pairs(photos, args.mean_delta_images, args.eps, gen=generator), args.side)
    if wanted and REFERENCE in protected:
        mean_deltas[REFERENCE] = advdm_mean_delta(photos, args.mean_delta_images, args.work / "mean-delta", train_targets,
                                                  args.eps, args.side, args.mean_delta_advdm_steps)
    tiles = public_tiles(generator) if "subtract-tile-fit" in args.transforms.split(",") and generator.config.get("pattern") else None
    search_key = content_key([resolve_model_path(args.model)], {"eps": args.eps, "starts": CODE_SEARCH_STARTS, "steps": CODE_SEARCH_STEPS})
    contexts, keys = {}, {}
    for method in protected:
        delta = mean_deltas.get(method)
        contexts[method] = PurifyContext(protector=attacker, eps_levels=args.eps, mean_delta=delta, side=args.side, tiles=tiles,
                                         generator=generator)
        keys[("subtract-code-search", method)] = search_key
        keys[("subtract-public-model", method)] = attacker_key
        keys[("subtract-periodic-mean", method)] = f"side={args.side}"
        if tiles is not None:
            keys[("subtract-tile-fit", method)] = hashlib.sha256(f"{args.side}".encode() + tiles.tobytes()).hexdigest()
        if delta is not None:
            keys[("subtract-mean-delta", method)] = hashlib.sha256(f"{delta.shape}".encode() + delta.tobytes()).hexdigest()
    notes = {
        "subtract-public-model": {"model": args.model, "backend": backend, "eps_levels": args.eps,
                                  "seed": "a fresh one of the attacker's own for every photo"},
        "subtract-mean-delta": {
            "photos": [str(p.relative_to(args.mean_delta_images)) for p in photos], "from": str(args.mean_delta_images),
            "working_side": args.side, "estimator": "oracle: mean of (protected - clean) at the working size",
            "RID": "the photos protected by the model, a fresh seed each",
            REFERENCE: f"from AdvDM-{args.mean_delta_advdm_steps} runs on the photos (AdvDM-200 on 16 more photos is 16x the cost of one)",
            "other methods": "n/a"},
        "subtract-tile-fit": {"model": args.model, "tiles": None if tiles is None else len(tiles), "working_side": args.side,
                              "estimator": "the model's tiles (from its weights) fitted by least squares to each cell of each photo's detail"},
        "subtract-code-search": {"model": args.model, "starts": CODE_SEARCH_STARTS, "steps": CODE_SEARCH_STEPS,
                                 "estimator": "the code found by Adam to leave the least detail in each photo once its delta is subtracted"},
        "subtract-periodic-mean": {"working_side": args.side, "period": 16,
                                   "estimator": "each photo's own mean period-16 cell at the working size: no model, no other photo"},
    }
    return contexts, keys, notes


def advdm_mean_delta(photos: list[Path], root: Path, work: Path, targets, eps: int, side: int, steps: int) -> np.ndarray:
    """AdvDM's mean working-size delta over `photos`: run_attack on copies of them under
    work/photos (run_attack takes a folder), resumed from work/AdvDM-<steps>."""
    copies = work / "photos"
    for path in photos:
        dst = copies / path.relative_to(root)
        if not dst.is_file() or dst.read_bytes() != path.read_bytes():
            dst.parent.mkdir(parents=True, exist_ok=True)
            pixels.write_atomic(dst, path.read_bytes())
    out = work / f"AdvDM-{steps}"
    run_attack(copies, out, targets, "advdm", eps, side, steps=steps)
    return mean_working_delta(mean_delta_pairs(find_images(copies), copies, eps, protected_dir=out / "images"), side)


def check_transforms(text: str) -> str:
    names = text.split(",")
    if names[0] != "none" or set(names) - set(TRANSFORMS):
        raise argparse.ArgumentTypeError(f"start with none and choose among {', '.join(TRANSFORMS)}")
    return text


def mean_efficacy(results, tname, method, targets, measure="denoise_mse") -> float | None:
    rows = results[tname].get(method)
    return float(np.mean([rows[t][measure]["efficacy"] for t in targets])) if rows else None


def target_groups(names) -> dict:
    """The groups kept % is averaged over: all targets, the training proxies, the held-out ones,
    and each held-out proxy alone."""
    return {"all": names["train"] + names["heldout"], "train": names["train"], "heldout": names["heldout"],
            **{f"heldout_{t}": [t] for t in names["heldout"]}}


def ratio_pct(value, reference) -> float | None:
    return 100 * value / reference if value is not None and reference else None


def headlines(results, seconds, names) -> dict:
    out = {}
    for measure in MEASURES:
        rid, ref = (mean_efficacy(results, "none", m, names["train"], measure) for m in ("RID", REFERENCE))
        out[f"rid_vs_advdm200_train_{measure}_pct"] = ratio_pct(rid, ref)
        for t in names["heldout"]:
            rid, ref = (mean_efficacy(results, "none", m, [t], measure) for m in ("RID", REFERENCE))
            out[f"rid_vs_advdm200_heldout_{t}_{measure}_pct"] = ratio_pct(rid, ref)
    out["speed_ratio_advdm200_over_rid"] = seconds[REFERENCE] / seconds["RID"] if seconds.get("RID") else None
    out["kept_pct"] = {measure: kept_pct(results, names, measure) for measure in MEASURES}
    out["over_clean_pct"] = {measure: over_clean_pct(results, names, measure) for measure in MEASURES}
    return out


def kept_pct(results, names, measure) -> dict:
    """purification -> method -> group -> 100 * (mean efficacy after it) / (mean efficacy without),
    for RID and the reference; None where not measured (n/a)."""
    return {tname: {method: {group: ratio_pct(mean_efficacy(results, tname, method, targets, measure),
                                              mean_efficacy(results, "none", method, targets, measure))
                             for group, targets in target_groups(names).items()}
                    for method in KEPT_METHODS}
            for tname in results if tname != "none"}


def over_clean_pct(results, names, measure) -> dict:
    """As kept_pct, but against the clean photos as they are, not purified: 100 * (purified
    protected - clean) / (protected - clean). What the attacker's training sees against the photos
    he wanted; above kept % when the purification itself harms clean photos (as subtracting a
    randomised model's output does: it adds a perturbation of its own)."""
    def over(method, tname, targets):
        rows, clean = results[tname].get(method), results["none"][method]
        if not rows:
            return None
        return float(np.mean([rows[t][measure]["protected"] - clean[t][measure]["clean"] for t in targets]))

    return {tname: {method: {group: ratio_pct(over(method, tname, targets), mean_efficacy(results, "none", method, targets, measure))
                             for group, targets in target_groups(names).items()}
                    for method in KEPT_METHODS}
            for tname in results if tname != "none"}


def print_tables(results, seconds, headline, notes) -> None:
    for measure in MEASURES:
        print(f"\nefficacy = protected - clean, {measure} (higher is stronger protection)")
        for tname, methods in results.items():
            if not methods:  # every method skipped (n/a)
                continue
            targets = list(next(iter(methods.values())))
            print(f"{tname:22} {'method':11}" + "".join(f"{t:>20}" for t in targets))
            for method, rows in methods.items():
                print(f"{'':22} {method:11}" + "".join(f"{rows[t][measure]['efficacy']:>+20.6f}" for t in targets))
    print_kept(headline["kept_pct"]["denoise_mse"], headline["over_clean_pct"]["denoise_mse"], notes)
    print("\nseconds per image: " + ", ".join(f"{k} {v:.3f}" for k, v in seconds.items() if v is not None))
    flat = {k: (round(v, 1) if isinstance(v, float) else v) for k, v in headline.items() if k not in ("kept_pct", "over_clean_pct")}
    print("headline: " + json.dumps(flat))


def print_kept(kept: dict, over_clean: dict, notes: dict) -> None:
    """Rows: purifications; columns: RID and the reference's kept % over all targets, the same
    against the unpurified clean photos, then "RID / reference" kept % for each group."""
    if not kept:  # --transforms none
        return
    groups = [g for g in next(iter(next(iter(kept.values())).values())) if g != "all"]
    fmt = lambda v: "n/a" if v is None else f"{v:.1f}"  # noqa: E731
    print("\nefficacy kept after each purification, % of the unpurified efficacy (denoise_mse; ratio of the targets' means)")
    print(f"{'purification':22}{'RID kept %':>12}{REFERENCE + ' kept %':>18}{'over clean: RID / ' + REFERENCE:>30}" + "".join(f"{g:>28}" for g in groups))
    for tname, methods in kept.items():
        mark = "*" if tname == "subtract-mean-delta" else ""
        cells = "".join(f"{fmt(methods['RID'][g]) + ' / ' + fmt(methods[REFERENCE][g]) + mark:>28}" for g in groups)
        over = over_clean[tname]
        print(f"{tname:22}{fmt(methods['RID']['all']):>12}{fmt(methods[REFERENCE]['all']) + mark:>18}"
              f"{fmt(over['RID']['all']) + ' / ' + fmt(over[REFERENCE]['all']):>30}" + cells)
    print(f"over clean: purified protected less the clean photo unpurified, % of the unpurified efficacy. "
          f"group columns: RID / {REFERENCE} kept %. * {REFERENCE}'s mean delta is {notes['subtract-mean-delta'][REFERENCE]}. "
          f"subtract-public-model ran the model's {notes['subtract-public-model']['backend']} backend.")


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
