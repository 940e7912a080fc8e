"""bench/frontier.py (issue 31, item 4): the model at several eps and encoder PGD at several eps, shift
against PSNR and SSIM, run through its command line (in this process, to spare two interpreter starts)
on a small randomised generator, one small held-out photo, two eps each and a small latent side, so that
it is quick; encoder PGD's cache is read back."""

from __future__ import annotations

import importlib
import json
import shutil
from pathlib import Path

import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def run_frontier(monkeypatch, capsys, model, photos, work, out, cache):
    monkeypatch.syspath_prepend(str(ROOT / "bench"))  # as when run as a script
    frontier = importlib.import_module("frontier")
    threads = torch.get_num_threads()
    try:  # at a side of 64 one thread is the faster, and far faster while another job shares the 2 cores
        frontier.main(["--model", str(model), "--images", str(photos), "--out", str(out), "--work", str(work), "--pgd-cache", str(cache),
                       "--eps", "4,8", "--pgd-eps", "4,8", "--pgd-steps", "2", "--latent-side", "64", "--seeds", "2", "--threads", "1"])
    finally:
        torch.set_num_threads(threads)
    return capsys.readouterr().out


def test_the_frontier_measures_the_model_and_encoder_pgd_at_each_eps(perturbed_generator, corpus, tmp_path, monkeypatch, capsys):
    model = perturbed_generator(0.05, unshuffle=8, channels=(16,), blocks=(1,), up_blocks=(), code_dim=16, wave_field=5)
    photos = tmp_path / "heldout"
    photos.mkdir()
    with Image.open(corpus / "heldout" / "grace_hopper.jpg") as im:
        im.reduce(4).save(photos / "grace_hopper.jpg", quality=95)
    out, cache, work = tmp_path / "out", tmp_path / "cache", tmp_path / "work"
    printed = run_frontier(monkeypatch, capsys, model, photos, work, out, cache)

    summary = json.loads((out / "frontier.json").read_text())
    rows = {(r["method"], r["eps"]): r for r in summary["rows"]}
    assert list(rows) == [("model", 4), ("model", 8), ("encoder PGD-2", 4), ("encoder PGD-2", 8)]
    assert summary["images"] == ["grace_hopper.jpg"] and summary["side"] == 64 and len(summary["seeds"]) == 2 and summary["model_name"]
    for method in ("model", "encoder PGD-2"):  # a larger budget moves the latent further and costs quality
        small, large = rows[(method, 4)], rows[(method, 8)]
        assert large["shift"] > small["shift"] > 0 and small["psnr"] > large["psnr"] > 20 and 0 < large["ssim"] < small["ssim"] <= 1
    # the model's row is the mean over its fixed seeds, and the seeds differ
    seeds = rows[("model", 8)]["per_seed"]
    assert len(seeds) == 2 and seeds[0]["shift"] != seeds[1]["shift"]
    assert abs(rows[("model", 8)]["shift"] - (seeds[0]["shift"] + seeds[1]["shift"]) / 2) < 1e-9
    assert "encoder PGD-2" in printed and "PSNR" in printed
    assert (out / "frontier.png").stat().st_size > 10_000

    # encoder PGD is cached per eps in latent_report's layout: eps 8 (the report's) at the root, eps 4 beside it
    for eps, folder in ((8, cache / "PGD-2"), (4, cache / "eps4" / "PGD-2")):
        stamp = json.loads((folder / "cache.json").read_text())
        assert stamp["settings"]["eps"] == eps and stamp["settings"]["steps"] == 2 and stamp["settings"]["side"] == 64
        assert (folder / "images" / "grace_hopper.png").is_file()
    # ... and a second run reads it back rather than attack again, and gives the same figures
    for folder in work.glob("encoder-PGD-2-*"):
        shutil.rmtree(folder)
    run_frontier(monkeypatch, capsys, model, photos, work, out, cache)
    assert not list(work.glob("encoder-PGD-2-*"))
    assert json.loads((out / "frontier.json").read_text())["rows"] == summary["rows"]
