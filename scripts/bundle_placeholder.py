"""Copy a trained generator into the package as the bundled default, with an honest model card.

    python scripts/bundle_placeholder.py runs/placeholder/final ridtrain/weights/default
"""

import json
import shutil
import sys
from pathlib import Path

import yaml

from ridtrain.generators import load_generator, round_weights_to_fp16

SUMMARY = (
    "PLACEHOLDER. rid-s trained for {steps} steps against two tiny latent diffusion models built on this "
    "project's CPU machines (random VAEs, UNets fitted for 150 steps to 18 sample photos from scikit-image "
    "and matplotlib). It was NOT trained against Stable Diffusion or any real personalization model and "
    "gives no assurance against them."
)


def main(src: str, dst: str) -> None:
    src_dir, dst_dir = Path(src), Path(dst)
    cfg = yaml.safe_load((src_dir / "train_config.yaml").read_text())
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
        "name": "rid-s-placeholder",
        "summary": SUMMARY.format(steps=cfg["steps"]),
        "arch": cfg["arch"],
        "eps_levels": cfg["eps"],
        "trained_against": [
            {"path": t, "kind": "tiny latent diffusion model (AutoencoderKL 0.66 M + UNet2DConditionModel 0.79 M parameters)"}
            for t in cfg["targets"]
        ],
        "data": "18 sample photos shipped by scikit-image and matplotlib (rid data build-corpus, train split)",
        "real_models_trained_against": [],
        "reproduce": "scripts/build_placeholder.sh",
        "weights": "rounded to the nearest fp16 values (kept as float32): the fp16-stored web file is lossless",
        "efficacy": "see the closing note of the issue that bundled it; not measured against any real model",
    }
    (tmp / "model_card.json").write_text(json.dumps(card, indent=2) + "\n")
    shutil.rmtree(dst_dir, ignore_errors=True)
    tmp.rename(dst_dir)


if __name__ == "__main__":
    main(*sys.argv[1:3])
