"""TAEF2, FLUX.2's latent space: the vendored weights load only with their hashes, the layout
reproduces a stored latent, and encoder PGD moves a latent further than noise of the same size."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from typer.testing import CliRunner

from rid.cli import app
from ridtrain import pixels
from ridtrain.attacker.attacks import encoder_pgd
from ridtrain.diffusion.taef2 import FOLDER, SHA256, load_taef2, relative_shift, sha256_file

# E(x) of the corpus's grace_hopper.jpg at working side 64 (72x64), computed once with these weights.
STORED = Path(__file__).parent / "data" / "taef2-grace_hopper-64.npy"


@pytest.fixture(scope="module")
def encoder():
    return load_taef2("encoder")


@pytest.fixture(scope="module")
def hopper(corpus):
    return pixels.working_image(pixels.to_float(pixels.load_image(corpus / "heldout" / "grace_hopper.jpg").rgb), 64, 8)


def test_the_vendored_weights_are_taef2s():
    for part, digest in SHA256.items():
        assert sha256_file(FOLDER / f"taef2_{part}.pth") == digest
    assert (FOLDER / "LICENSE").read_text().startswith("MIT License")


def test_the_encoder_reproduces_a_stored_latent(encoder, hopper):
    with torch.no_grad():
        z = encoder(hopper)[0].numpy()
    stored = np.load(STORED)
    assert z.shape == stored.shape == (32, 9, 8)
    assert np.abs(z - stored).max() < 1e-3 * np.abs(stored).max()  # float rounding only: a wrong layout is far off


def test_encode_then_decode_gives_the_photo_back(encoder, hopper):
    decoder = load_taef2("decoder")
    with torch.no_grad():
        back = decoder(encoder(hopper)).clamp(0, 1)
    psnr = 10 * torch.log10(1 / (back - hopper).pow(2).mean())
    assert psnr > 20, psnr  # 24.8 dB at this size, 30.6 at 256²; misplaced weights give under 10


def test_weights_with_another_hash_are_refused(tmp_path):
    shutil.copyfile(FOLDER / "taef2_encoder.pth", tmp_path / "taef2_encoder.pth")
    data = bytearray((tmp_path / "taef2_encoder.pth").read_bytes())
    data[-100] ^= 1
    (tmp_path / "taef2_encoder.pth").write_bytes(bytes(data))
    with pytest.raises(ValueError, match="refusing"):
        load_taef2("encoder", tmp_path)
    with pytest.raises(FileNotFoundError):
        load_taef2("decoder", tmp_path)


def test_encoder_pgd_moves_the_latent_further_than_noise(encoder, hopper):
    eps = 8 / 255
    delta = encoder_pgd([encoder], hopper, eps, steps=10, generator=torch.Generator().manual_seed(0))
    assert delta.abs().max() <= eps + 1e-6 and ((hopper + delta) >= 0).all() and ((hopper + delta) <= 1).all()
    noise = torch.randn(hopper.shape, generator=torch.Generator().manual_seed(0))
    noise = noise * delta.norm() / noise.norm()  # the same L2 as PGD's delta
    pgd_shift = relative_shift(encoder, hopper, hopper + delta).item()
    noise_shift = relative_shift(encoder, hopper, (hopper + noise).clamp(0, 1)).item()
    assert pgd_shift > 2 * noise_shift, (pgd_shift, noise_shift)


def test_rid_attack_encoder_writes_protected_photos_and_deltas(corpus, tmp_path):
    photo = corpus / "heldout" / "grace_hopper.jpg"
    result = CliRunner().invoke(app, ["attack", str(photo), "-o", str(tmp_path), "-t", "taef2", "--method", "encoder",
                                      "--side", "64", "--steps", "5"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout.strip().splitlines()[-1])["done"] == 1
    (delta_file,) = (tmp_path / "deltas").rglob("*.safetensors")
    with safe_open(delta_file, "pt") as f:
        assert f.metadata()["method"] == "encoder" and f.get_tensor("delta").shape == (3, 72, 64)
    protected = pixels.load_image(next((tmp_path / "images").rglob("*.png"))).rgb
    clean = pixels.load_image(photo).rgb
    assert protected.shape == clean.shape and np.abs(protected.astype(int) - clean).max() <= 8
    bad = CliRunner().invoke(app, ["attack", str(photo), "-o", str(tmp_path / "x"), "-t", str(tmp_path), "--method", "encoder"])
    assert bad.exit_code == 2 and "no TAEF2 encoder" in bad.output


def test_rid_eval_measures_encoder_pgd_in_the_latent_space(corpus, tmp_path):
    """rid eval --latent on encoder-PGD's photos, as a user gets them (8 bits, full size): the latent
    moves further than under Gaussian noise of the same L2, and every purification is reported."""
    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copyfile(corpus / "heldout" / "grace_hopper.jpg", photos / "grace_hopper.jpg")
    attacked = CliRunner().invoke(app, ["attack", str(photos), "-o", str(tmp_path / "pgd"), "-t", "taef2", "--method", "encoder",
                                        "--side", "64", "--steps", "10"])
    assert attacked.exit_code == 0, attacked.output
    result = CliRunner().invoke(app, ["eval", str(photos), "--protected", str(tmp_path / "pgd" / "images"), "--latent", "taef2",
                                      "--latent-side", "64", "--purify", "jpeg75", "--purify", "resize0.5"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout[result.stdout.index("{"):])
    latent = report["latent"]
    shift = latent["shift"]["taef2"]
    assert latent["side"] == 64 and report["targets"] == {}
    assert shift["protected"] > 2 * shift["gaussian"] > 0, shift
    assert set(latent["purified"]) == {"jpeg75", "resize0.5"} and all(v["taef2"] > 0 for v in latent["purified"].values())
    assert latent["kept_pct"]["jpeg75"]["taef2"] == pytest.approx(100 * latent["purified"]["jpeg75"]["taef2"] / shift["protected"])
    assert "relative latent shift" in result.stderr
    neither = CliRunner().invoke(app, ["eval", str(photos), "--protected", str(tmp_path / "pgd" / "images")])
    assert neither.exit_code == 2 and "-t" in neither.output


def test_the_targeted_loss_pulls_toward_a_fixed_texture(encoder, hopper):
    from ridtrain.diffusion.taef2 import latent_loss, target_texture

    small, large = target_texture((1, 3, 72, 64), 0), target_texture((2, 3, 136, 200), 0)
    assert torch.equal(small, large[:1, :, :72, :64]) and torch.equal(large[0], large[1])  # one texture at every size
    assert not torch.equal(small, target_texture((1, 3, 72, 64), 1))
    with torch.no_grad():
        clean, target = encoder(hopper), encoder(small)
        assert latent_loss(encoder, small, clean, target).item() == pytest.approx(0, abs=1e-6)
        halfway = latent_loss(encoder, (hopper + small) / 2, clean, target).item()
        assert 0 < halfway < latent_loss(encoder, hopper, clean, target).item()


def test_the_bundled_model_moves_taef2_latents_twice_as_far_as_noise(corpus, encoder):
    """The bundled model, through `rid protect`'s path (full size, 8 bits) with fixed seeds, on the
    held-out photos at the attacker's scale (512): TAEF2's latent moves at least twice as far as
    under Gaussian noise of the same L2, photo by photo on average (2.16x when it was bundled:
    `pytest tests/test_taef2.py -k twice -s` prints the figures)."""
    from ridtrain.attacker.evaluate import LATENT_SIDE, LatentShifts
    from ridtrain.defender.generators import load_generator
    from ridtrain.defender.protect import protect_array

    gen = load_generator("default")
    photos = sorted((corpus / "heldout").iterdir())
    shifts = LatentShifts({"taef2": encoder}, (), LATENT_SIDE, len(photos))
    for i, photo in enumerate(photos):
        clean = pixels.load_image(photo).rgb
        shifts.add(clean, protect_array(gen, clean, seed=bytes([i]) * 16), 8, torch.Generator().manual_seed(i))
    shift = shifts.report()["shift"]["taef2"]
    print(f"TAEF2 shift {shift['protected']:.3f}, Gaussian of the same L2 {shift['gaussian']:.3f}: "
          f"{shift['protected'] / shift['gaussian']:.2f}x")
    assert shift["protected"] >= 2 * shift["gaussian"] > 0, shift
