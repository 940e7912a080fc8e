"""`rid score`'s scorer: FDFR, ISM and BRISQUE on real faces (scikit-image's astronaut,
matplotlib's Grace Hopper), on images without a face, on bad inputs, and its plot."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import matplotlib
import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata

from ridtrain import pixels
from ridtrain.attacker.score import FaceModels, ScoreError, face_embedding, plot_scores, score_folder

GRACE_HOPPER = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"


def astronaut(side: int = 512) -> np.ndarray:
    rgb = skdata.astronaut()
    return rgb if side == 512 else np.asarray(Image.fromarray(rgb).resize((side, side), Image.LANCZOS))


def folder(root: Path, images: dict[str, np.ndarray]) -> Path:
    root.mkdir(parents=True)
    for name, rgb in images.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        pixels.save_image(root / name, rgb)
    return root


@pytest.fixture(scope="module")
def astronauts(tmp_path_factory) -> Path:
    return folder(tmp_path_factory.mktemp("score") / "astronauts", {"a.png": astronaut(), "sub/a-256.png": astronaut(256)})


@pytest.fixture(scope="module")
def hopper(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("score") / "hopper"
    root.mkdir()
    (root / "grace_hopper.jpg").write_bytes(GRACE_HOPPER.read_bytes())
    return root


@pytest.fixture(scope="module")
def faceless(tmp_path_factory) -> Path:
    noise = np.random.default_rng(0).integers(0, 256, (128, 128, 3), dtype=np.uint8)
    grey = np.full((128, 128, 3), 128, dtype=np.uint8)
    return folder(tmp_path_factory.mktemp("score") / "faceless", {"grey.png": grey, "noise.png": noise})


@pytest.fixture(scope="module")
def self_scores(astronauts) -> dict:
    return score_folder(astronauts, astronauts)


def test_subject_against_itself(self_scores, astronauts):
    r = self_scores
    assert (r["images"], r["faces_found"], r["fdfr"]) == (2, 2, 0.0)
    assert (r["reference_images"], r["reference_faces"]) == (2, 2)
    assert r["ism"] > 0.9 and r["ism_note"] is None
    assert [p["name"] for p in r["per_image"]] == ["a.png", str(Path("sub/a-256.png"))]
    assert all(p["face"] and p["ism"] > 0.9 for p in r["per_image"])
    assert r["skipped"] == [] and r["samples"] == str(astronauts)
    assert r["detector"] == "dlib frontal face detector (HOG), upsample 1"
    json.dumps(r, allow_nan=False)


def test_identity_is_discriminated(self_scores, astronauts, hopper):
    other = score_folder(astronauts, hopper)
    assert other["faces_found"] == 2 and other["reference_faces"] == 1
    # dlib's cosines are high even between different people (here about 0.88 against 0.99)
    assert other["ism"] < self_scores["ism"] - 0.05


def test_no_face_means_undefined_ism_not_zero(faceless, astronauts, self_scores):
    r = score_folder(faceless, astronauts)
    assert (r["images"], r["faces_found"], r["fdfr"]) == (2, 0, 1.0)
    assert r["ism"] is None and r["ism_note"].startswith("undefined")
    assert all(p["ism"] is None and not p["face"] for p in r["per_image"])
    assert r.keys() == self_scores.keys()
    assert all(p.keys() == self_scores["per_image"][0].keys() for p in r["per_image"])
    # a flat grey has no texture: BRISQUE is undefined there, and the JSON stays valid
    by_name = {p["name"]: p for p in r["per_image"]}
    assert by_name["grey.png"]["brisque"] is None and by_name["noise.png"]["brisque"] > 80
    assert r["brisque"]["n"] == 1
    json.dumps(r, allow_nan=False)


def test_references_without_a_face(astronauts, faceless):
    r = score_folder(astronauts, faceless)
    assert r["faces_found"] == 2 and r["reference_faces"] == 0
    assert r["ism"] is None and "reference" in r["ism_note"]


def test_brisque_ranks_noisy_below_clean(tmp_path, astronauts):
    clean = astronaut()
    noisy = np.clip(clean + np.random.default_rng(0).normal(0, 25, clean.shape), 0, 255).astype(np.uint8)
    r = score_folder(folder(tmp_path / "s", {"clean.png": clean, "noisy.png": noisy}), astronauts)
    scores = {p["name"]: p["brisque"] for p in r["per_image"]}
    assert scores["clean.png"] < 20 < scores["noisy.png"] - 20
    assert r["brisque"]["n"] == 2 and r["brisque"]["mean"] == pytest.approx(np.mean(list(scores.values())))


def test_largest_face_counts():
    import dlib

    class WidthEmbedder:  # an "embedding" that says which face it was given
        def compute_face_descriptor(self, rgb, shape):
            return [shape.width()] * 128

    models = FaceModels(
        detector=lambda rgb, upsample: [dlib.rectangle(0, 0, 9, 9), dlib.rectangle(5, 5, 54, 54), dlib.rectangle(0, 0, 19, 19)],
        landmarks=lambda rgb, rect: rect,
        embedder=WidthEmbedder(),
    )
    assert face_embedding(models, astronaut(64), upsample=1)[0] == 50
    assert face_embedding(FaceModels(lambda rgb, up: [], None, None), astronaut(64), upsample=1) is None


def test_missing_folders(tmp_path, astronauts):
    with pytest.raises(ScoreError, match="samples folder not found.*nowhere"):
        score_folder(tmp_path / "nowhere", astronauts)
    with pytest.raises(ScoreError, match="references folder not found.*nowhere"):
        score_folder(astronauts, tmp_path / "nowhere")


def test_empty_samples_folder(tmp_path, astronauts):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ScoreError, match="no image files"):
        score_folder(tmp_path / "empty", astronauts)


def test_bad_files_are_skipped(tmp_path, astronauts):
    good = pixels.encode_image(astronaut(256))
    root = tmp_path / "mixed"
    root.mkdir()
    (root / "good.png").write_bytes(good)
    (root / "text.png").write_bytes(b"not an image")
    (root / "truncated.png").write_bytes(good[: len(good) // 2])
    r = score_folder(root, astronauts)
    assert [p["name"] for p in r["per_image"]] == ["good.png"] and r["faces_found"] == 1
    assert [(s["name"], s["folder"]) for s in r["skipped"]] == [("text.png", "samples"), ("truncated.png", "samples")]
    assert all(s["error"] for s in r["skipped"])


def test_only_bad_files(tmp_path, astronauts):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x.jpg").write_bytes(b"\xff\xd8 junk")
    with pytest.raises(ScoreError, match="no decodable image in samples"):
        score_folder(bad, astronauts)
    with pytest.raises(ScoreError, match="no decodable image in references"):
        score_folder(astronauts, bad)


def test_bad_upsample(astronauts):
    with pytest.raises(ScoreError, match="upsample must be one of 0, 1, 2, 3"):
        score_folder(astronauts, astronauts, upsample=-1)


def test_missing_packages_name_the_install(astronauts):
    code = (
        "import sys; sys.modules['dlib'] = None\n"  # as if dlib were not installed
        "import ridtrain.attacker.score as s\n"
        f"try: s.score_folder({str(astronauts)!r}, {str(astronauts)!r})\n"
        "except s.ScoreError as e: print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "'dlib'" in out and "pip install dlib-bin face-recognition-models" in out


def test_plot_defined_and_undefined_ism(tmp_path, self_scores, faceless, astronauts):
    results = {"clean": self_scores, "protected": score_folder(faceless, astronauts)}
    path = plot_scores(results, tmp_path / "scores.png")
    assert path == tmp_path / "scores.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["scores.png"]  # no temp file left
    with pytest.raises(ScoreError):
        plot_scores({}, tmp_path / "none.png")


def test_cli_prints_json_and_plots(tmp_path, astronauts, hopper):
    from typer.testing import CliRunner

    from rid.cli import app

    runner = CliRunner()
    out, plot = tmp_path / "score.json", tmp_path / "score.png"
    result = runner.invoke(app, ["score", str(astronauts), "-r", str(hopper), "--json-out", str(out), "--plot", str(plot)])
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["faces_found"] == 2
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    missing = runner.invoke(app, ["score", str(tmp_path / "nowhere"), "-r", str(hopper)])
    assert missing.exit_code == 2 and "samples folder not found" in missing.output
