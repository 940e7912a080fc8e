"""A small photo corpus from images that installed packages ship (scikit-image, matplotlib), with a
fixed train / held-out split by image. Nothing third-party is committed: this rebuilds it anywhere."""

from __future__ import annotations

import shutil
from pathlib import Path

SKIMAGE = [
    "astronaut.png", "brick.png", "camera.png", "cell.png", "chelsea.png", "clock_motion.png", "coffee.png",
    "coins.png", "grass.png", "gravel.png", "horse.png", "hubble_deep_field.jpg", "ihc.png", "moon.png",
    "motorcycle_left.png", "motorcycle_right.png", "page.png", "retina.jpg", "rocket.jpg", "text.png",
]
MATPLOTLIB = ["grace_hopper.jpg"]
HELD_OUT = {"rocket.jpg", "grace_hopper.jpg", "motorcycle_right.png"}  # never seen in training


def _sources() -> list[Path]:
    import matplotlib
    import skimage

    sk = Path(skimage.__file__).parent / "data"
    mpl = Path(matplotlib.get_data_path()) / "sample_data"
    return [sk / n for n in SKIMAGE] + [mpl / n for n in MATPLOTLIB]


def build_corpus(out: str | Path) -> dict[str, int]:
    """Copy the images byte for byte into out/train and out/heldout; returns counts per split."""
    out = Path(out)
    counts = {"train": 0, "heldout": 0}
    for src in _sources():
        if not src.is_file():
            raise FileNotFoundError(f"{src} is missing: is the package installed in full?")
        split = "heldout" if src.name in HELD_OUT else "train"
        (out / split).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, out / split / src.name)
        counts[split] += 1
    return counts
