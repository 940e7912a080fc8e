"""Copy a trained generator into the package as the bundled default, with an honest model card.

    python scripts/bundle_default.py runs/default/train/final ridtrain/weights/default [docs/efficacy/efficacy.json]

The card says what the weights were trained against (the proxies, from their own configs), on what
data, and that they were NOT trained against Stable Diffusion. Given the efficacy report, it
quotes its headline figures, and those of bench/eps_levels.py when eps_levels.json lies beside it;
`rid export` copies the card into the manifest.
"""

import json
import shutil
import sys
from pathlib import Path

import yaml

from ridtrain.defender.generators import count_params, load_generator, round_weights_to_fp16

NAME = "rid-s-proxy"
# The web app leads with these two sentences (the manifest's `plain`): words for the person
# protecting photos, with nothing this model has not shown.
PLAIN = {
    "protects": "This model adds a small, limited change to each photo, meant to spoil image generators that someone "
                "trains on your photos (with DreamBooth or LoRA) to make new pictures of you.",
    "limits": "It was trained and tested only against small test models made by this project, not against Stable "
              "Diffusion, FLUX or any real image generator, so it gives no assurance against them.",
}
SUMMARY = (
    "rid-s (with learned 16-px tiles) made randomised: every protection draws a fresh secret seed whose code "
    "modulates the net, mixes tiles and scales them cell by cell with secret waves (so they do not repeat), so the "
    "perturbation depends on the photo and on that draw. Trained in {stages} stages ({steps} steps; the first "
    "deterministic) with Adv-SDS, then a seed-diversity term and two attacks as augmentation (subtracting the public "
    "model's output; subtracting the photo's own mean 16-px cell), and JPEG/resize throughout, at a {side}-px working side (the "
    "proxies' scale: photos are protected "
    "at that size, and the perturbation is enlarged to the photo), "
    "against {count} small latent diffusion models with {vaes} different VAEs that this project trained from scratch "
    "on CPUs on 18 sample photos from scikit-image and matplotlib (proxies; see trained_against). It was NOT trained "
    "against Stable Diffusion or any real personalization model and gives no assurance against them."
)


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


def main(src: str, dst: str, efficacy: str | None = None) -> None:
    src_dir, dst_dir = Path(src), Path(dst)
    cfg = yaml.safe_load((src_dir / "train_config.yaml").read_text())
    chain = training_stages(src_dir, dst_dir)
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
                                  count=len(cfg["targets"]), vaes=len(vae_sources(cfg["targets"]))),
        "plain": PLAIN,
        "stages": [{"steps": c["steps"], "targets": c["targets"], "arch_overrides": c.get("arch_overrides", {}),
                    "diversity_weight": c.get("diversity_weight", 0.0), "aug_subtract_prob": c.get("aug_subtract_prob", 0.0),
                    "aug_periodic_mean_prob": c.get("aug_periodic_mean_prob", 0.0), "aug_tile_fit_prob": c.get("aug_tile_fit_prob", 0.0)}
                   for c in chain],
        "arch": cfg["arch"],
        "eps_levels": cfg["eps"],
        "working_side": cfg["side"],
        "trained_against": [proxy_entry(t) for t in cfg["targets"]],
        "data": "18 sample photos shipped by scikit-image and matplotlib (rid data build-corpus, train split); "
                "the 3 held-out photos were never seen by the proxies or the generator",
        "real_models_trained_against": [],
        "train_against_real_sd": "accelerate launch -m rid.cli train --config configs/sd-ensemble.yaml",
        "reproduce": "scripts/build_default.sh",
        "weights": "rounded to the nearest fp16 values (kept as float32): the fp16-stored web file is lossless",
        "efficacy": json.loads(Path(efficacy).read_text())["headline"] if efficacy else "not measured yet (bench/efficacy_report.py)",
    }
    levels = Path(efficacy).with_name("eps_levels.json") if efficacy else None
    if levels and levels.is_file():  # bench/eps_levels.py: eps as input against one model per eps
        card["eps_as_input"] = {eps: row["pct_of_advdm"] for eps, row in json.loads(levels.read_text())["levels"].items()}
    (tmp / "model_card.json").write_text(json.dumps(card, indent=2) + "\n")
    shutil.rmtree(dst_dir, ignore_errors=True)
    tmp.rename(dst_dir)


if __name__ == "__main__":
    main(*sys.argv[1:4])
