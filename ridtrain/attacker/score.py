"""Scores for images that a personalization model (DreamBooth & co.) made of a subject, as in
Anti-DreamBooth: did the protection keep the model from learning the face?

- FDFR (face detection failure rate): the share of sample images in which no face is found.
- ISM (identity score matching): the cosine similarity between a sample's face embedding and
  the mean embedding of the subject's clean reference photos, averaged over the samples that
  have a face. It is undefined (None, never 0) when no sample or no reference has a face.
  dlib's embeddings are not centred, so cosines between different people are high too (0.88
  between the astronaut and Grace Hopper): compare ISMs with each other, not with the paper's
  ArcFace numbers.
- BRISQUE: a no-reference image quality score (lower is better), from the LIVE-trained model
  that the brisque package ships. Undefined (None) for an image without texture, such as a flat
  colour, where its model fits divide by zero.

In each image only the largest face detected counts. Faces are found with dlib's HOG frontal
face detector and embedded with dlib's ResNet face model; its weights (and the 5-point landmark
model that aligns faces for it) come from the face-recognition-models package. The optional
packages are imported only when scoring, so this module imports without them.
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import importlib.util
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ridtrain import pixels
from ridtrain.data import find_images

INSTALL_HINT = "pip install dlib-bin face-recognition-models 'brisque[opencv-python-headless]'"
UPSAMPLES = (0, 1, 2, 3)  # each step doubles the sides the detector scans: 4 would be 256x the pixels
LANDMARKS_FILE = "shape_predictor_5_face_landmarks.dat"
EMBEDDER_FILE = "dlib_face_recognition_resnet_model_v1.dat"
EMBEDDER = "dlib ResNet face embedder v1 (face-recognition-models)"


class ScoreError(ValueError):
    """Scoring cannot start or has nothing to score; the message is one line."""


@dataclass(frozen=True)
class FaceModels:
    detector: Any  # dlib.fhog_object_detector
    landmarks: Any  # dlib.shape_predictor
    embedder: Any  # dlib.face_recognition_model_v1


# ----------------------------------------------------------------------------- models


def _require(module: str):
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ScoreError(f"scoring needs the optional package {module!r} ({e}); install with: {INSTALL_HINT}") from None


def _weights_folder() -> Path:
    # Not `import face_recognition_models`: it imports pkg_resources, which recent setuptools (84 here) no longer ships.
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ScoreError(f"scoring needs the optional package 'face_recognition_models'; install with: {INSTALL_HINT}")
    folder = Path(spec.submodule_search_locations[0]) / "models"
    missing = [f for f in (LANDMARKS_FILE, EMBEDDER_FILE) if not (folder / f).is_file()]
    if missing:
        raise ScoreError(f"face-recognition-models lacks {', '.join(missing)} in {folder}; reinstall with: {INSTALL_HINT}")
    return folder


@functools.lru_cache(maxsize=1)
def face_models() -> FaceModels:
    """dlib's detector, landmark model and embedder, loaded once per process."""
    dlib = _require("dlib")
    folder = _weights_folder()
    return FaceModels(
        detector=dlib.get_frontal_face_detector(),
        landmarks=dlib.shape_predictor(str(folder / LANDMARKS_FILE)),
        embedder=dlib.face_recognition_model_v1(str(folder / EMBEDDER_FILE)),
    )


@functools.lru_cache(maxsize=1)
def brisque_model():
    """brisque's BRISQUE with its bundled LIVE model (never url=True: no network)."""
    brisque = _require("brisque")

    class Brisque(brisque.BRISQUE):
        # brisque 0.2.0 returns some features as 1-element arrays, and numpy >= 2.4 refuses
        # float() of those (TypeError); make every feature a plain float.
        def calculate_brisque_features(self, *args, **kwargs):
            features = super().calculate_brisque_features(*args, **kwargs)
            return np.array([np.asarray(f, dtype=np.float64).item() for f in features])

    return Brisque(url=False)


def quality_label() -> str:
    return f"BRISQUE (brisque {importlib.metadata.version('brisque')}, LIVE model; lower is better)"


# ----------------------------------------------------------------------------- per image


def face_embedding(models: FaceModels, rgb: np.ndarray, upsample: int) -> np.ndarray | None:
    """The 128-d embedding of the largest face detected, or None when there is none."""
    faces = models.detector(rgb, upsample)
    if not faces:
        return None
    largest = max(faces, key=lambda r: r.area())
    return np.array(models.embedder.compute_face_descriptor(rgb, models.landmarks(rgb, largest)))


def brisque_score(rgb: np.ndarray) -> float | None:
    """BRISQUE of one image; None where it is undefined (no texture: its fits divide by 0)."""
    with np.errstate(all="ignore"):
        score = float(brisque_model().score(rgb))
    return score if np.isfinite(score) else None


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def summary(values: list[float | None]) -> dict:
    """mean, std and n of the defined values (mean and std None when there are none)."""
    defined = np.array([v for v in values if v is not None], dtype=np.float64)
    if not len(defined):
        return {"mean": None, "std": None, "n": 0}
    return {"mean": float(defined.mean()), "std": float(defined.std()), "n": int(len(defined))}


# ----------------------------------------------------------------------------- folders


def images_in(root: Path, role: str) -> list[Path]:
    try:
        files = find_images(root)
    except FileNotFoundError:
        raise ScoreError(f"{role} folder not found: {root}") from None
    if not files:
        raise ScoreError(f"no image files in {role} folder {root}")
    return files


def decode_each(root: Path, files: list[Path], role: str, skipped: list[dict]) -> Iterator[tuple[str, np.ndarray]]:
    """(name relative to root, rgb uint8 HxWx3) of each file by the canonical pixel pipeline, one
    at a time (folders of phone photos need not fit in memory); failures go to `skipped`."""
    for file in files:
        name = str(file.relative_to(root)) if root.is_dir() else file.name
        try:
            rgb = pixels.load_image(file).rgb
        except pixels.ImageError as e:
            skipped.append({"name": name, "folder": role, "error": str(e)})
            continue
        yield name, rgb


def mean_reference_embedding(root: Path, files: list[Path], models: FaceModels, upsample: int, skipped: list[dict]) -> tuple[np.ndarray | None, int, int]:
    """(mean embedding of the references' largest faces or None, faces, decodable images)."""
    embeddings, decoded = [], 0
    for _, rgb in decode_each(root, files, "references", skipped):
        decoded += 1
        embedding = face_embedding(models, rgb, upsample)
        if embedding is not None:
            embeddings.append(embedding)
    if not decoded:
        raise ScoreError(f"no decodable image in references folder {root} ({len(files)} files failed)")
    return (np.mean(embeddings, axis=0) if embeddings else None), len(embeddings), decoded


def overall_ism(per_image: list[dict], mean_reference: np.ndarray | None) -> tuple[float | None, str | None]:
    """(ISM over the samples with a face, None) or (None, why it is undefined)."""
    if not any(p["face"] for p in per_image):
        return None, "undefined: no face found in any sample"
    if mean_reference is None:
        return None, "undefined: no face found in any reference photo"
    return summary([p["ism"] for p in per_image])["mean"], None


def score_folder(samples: Path, references: Path, upsample: int = 1) -> dict:
    """FDFR, ISM and BRISQUE of the images under `samples` against the subject's clean photos
    under `references`, as a JSON-able dict (see the module docstring for what they mean).
    Files that fail to decode are listed in "skipped"; raises ScoreError when a folder is
    missing or has no decodable image, or when the optional packages are not installed."""
    if upsample not in UPSAMPLES:
        raise ScoreError(f"upsample must be one of {', '.join(map(str, UPSAMPLES))} (got {upsample!r})")
    samples, references = Path(samples), Path(references)
    sample_files, reference_files = images_in(samples, "samples"), images_in(references, "references")
    models = face_models()
    sample_skips, reference_skips = [], []
    mean_reference, reference_faces, reference_images = mean_reference_embedding(references, reference_files, models, upsample, reference_skips)

    per_image = []
    for name, rgb in decode_each(samples, sample_files, "samples", sample_skips):
        embedding = face_embedding(models, rgb, upsample)
        ism = cosine(embedding, mean_reference) if embedding is not None and mean_reference is not None else None
        per_image.append({"name": name, "face": embedding is not None, "ism": ism, "brisque": brisque_score(rgb)})
    if not per_image:
        raise ScoreError(f"no decodable image in samples folder {samples} ({len(sample_files)} files failed)")

    n, faces_found = len(per_image), sum(p["face"] for p in per_image)
    ism, ism_note = overall_ism(per_image, mean_reference)
    return {
        "samples": str(samples),
        "references": str(references),
        "images": n,
        "faces_found": faces_found,
        "fdfr": (n - faces_found) / n,
        "ism": ism,
        "ism_note": ism_note,
        "reference_faces": reference_faces,
        "reference_images": reference_images,
        "brisque": summary([p["brisque"] for p in per_image]),
        "per_image": per_image,
        "skipped": sample_skips + reference_skips,
        "detector": f"dlib frontal face detector (HOG), upsample {upsample}",
        "embedder": EMBEDDER,
        "quality": quality_label(),
    }


# ----------------------------------------------------------------------------- plot


def plot_scores(results: dict[str, dict], path: Path) -> Path:
    """One PNG with three bar panels, a bar per method (results: method name -> score_folder
    dict): FDFR, ISM ("n/a" where undefined, never a zero bar) and BRISQUE mean +- std."""
    if not results:
        raise ScoreError("plot_scores: no results to plot")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    methods, rows = list(results), list(results.values())
    panels = [
        ("FDFR: share without a face", [r["fdfr"] for r in rows], None),
        ("ISM: identity match to references", [r["ism"] for r in rows], None),
        ("BRISQUE mean ± std (lower = better)", [r["brisque"]["mean"] for r in rows], [r["brisque"]["std"] for r in rows]),
    ]
    # No pyplot: a Figure on its own Agg canvas leaves the process's backend and pyplot state alone.
    fig = Figure(figsize=(3 * max(3.0, 1.5 + 0.7 * len(methods)), 4), layout="constrained")
    FigureCanvasAgg(fig)
    for ax, (title, values, errors) in zip(fig.subplots(1, 3), panels):
        draw_bars(ax, methods, values, errors)
        ax.set_title(title, fontsize=10)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    path = Path(path)
    pixels.write_atomic(path, buf.getvalue())
    return path


def draw_bars(ax, methods: list[str], values: list[float | None], errors: list[float | None] | None) -> None:
    """A labelled bar for each defined value, an "n/a" label in the slot of each undefined one."""
    for i, value in enumerate(values):
        if value is None:
            ax.annotate("n/a", (i, 0), ha="center", va="bottom", xytext=(0, 3), textcoords="offset points")
            continue
        error = errors[i] if errors else None
        ax.bar(i, value, yerr=error, capsize=4 if error is not None else 0, color="C0")
        ax.annotate(f"{value:.3g}", (i, value + (error or 0)), ha="center", va="bottom", xytext=(0, 3), textcoords="offset points", fontsize=8)
    ax.set_xticks(range(len(methods)), methods, rotation=30, ha="right")
    ax.set_xlim(-0.6, len(methods) - 0.4)
    ax.margins(y=0.15)
