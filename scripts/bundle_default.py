"""Copy a trained generator into the package as the bundled default, with an honest model card.

    python scripts/bundle_default.py runs/taef2-firm-long/final ridtrain/weights/default \\
        [docs/efficacy/efficacy.json [docs/efficacy/latent.json]]

The card says what the weights were trained against (TAEF2, FLUX.2's distilled encoder; the proxies,
from their own configs), on what data, and that they were NOT trained against Stable Diffusion or the
full FLUX.2 pipeline. Given the efficacy report's proxy and latent tables, it quotes their figures,
and its plain sentences are words for a person, without figures; `rid export` copies the card into the manifest.
"""

import json
import shutil
import sys
from pathlib import Path

import yaml

from ridtrain.defender.generators import count_params, load_generator, round_weights_to_fp16

NAME = "rid-taef2-s"
# The web app leads with these two sentences (the manifest's `plain`): words for the person
# protecting photos, with nothing this model has not shown, and no research words: the measured
# figures are for researchers (the card's efficacy, docs/efficacy), not for this first screen.
PROTECTS = ("Protecting adds a faint change to each photo, meant to stop AI tools that someone trains on your "
            "photos from making convincing new pictures of you.")
LIMITS = ("It gives no assurance: it was tested against one public image model and small test models made by this "
          "project, not against the image generators people use, such as Stable Diffusion, and it does not hide who "
          "is in the photo.")
SUMMARY = (
    "rid-s at FLUX.2's encoder stride (8x8 pixel-unshuffle, one level of 96 channels), randomised: every protection "
    "draws a fresh secret seed whose code modulates the net and draws plane waves across the photo, so the "
    "perturbation depends on the photo and on that draw (bench/grid_check.py measures how far it still repeats on "
    "flat backgrounds). It works at a "
    "{side}-px working side (the scale attackers fine-tune at). Trained in {stages} stages ({steps} steps) on "
    "{crop}-px crops taken at that scale: against TAEF2, a public distilled copy of FLUX.2's VAE encoder (pushing the "
    "photo's latent away from the clean one), then also with Adv-SDS against {count} small latent diffusion models "
    "that this project trained on CPUs (proxies, shown each crop at a quarter of its scale, as rid eval shows them "
    "photos at 128 px), "
    "with JPEG/resize, subtracting the public model's output and subtracting the photo's own periodic mean as "
    "augmentation. It was NOT trained against Stable Diffusion or the full FLUX.2 pipeline (only FLUX.2's encoder, "
    "distilled) and gives no assurance against them."
)


def latent_entry(name: str) -> dict:
    from ridtrain.diffusion.taef2 import FOLDER, SHA256

    if str(name) != "taef2":
        return {"name": Path(name).name, "path": str(name), "kind": "latent encoder (TAEF2's layout)"}
    return {"name": "TAEF2", "path": "ridtrain/weights/taef2",
            "kind": "distilled stand-in for FLUX.2's VAE encoder (TAESD project, MIT)",
            "sha256": SHA256["encoder"], "license": (Path(FOLDER) / "LICENSE").read_text().splitlines()[0]}


def latent_summary(latent: dict) -> dict:
    """The card's TAEF2 figures from bench/efficacy_report.py's latent.json."""
    out = {"measure": "relative latent shift |E(x') - E(x)| / |E(x)|", "side": latent["side"], "eps_levels": latent["eps_levels"],
           "photos": latent["images"], "reference": latent["reference"]}
    for name, rows in latent["rows"].items():
        rid, ref = rows["RID"], rows[latent["reference"]]
        out[name] = {"shift": {m: r["shift"] for m, r in rows.items()},
                     "rid_pct_of_reference": 100 * rid["shift"] / ref["shift"],
                     "rid_over_noise_of_same_l2": rid["shift"] / rid["gaussian_same_l2"],
                     "rid_kept_pct": rid["kept_pct"], "reference_kept_pct": ref["kept_pct"],
                     "psnr": {m: r["psnr"] for m, r in rows.items() if "psnr" in r},
                     "ssim": {m: r["ssim"] for m, r in rows.items() if "ssim" in r},
                     # the reference's seconds were timed when its cache was made (bench/cache/encoder-pgd), RID's in the report's run
                     "seconds_per_photo": {m: r["seconds"] for m, r in rows.items() if "seconds" in r}}
    return out


def plain_sentences() -> dict:
    return {"protects": PROTECTS, "limits": LIMITS}


def proxy_entry(path: str) -> dict:
    from ridtrain.diffusion.targets import load_target

    target = load_target(path)
    cfg = yaml.safe_load((Path(path) / "proxy_config.yaml").read_text())
    return {"path": path, "kind": "proxy latent diffusion model trained here (rid proxy train)",
            "vae_parameters": count_params(target.vae), "unet_parameters": count_params(target.unet),
            "seed": cfg["seed"], "unet_width": cfg["width"], "unet_layers": cfg["unet_layers"],
            "vae": f"shared with {Path(cfg['vae']).name}" if cfg.get("vae") else "its own"}


def vae_sources(targets: list[str]) -> set[str]:
    """The distinct VAEs of proxy targets: a proxy trained with `vae:` reuses that proxy's."""
    sources = set()
    for path in targets:
        cfg = yaml.safe_load((Path(path) / "proxy_config.yaml").read_text())
        sources.add(Path(cfg["vae"]).name if cfg.get("vae") else Path(path).name)
    return sources


def training_stages(folder: Path, dst: Path) -> list[dict]:
    """The train configs of a generator and of those it started from (init_from), first stage
    first. A stage that started from a bundled model takes that model's stages from its card; not
    from `dst`, the folder being replaced, whose card may already list this very chain."""
    chain = []
    while True:
        cfg = yaml.safe_load((folder / "train_config.yaml").read_text())
        chain.insert(0, cfg)
        if not cfg.get("init_from"):
            return chain
        folder = Path(cfg["init_from"])
        if folder.resolve() == dst.resolve():
            raise ValueError(f"a stage started from {dst}, the folder being replaced: point its init_from at a copy of what it "
                             "started from")
        card = folder / "model_card.json"
        if card.is_file() and "stages" in json.loads(card.read_text()):
            return json.loads(card.read_text())["stages"] + chain


def corpus_words(data: str) -> str:
    manifest = Path(data).parent / "corpus.json"
    if not manifest.is_file():
        return "photos from a corpus without a corpus.json (not rid data build-corpus)"
    corpus = json.loads(manifest.read_text())
    sources = sorted({e["source"] for e in corpus["images"]})
    # shown by the web app, which shows no file names
    return (f"{corpus['counts']['train']} photos shipped by {', '.join(sources)} (rid data build-corpus, train split, "
            f"which records each photo's source and license); the {corpus['counts']['heldout']} held-out photos were "
            "never seen by the proxies or the generator")


def main(src: str, dst: str, efficacy: str | None = None, latent: str | None = None) -> None:
    src_dir, dst_dir = Path(src), Path(dst)
    cfg = yaml.safe_load((src_dir / "train_config.yaml").read_text())
    chain = training_stages(src_dir, dst_dir)
    latent_report = json.loads(Path(latent).read_text()) if latent else None
    tmp = dst_dir.with_name(dst_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    # fp16-exact weights make the browser's half-size download (model.w16.onnx) lossless
    round_weights_to_fp16(load_generator(src_dir)).save_pretrained(tmp)
    config = json.loads((tmp / "config.json").read_text())
    config.pop("_name_or_path", None)  # where it was loaded from: a build machine's path
    (tmp / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    shutil.copyfile(src_dir / "train_config.yaml", tmp / "train_config.yaml")
    card = {
        "name": NAME,
        "summary": SUMMARY.format(stages=len(chain), steps=" + ".join(str(c["steps"]) for c in chain), side=cfg["side"],
                                  crop=cfg["crop"], count=len(cfg["targets"])),
        "plain": plain_sentences(),
        "stages": [{"steps": c["steps"], "targets": c["targets"], "latent_targets": c.get("latent_targets", []),
                    "data": c["data"], "arch_overrides": c.get("arch_overrides", {}), "target_scale": c.get("target_scale", 1.0),
                    "aug_subtract_prob": c.get("aug_subtract_prob", 0.0), "aug_periodic_mean_prob": c.get("aug_periodic_mean_prob", 0.0)}
                   for c in chain],
        "arch": cfg["arch"],
        "eps_levels": cfg["eps"],
        "working_side": cfg["side"],
        "trained_against": [latent_entry(t) for t in cfg.get("latent_targets", [])] + [proxy_entry(t) for t in cfg["targets"]],
        "data": corpus_words(cfg["data"]),
        "real_models_trained_against": [e["name"] + ": " + e["kind"] for e in map(latent_entry, cfg.get("latent_targets", []))],
        "train_against_real_sd": "accelerate launch -m rid.cli train --config configs/sd-ensemble.yaml",
        "reproduce": "scripts/build_default.sh",
        "weights": "rounded to the nearest fp16 values (kept as float32): the fp16-stored web file is lossless",
        "efficacy": {
            "taef2": latent_summary(latent_report) if latent_report else "not measured yet (bench/efficacy_report.py --latent taef2)",
            "proxies": json.loads(Path(efficacy).read_text())["headline"] if efficacy else "not measured yet (bench/efficacy_report.py -t ...)",
        },
    }
    (tmp / "model_card.json").write_text(json.dumps(card, indent=2) + "\n")
    shutil.rmtree(dst_dir, ignore_errors=True)
    tmp.rename(dst_dir)


if __name__ == "__main__":
    main(*sys.argv[1:5])
