"""Copy a trained generator into the package as the bundled default, with an honest model card.

    python scripts/bundle_placeholder.py runs/placeholder/final ridtrain/weights/default
"""

import json
import shutil
import sys
from pathlib import Path

import yaml

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
    for name in ("config.json", "diffusion_pytorch_model.safetensors", "train_config.yaml"):
        shutil.copyfile(src_dir / name, tmp / name)
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
        "efficacy": "see the closing note of the issue that bundled it; not measured against any real model",
    }
    (tmp / "model_card.json").write_text(json.dumps(card, indent=2) + "\n")
    shutil.rmtree(dst_dir, ignore_errors=True)
    tmp.rename(dst_dir)


if __name__ == "__main__":
    main(*sys.argv[1:3])
