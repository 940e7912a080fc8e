"""bench/personalization_report.py end to end on a tiny model: every method and fine-tuning, scored."""

import json
import subprocess
import sys
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def test_the_report_runs_every_method_and_fine_tuning(ldm_paths, tmp_path):
    out, work = tmp_path / "out", tmp_path / "work"
    args = [sys.executable, str(ROOT / "bench" / "personalization_report.py"), "--base", str(ldm_paths[0]),
            "-t", str(ldm_paths[1]), "--methods", "clean,RID,AdvDM,Gaussian", "--advdm-steps", "2", "--side", "32",
            "--shots", "3", "--resolution", "32", "--steps", "2", "--samples", "2", "--sample-steps", "2",
            "--out", str(out), "--work", str(work)]
    run = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]

    report = json.loads((out / "report.json").read_text())
    assert [(r["method"], r["finetune"]) for r in report["rows"]] == [
        (m, f) for m in ("clean", "RID", "AdvDM", "Gaussian") for f in ("dreambooth", "lora")]
    for row in report["rows"]:
        assert row["denoise_mse"] > 0 and (row["brisque"] is None or row["brisque"] > 0)
        # a tiny random model draws no face: ISM is undefined, never 0
        assert row["fdfr"] == 1 and row["ism"] is None and "undefined" in row["ism_note"]
    assert len((out / "report.md").read_text().strip().splitlines()) == 2 + len(report["rows"])
    assert Image.open(out / "samples.png").size == (2 * 32, 32 * (1 + len(report["rows"])))
    assert (out / "scores.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the protected sets differ from the clean photos, within the bound
    import numpy as np

    for method in ("RID", "Gaussian", "AdvDM"):
        folder = work / "protected" / method
        folder = folder / "images" if (folder / "images").is_dir() else folder
        for clean in sorted((work / "subject").glob("*.png")):
            a = np.asarray(Image.open(clean), dtype=int)
            b = np.asarray(Image.open(folder / clean.name), dtype=int)
            assert 0 < np.abs(a - b).max() <= 8, (method, clean.name)

    # a rerun reuses everything under --work
    again = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads((out / "report.json").read_text())["rows"][0]["denoise_mse"] == report["rows"][0]["denoise_mse"]

    # but not a --work made with other settings: its results would be reported as this run's
    other = subprocess.run(args + ["--eps", "4"], capture_output=True, text=True, timeout=600)
    assert other.returncode != 0 and "eps differ" in other.stderr
