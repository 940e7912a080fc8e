"""A photo corpus from images that installed packages ship: scikit-image and matplotlib (PyPI), and
Debian's mate-backgrounds (photographs of nature), with a fixed train / held-out split by image.
Nothing third-party is committed: this rebuilds it anywhere, byte for byte, and writes
corpus.json beside it naming each file's source, license and sha256."""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

HELD_OUT = {"rocket.jpg", "grace_hopper.jpg", "motorcycle_right.png"}  # never seen in training


@dataclass(frozen=True)
class Source:
    name: str  # what it is called in corpus.json
    package: str  # how to install it when it is missing
    files: dict[str, str]  # file name -> its license, as the package states it

    def folder(self) -> Path:
        if self.name == "scikit-image":
            import skimage

            return Path(skimage.__file__).parent / "data"
        if self.name == "matplotlib":
            import matplotlib

            return Path(matplotlib.get_data_path()) / "sample_data"
        return Path("/usr/share/backgrounds/mate/nature")


_CC0 = "CC0 (per skimage.data's docstring)"
_PD = "public domain (per skimage.data's docstring)"
_NONE = "no known copyright restrictions (per skimage.data's docstring)"
_UNSTATED = "not stated by scikit-image (shipped in its data folder)"
_MIDDLEBURY = "not stated by scikit-image; from the Middlebury 2014 stereo benchmark (per skimage.data's docstring)"
SCIKIT_IMAGE = Source("scikit-image", "pip: scikit-image", {
    "astronaut.png": _PD, "brick.png": _CC0, "camera.png": _CC0, "cell.png": _CC0, "chelsea.png": _CC0,
    "clock_motion.png": _PD, "coffee.png": _CC0, "coins.png": _NONE, "grass.png": _CC0, "gravel.png": _CC0,
    "horse.png": _CC0, "hubble_deep_field.jpg": _PD, "ihc.png": _NONE, "moon.png": _UNSTATED,
    "motorcycle_left.png": _MIDDLEBURY, "motorcycle_right.png": _MIDDLEBURY, "page.png": _UNSTATED, "retina.jpg": _CC0,
    "rocket.jpg": _PD, "text.png": _PD,
})
MATPLOTLIB = Source("matplotlib", "pip: matplotlib", {"grace_hopper.jpg": "public domain (US Navy photograph)"})
_GPL = "GPL-2+ (Debian's /usr/share/doc/mate-backgrounds/copyright)"
MATE_BACKGROUNDS = Source("debian:mate-backgrounds", "apt-get install mate-backgrounds", {
    n: _GPL for n in ["Aqua.jpg", "Blinds.jpg", "Dune.jpg", "FreshFlower.jpg", "Garden.jpg", "GreenMeadow.jpg",
                      "LadyBird.jpg", "RainDrops.jpg", "Storm.jpg", "TwoWings.jpg", "Wood.jpg", "YellowFlower.jpg"]
})
PYTHON_SOURCES = (SCIKIT_IMAGE, MATPLOTLIB)  # what pip alone installs: enough for the tests
ALL_SOURCES = (*PYTHON_SOURCES, MATE_BACKGROUNDS)  # the training corpus


def build_corpus(out: str | Path, sources=ALL_SOURCES) -> dict[str, int]:
    """Copy the images byte for byte into out/train and out/heldout and write out/corpus.json;
    returns counts per split. A missing source fails before anything is copied."""
    out = Path(out)
    for source in sources:
        missing = [n for n in source.files if not (source.folder() / n).is_file()]
        if missing:
            raise FileNotFoundError(f"{source.folder() / missing[0]} is missing: is {source.name} installed in full "
                                    f"({source.package})?")
    counts, entries = {"train": 0, "heldout": 0}, []
    for source in sources:
        for name, license in source.files.items():
            split = "heldout" if name in HELD_OUT else "train"
            (out / split).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source.folder() / name, out / split / name)
            digest = hashlib.sha256((out / split / name).read_bytes()).hexdigest()
            entries.append({"file": f"{split}/{name}", "source": source.name, "license": license, "sha256": digest})
            counts[split] += 1
    manifest = {"held_out": sorted(HELD_OUT), "counts": counts, "images": entries}
    (out / "corpus.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return counts
