"""bench/efficacy_report.py --latent: the TAEF2 table (the shift, the decoded damage, the purifications, the
downloadable purifiers among them), run as a script on a small randomised generator, one held-out photo
and a small latent side, so that it is quick."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from PIL import Image

from ridpixels import OUTPUT_FORMATS

ROOT = Path(__file__).resolve().parents[1]


def run_report(model, photos, work, out, cache, *extra):
    cmd = [sys.executable, str(ROOT / "bench" / "efficacy_report.py"), "--model", str(model), "--latent", "taef2",
           "--images", str(photos), "--out", str(out), "--work", str(work), "--pgd-cache", str(cache),
           "--pgd-steps", "2,4", "--latent-side", "64", "--mean-delta-images", str(photos.parent / "train"), *extra]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_the_latent_table_compares_rid_with_encoder_pgd_and_noise(perturbed_generator, corpus, tmp_path):
    model = perturbed_generator(0.05, unshuffle=8, channels=(16,), blocks=(1,), up_blocks=(), code_dim=16, wave_field=5)
    photos = tmp_path / "corpus" / "heldout"
    photos.mkdir(parents=True)
    # at half size (256x300): the downloadable purifiers run at the photo's full size, seven times a photo here
    with Image.open(corpus / "heldout" / "grace_hopper.jpg") as im:
        im.reduce(2).save(photos / "grace_hopper.jpg", quality=95)
    shutil.copytree(corpus / "train", tmp_path / "corpus" / "train")
    out, cache = tmp_path / "out", tmp_path / "cache"
    printed = run_report(model, photos, tmp_path / "work", out, cache)

    latent = json.loads((out / "latent.json").read_text())
    rows = latent["rows"]["taef2"]
    assert latent["reference"] == "encoder-PGD-2" and latent["side"] == 64 and latent["images"] == ["grace_hopper.jpg"]
    assert set(rows) == {"RID", "encoder-PGD-2", "encoder-PGD-4", "Gaussian (RID's L2)"}
    assert rows["encoder-PGD-4"]["shift"] > rows["encoder-PGD-2"]["shift"] > rows["Gaussian (RID's L2)"]["shift"] > 0
    # RID gets every purification, the app's JPEG download first; encoder PGD has no mean delta; a model
    # without tiles has no tile fit
    download = f"jpeg{OUTPUT_FORMATS['jpeg']['quality']}"
    downloadable = {"ffdnet", "noise+ffdnet", "noisy-upscale"}  # models an attacker can download
    assert set(rows["RID"]["purified"]) == {download, "jpeg75", "resize0.5", "subtract-public-model", "subtract-mean-delta",
                                            "subtract-periodic-mean", *downloadable}
    assert downloadable <= set(rows["encoder-PGD-2"]["purified"]) and all(rows["RID"]["purified"][p] > 0 for p in downloadable)
    assert download in rows["encoder-PGD-2"]["purified"] and "JPEG download" in latent["notes"][download]
    assert f"{download} (JPEG download)" in printed
    assert "subtract-mean-delta" not in rows["encoder-PGD-2"]["purified"]
    assert "no tiles" in latent["notes"]["subtract-tile-fit"]
    # the decoded damage, D(E(x')) against D(E(x)) through TAEF2's decoder, for every row: encoder PGD's
    # larger delta does more of it than the Gaussian noise of RID's small L2
    for method, row in rows.items():
        assert row["decoded_psnr"] > 10 and 0 < row["decoded_ssim"] <= 1, (method, row)
    assert rows["encoder-PGD-4"]["decoded_psnr"] < rows["Gaussian (RID's L2)"]["decoded_psnr"]
    assert "dec PSNR" in printed and "decoded" in latent["notes"]
    assert (out / "taef2-decoded.png").stat().st_size > 10_000
    assert "RID is" in printed and "faster than encoder-PGD-2" in printed

    # encoder PGD is kept in the cache with its seconds, and a second run reuses it
    stamp = json.loads((cache / "PGD-2" / "cache.json").read_text())
    assert stamp["settings"]["steps"] == 2 and list(stamp["seconds"]) == ["grace_hopper.jpg"]
    for folder in (tmp_path / "work").glob("encoder-PGD-2-*"):
        shutil.rmtree(folder)
    run_report(model, photos, tmp_path / "work", out, cache)
    assert not list((tmp_path / "work").glob("encoder-PGD-2-*"))
    assert json.loads((out / "latent.json").read_text())["rows"]["taef2"]["encoder-PGD-2"]["seconds"] == rows["encoder-PGD-2"]["seconds"]
    # ... and other settings run encoder PGD again rather than take the cached photos
    run_report(model, photos, tmp_path / "work", out, cache, "--latent-side", "72")
    assert json.loads((cache / "PGD-2" / "cache.json").read_text())["settings"]["side"] == 72
    assert json.loads((out / "latent.json").read_text())["side"] == 72
