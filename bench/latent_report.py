"""The efficacy report's latent table (bench/efficacy_report.py --latent taef2): how far each method
moves a photo's latent in a real model's latent space, measured at the attacker's scale.

Methods, all at the same eps: RID (as users get it, a fresh seed per photo), white-box encoder PGD
at each --pgd-steps (`rid attack --method encoder`, steps of 1/255) and Gaussian noise with RID's
L2. Measure: |E(x') - E(x)| / |E(x)| at --latent-side, mean over the photos; then the same after each
purification, applied to clean and protected photos alike, as % kept. The first purification is the
app's JPEG download (purify.DOWNLOAD_JPEG, at ridpixels.OUTPUT_FORMATS' quality): the shift left when
a person downloads the smaller file, beside the unpurified shift, which is the lossless PNG's. The
last three are models an attacker can download (ffdnet, noise+ffdnet, noisy-upscale:
ridtrain/attacker/pretrained.py).

Beside the shift, the decoded damage: PSNR and SSIM of D(E(x')) against D(E(x)) through the encoder's
decoder (TAEF2's), at --latent-side, mean over the photos: what a model fine-tuned on these latents
would reproduce of the change. Lower is stronger protection. The Gaussian row gets it too, with the
noise the latent table draws.
Encoder PGD costs minutes a photo here, so its protected photos are kept in --pgd-cache (committed)
with their seconds, keyed by the photos' bytes and the settings: a re-run after retraining RID
evaluates RID alone.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np

from ridtrain import pixels
from ridtrain.attacker.attacks import run_attack
from ridtrain.attacker.evaluate import check_disjoint, conditions, evaluate, mean_delta_pairs
from ridtrain.attacker.purify import DOWNLOAD_JPEG, DOWNLOAD_JPEG_QUALITY, MEAN_DELTA_PHOTOS, PurifyContext, mean_working_delta
from ridtrain.data import DATA_MULTIPLE, find_images
from ridtrain.diffusion.taef2 import FOLDER, load_encoders, load_taef2

# the app's JPEG download first (beside the unpurified, lossless shift), then the attacker's purifications
LATENT_PURIFICATIONS = tuple(dict.fromkeys((DOWNLOAD_JPEG, "jpeg75", "resize0.5", "subtract-public-model", "subtract-mean-delta",
                                            "subtract-periodic-mean", "subtract-tile-fit", "ffdnet", "noise+ffdnet", "noisy-upscale")))
LABELS = {DOWNLOAD_JPEG: f"{DOWNLOAD_JPEG} (JPEG download)"}  # column heads: the app's download says so
DOWNLOAD_NOTE = (f"the app's JPEG download (ridpixels.OUTPUT_FORMATS['jpeg']: quality {DOWNLOAD_JPEG_QUALITY}, Pillow 4:2:0): "
                 "the protected photo as a person downloads the smaller file, against the clean photo through the same "
                 "encoder; the unpurified shift is the lossless PNG's")


def pgd_images(files, root: Path, encoder_names, args, steps: int) -> tuple[Path, dict]:
    """Encoder-PGD protected photos at `steps` and their seconds: from --pgd-cache when it holds
    them for these photos and settings, else run (resumably, under --work) and cached."""
    settings = {"eps": args.eps, "side": args.latent_side, "steps": steps, "encoders": list(encoder_names),
                "photos": {str(f.relative_to(root)): hashlib.sha256(f.read_bytes()).hexdigest() for f in files}}
    cache = args.pgd_cache / f"PGD-{steps}"
    stamp = cache / "cache.json"
    if stamp.is_file():
        stored = json.loads(stamp.read_text())
        if stored["settings"] == settings:
            return cache / "images", stored["seconds"]
    # run_attack resumes from the deltas it finds: a folder per settings, so none of another run's are taken
    work = args.work / f"encoder-PGD-{steps}-{hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]}"
    run_attack(root, work, load_encoders(encoder_names), "encoder", args.eps, args.latent_side, steps=steps)
    from safetensors import safe_open

    seconds = {}
    for f in files:
        rel = f.relative_to(root)
        with safe_open(work / "deltas" / (str(rel) + ".safetensors"), "pt") as d:
            seconds[str(rel)] = float(d.metadata()["seconds"])
    if cache.exists():
        shutil.rmtree(cache)
    shutil.copytree(work / "images", cache / "images")
    stamp.write_text(json.dumps({"settings": settings, "seconds": seconds}, indent=1) + "\n")
    return cache / "images", seconds


def contexts(args, files, rid_generator, attacker) -> tuple[dict, dict]:
    """Per method, the PurifyContext at the latent side: the public model as shipped for
    subtract-public-model; RID's mean delta over other photos; and the notes for the JSON.
    Encoder PGD gets no mean delta (16 more runs of minutes each), and a model without tiles has
    nothing for subtract-tile-fit to fit: both are n/a, not zero."""
    photos = find_images(args.mean_delta_images)[:MEAN_DELTA_PHOTOS]
    check_disjoint(photos, files)
    mean_delta = mean_working_delta(mean_delta_pairs(photos, args.mean_delta_images, args.eps, gen=rid_generator), args.latent_side)
    tiles = None
    if getattr(rid_generator.config, "pattern", 0):
        from ridtrain.attacker.purify import public_tiles

        tiles = public_tiles(rid_generator)
    common = dict(protector=attacker, eps_levels=args.eps, side=args.latent_side, tiles=tiles, generator=rid_generator)
    out = {"RID": PurifyContext(mean_delta=mean_delta, **common)}
    for steps in args.pgd_steps:
        out[f"encoder-PGD-{steps}"] = PurifyContext(**common)
    notes = {DOWNLOAD_JPEG: DOWNLOAD_NOTE,
             "subtract-mean-delta": f"RID: the mean delta of {len(photos)} other photos protected with fresh seeds; "
                                    "encoder PGD: n/a (16 more runs of minutes each)",
             "subtract-tile-fit": "n/a: the model has no tiles (pattern 0)" if tiles is None else f"{len(tiles)} tiles"}
    return out, notes


def purifications_for(method: str, context: PurifyContext) -> list[str]:
    return [p for p in LATENT_PURIFICATIONS
            if not (p == "subtract-mean-delta" and context.mean_delta is None) and not (p == "subtract-tile-fit" and context.tiles is None)]


def load_decoders(names) -> dict:
    """Per --latent encoder, the decoder that goes with it: TAEF2's for "taef2", a folder's own
    taef2_decoder.pth, or None (no decoded damage for that encoder)."""
    out = {}
    for name in names:
        folder = FOLDER if str(name) == "taef2" else Path(name)
        out[name] = load_taef2("decoder", folder) if (folder / "taef2_decoder.pth").is_file() else None
    return out


def decoded_damage(files, root: Path, folder: Path, side: int, encoders: dict, decoders: dict, eps: int,
                   gaussian: bool = False, seed: int = 0) -> dict:
    """Per encoder with a decoder, the mean over the photos of PSNR (dB, on [0, 1]) and SSIM (11x11,
    kornia) of D(E(x')) against D(E(x)), both clamped to [0, 1], with x and x' read as the latent
    table reads them (ridtrain.attacker.evaluate: the working size at `side`, multiples of 8). With
    `gaussian`, also for the Gaussian noise of the protected delta's L2 that evaluate() draws for
    photo i (evaluate.conditions with the seed LatentShifts.add uses), under "gaussian"."""
    import torch
    from kornia.metrics import ssim

    sums = {name: {} for name, decoder in decoders.items() if decoder is not None}
    for i, path in enumerate(files):
        clean = pixels.working_image(pixels.to_float(pixels.load_image(path).rgb), side, DATA_MULTIPLE)
        match = folder / path.relative_to(root).with_suffix(".png")
        protected = pixels.working_image(pixels.to_float(pixels.load_image(match).rgb), side, DATA_MULTIPLE)
        others = {"protected": protected}
        if gaussian:
            others["gaussian"] = conditions(clean, protected, eps / 255, torch.Generator().manual_seed(seed + 1_000_003 * i + 1))["gaussian"]
        for name in sums:
            with torch.no_grad():
                seen = decoders[name](encoders[name](clean)).clamp(0, 1)
                for what, x in others.items():
                    back = decoders[name](encoders[name](x)).clamp(0, 1)
                    mse = (back - seen).pow(2).mean().item()
                    stats = sums[name].setdefault(what, {"psnr": 0.0, "ssim": 0.0})
                    stats["psnr"] += (float("inf") if mse == 0 else -10 * np.log10(mse)) / len(files)
                    stats["ssim"] += ssim(back, seen, 11).mean().item() / len(files)
    return sums


def cached(cache: Path, key: dict, folders, run):
    h = hashlib.sha256(json.dumps(key, sort_keys=True).encode())
    for folder in folders:
        for file in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
            h.update(str(file.relative_to(folder)).encode() + b"\0" + file.read_bytes())
    file = cache / f"latent-{h.hexdigest()}.json"
    if file.is_file():
        return json.loads(file.read_text())
    report = run()
    cache.mkdir(parents=True, exist_ok=True)
    file.with_name(file.name + ".tmp").write_text(json.dumps(report))
    file.with_name(file.name + ".tmp").replace(file)
    return report


def latent_report(args, files, root: Path, rid_folder: Path, rid_seconds: float, rid_generator, attacker,
                  attacker_key: str) -> tuple[dict, dict]:
    """Evaluate every method; returns latent.json's content and each method's protected folder.
    RID's shift is given as a % of the first of --pgd-steps (the reference). `attacker_key` is the
    content hash of the public model, which the subtracting purifications run on every method."""
    encoders = {name: enc for name, enc in zip(args.latent, load_encoders(args.latent))}
    decoders = load_decoders(args.latent)
    protected, seconds = {"RID": rid_folder}, {"RID": rid_seconds}
    for steps in args.pgd_steps:
        folder, per_photo = pgd_images(files, root, args.latent, args, steps)
        protected[f"encoder-PGD-{steps}"], seconds[f"encoder-PGD-{steps}"] = folder, float(np.median(list(per_photo.values())))
    ctx, notes = contexts(args, files, rid_generator, attacker)
    reports = {}
    for method, folder in protected.items():
        names = purifications_for(method, ctx[method])
        key = {"method": method, "eps": args.eps, "side": args.latent_side, "encoders": args.latent, "purifications": names,
               "public_model": attacker_key,
               "mean_delta": None if ctx[method].mean_delta is None else hashlib.sha256(ctx[method].mean_delta.tobytes()).hexdigest(),
               "decoded": [name for name, decoder in decoders.items() if decoder is not None]}
        # RID and subtract-public-model draw fresh seeds, so RID's set is new on every run and is evaluated again
        reports[method] = cached(args.work / "evaluations", key, [root, folder], lambda: {
            **evaluate([], root, protected_dir=folder, eps_levels=args.eps, purifications=names, context=ctx[method],
                       encoders=encoders, latent_side=args.latent_side),
            "decoded": decoded_damage(files, root, folder, args.latent_side, encoders, decoders, args.eps, gaussian=method == "RID")})
    rows = {}
    for name in args.latent:
        rows[name] = {}
        for method, report in reports.items():
            lat = report["latent"]
            rows[name][method] = {"shift": lat["shift"][name]["protected"], "gaussian_same_l2": lat["shift"][name]["gaussian"],
                                  "purified": {p: lat["purified"][p][name] for p in lat.get("purified", {})},
                                  "kept_pct": {p: lat["kept_pct"][p][name] for p in lat.get("kept_pct", {})},
                                  "psnr": report["delta"]["psnr"], "ssim": report["delta"]["ssim"], "seconds": seconds[method],
                                  **decoded_fields(report, name, "protected")}
        rows[name]["Gaussian (RID's L2)"] = {"shift": rows[name]["RID"]["gaussian_same_l2"], **decoded_fields(reports["RID"], name, "gaussian")}
    notes["decoded"] = ("decoded PSNR and SSIM: D(E(x')) against D(E(x)) through the encoder's decoder (TAEF2's) at the latent "
                        "side, mean over the photos; lower is stronger protection")
    return {"side": args.latent_side, "eps_levels": args.eps, "images": [str(f.relative_to(root)) for f in files],
            "reference": f"encoder-PGD-{args.pgd_steps[0]}", "rows": rows, "notes": notes}, protected


def decoded_fields(report: dict, encoder: str, what: str) -> dict:
    """decoded_psnr and decoded_ssim of one row, None where the encoder has no decoder."""
    stats = report["decoded"].get(encoder, {}).get(what)
    return {"decoded_psnr": stats and stats["psnr"], "decoded_ssim": stats and stats["ssim"]}


def print_latent(latent: dict) -> None:
    fmt = lambda v, spec: "n/a" if v is None else format(v, spec)  # noqa: E731
    for name, rows in latent["rows"].items():
        ref = rows[latent["reference"]]["shift"]
        print(f"\n{name}: relative latent shift |E(x') - E(x)| / |E(x)| at side {latent['side']}, eps {latent['eps_levels']}, "
              f"{len(latent['images'])} photos; purified: the shift left, and % of the unpurified shift kept")
        print("dec PSNR, dec SSIM: D(E(x')) against D(E(x)) through the decoder (lower is stronger); "
              "PSNR, SSIM: the protected photo against the clean one")
        head = (f"{'method':20}{'shift':>7}{'noise':>7}{'x noise':>8}{'% ' + latent['reference'][8:]:>9}{'dec PSNR':>9}{'dec SSIM':>9}"
                + "".join(f"{LABELS.get(p, p):>24}" for p in LATENT_PURIFICATIONS))
        print(head + f"{'PSNR':>6}{'SSIM':>7}{'s/photo':>9}")
        for method, row in rows.items():
            decoded = f"{fmt(row.get('decoded_psnr'), '.1f'):>9}{fmt(row.get('decoded_ssim'), '.3f'):>9}"
            if "purified" not in row:
                print(f"{method:20}{row['shift']:>7.3f}{'':>7}{'':>8}{100 * row['shift'] / ref:>8.0f}%" + decoded)
                continue
            cells = "".join(f"{fmt(row['purified'].get(p), '.3f') + ' (' + fmt(row['kept_pct'].get(p), '.0f') + ' %)':>24}"
                            if p in row["purified"] else f"{'n/a':>24}" for p in LATENT_PURIFICATIONS)
            print(f"{method:20}{row['shift']:>7.3f}{row['gaussian_same_l2']:>7.3f}{row['shift'] / row['gaussian_same_l2']:>7.1f}x"
                  f"{100 * row['shift'] / ref:>8.0f}%" + decoded + cells + f"{row['psnr']:>6.1f}{row['ssim']:>7.3f}{row['seconds']:>9.3f}")
        for method, row in rows.items():
            if method != "RID" and "seconds" in row:
                print(f"RID is {row['seconds'] / rows['RID']['seconds']:,.0f}x faster than {method} per photo")
    print("notes: " + "; ".join(f"{k}: {v}" for k, v in latent["notes"].items()))


def decoded_figure(files, root: Path, folders: dict, side: int, path: Path) -> None:
    """What the attacker's model sees: for the first photo, each method's photo and D(E(photo))
    through TAEF2 (FLUX.2's distilled VAE), at the latent side."""
    import matplotlib
    import torch

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    encoder, decoder = load_taef2("encoder"), load_taef2("decoder")
    photo = files[0]
    fig, axes = plt.subplots(3, len(folders), figsize=(3.2 * len(folders), 9.6))
    seen = {}
    for col, (method, folder) in enumerate(folders.items()):
        src = photo if folder is None else folder / photo.relative_to(root).with_suffix(".png")
        x = pixels.working_image(pixels.to_float(pixels.load_image(src).rgb), side, 8)
        with torch.no_grad():
            seen[method] = decoder(encoder(x)).clamp(0, 1)
        clean_seen = next(iter(seen.values()))
        change = (0.5 + 4 * (seen[method] - clean_seen)).clamp(0, 1)
        for row, (img, title) in enumerate(((x, method), (seen[method], f"D(E({method}))"),
                                            (change, f"D(E({method})) - D(E(clean)), x4"))):
            axes[row, col].imshow(img[0].permute(1, 2, 0).numpy())
            axes[row, col].set_axis_off()
            axes[row, col].set_title(title, fontsize=9)
    fig.suptitle(f"{photo.name} at side {side}: the photo, and what FLUX.2's latent space keeps of it (TAEF2 encode, decode)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
