"""The flat-region figure of issue 31 (ridtrain/attacker/visibility.py) on a fixture photograph whose
answer is known: a flat sky gradient on the left half, grain on the right, and deltas whose
blurred RMS follows analytically. A smooth plane wave keeps almost all of its RMS through the
Gaussian; white noise of the same RMS keeps about 1 / (2 sigma sqrt(pi)) of it. So the test fails if
the blur, the mask, the luma or the RMS stops being what the docstring says."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ridtrain.attacker.evaluate import delta_stats
from ridtrain.attacker.visibility import FLAT_STD, SIGMA, WINDOW, flat_mask, visibility

H, W = 128, 256
AMPLITUDE, PERIOD = 2.0, 30.0  # levels, px: the stripes issue 31 saw (about 30 px apart)


def fixture_photo() -> np.ndarray:
    """(H,W,3) float levels: a sky (luma std in 15 px about 0.2 levels) | grain (std 25)."""
    y, x = np.mgrid[0:H, 0:W].astype(np.float64)
    sky = np.stack([90 + 0.03 * x + 0.04 * y, 140 + 0.03 * x + 0.04 * y, 210 + 0.02 * x], -1)
    grain = np.clip(128 + 25 * np.random.default_rng(0).standard_normal((H, W, 3)), 0, 255)
    return np.where((x < W // 2)[..., None], sky, grain)


def on_sky(v: np.ndarray) -> np.ndarray:
    """(H,W) -> (H,W,3) grey delta (the same in R, G, B, so its luma is v) on the sky half only."""
    v = np.where(np.arange(W)[None, :] < W // 2, v, 0.0)
    return np.repeat(v[..., None], 3, axis=2)


def plane_wave() -> np.ndarray:
    y, x = np.mgrid[0:H, 0:W].astype(np.float64)
    return AMPLITUDE * np.sin(2 * np.pi * (x + y) / math.sqrt(2) / PERIOD)


def test_the_flat_mask_is_the_sky_less_half_a_window():
    assert (WINDOW, FLAT_STD, SIGMA) == (15, 2.0, 2.0)  # issue 31's definition
    flat = flat_mask(fixture_photo())
    assert flat[:, : W // 2 - WINDOW // 2].all() and not flat[:, W // 2 + 1:].any()
    v = visibility(fixture_photo(), fixture_photo())
    assert v.flat_fraction == pytest.approx((W // 2 - WINDOW // 2) / W, abs=2 / W)
    assert v.flat_smooth_rms == 0 and v.textured_smooth_rms == 0


def test_a_smooth_plane_wave_keeps_its_analytic_blurred_rms():
    x = fixture_photo()
    v = visibility(x, x + on_sky(plane_wave()))
    k = 2 * np.pi / PERIOD
    expected = AMPLITUDE / math.sqrt(2) * math.exp(-(SIGMA * k) ** 2 / 2)  # a Gaussian's transfer at k
    assert v.flat_raw_rms == pytest.approx(AMPLITUDE / math.sqrt(2), rel=0.02)
    assert v.flat_smooth_rms == pytest.approx(expected, rel=0.03)
    assert v.flat_smooth_rms_rgb == pytest.approx(v.flat_smooth_rms, rel=1e-9)  # grey: luma = every channel
    # the textured pixels hold the wave only in the sky's last half-window before the grain
    strip = W // 2 - round(v.flat_fraction * W)
    assert strip == WINDOW // 2
    assert v.textured_raw_rms == pytest.approx(AMPLITUDE / math.sqrt(2) * math.sqrt(strip / (W - W // 2 + strip)), rel=0.05)


def test_pixel_scale_noise_of_the_same_rms_scores_far_lower():
    x = fixture_photo()
    wave = visibility(x, x + on_sky(plane_wave()))
    noise = AMPLITUDE / math.sqrt(2) * np.random.default_rng(1).standard_normal((H, W))
    grain = visibility(x, x + on_sky(noise))
    assert grain.flat_raw_rms == pytest.approx(wave.flat_raw_rms, rel=0.03)
    # white noise through a 2-D Gaussian keeps sqrt(sum of the kernel's squares) = 1 / (2 sigma sqrt(pi))
    assert grain.flat_smooth_rms == pytest.approx(grain.flat_raw_rms / (2 * SIGMA * math.sqrt(math.pi)), rel=0.1)
    assert grain.flat_smooth_rms < 0.2 * wave.flat_smooth_rms


def test_texture_masks_nothing_on_the_sky_and_colour_only_deltas_are_not_luma():
    x = fixture_photo()
    wave = on_sky(plane_wave())
    alone = visibility(x, x + wave)
    busy = np.where(np.arange(W)[None, :, None] >= W // 2, 6 * np.random.default_rng(2).standard_normal((H, W, 3)), 0)
    both = visibility(x, x + wave + busy)
    assert both.flat_smooth_rms == pytest.approx(alone.flat_smooth_rms, rel=0.01)  # the window keeps the spill out
    assert both.textured_raw_rms > 3
    loud = visibility(x, x + 3 * wave)  # local std of the protected sky > 2: the mask is the ORIGINAL's
    assert loud.flat_fraction == alone.flat_fraction and loud.flat_smooth_rms == pytest.approx(3 * alone.flat_smooth_rms)
    # R and B against G with zero luma: invisible to the luma figure, not to the per-channel one
    chroma = wave * np.array([1.0, -(0.299 + 0.114) / 0.587, 1.0])
    c = visibility(x, x + chroma)
    assert c.flat_smooth_rms < 1e-9 and c.flat_smooth_rms_rgb > 0.5 * alone.flat_smooth_rms


def test_uint8_photos_and_psnr():
    x = np.clip(np.round(fixture_photo()), 0, 255).astype(np.uint8)
    p = np.clip(x.astype(np.int16) + np.round(on_sky(plane_wave())).astype(np.int16), 0, 255).astype(np.uint8)
    assert visibility(x, p) == visibility(x.astype(np.float64), p.astype(np.float64))
    mse = np.mean((p.astype(float) - x) ** 2)  # the report's PSNR is evaluate.delta_stats's
    assert delta_stats(x, p)["psnr"] == pytest.approx(10 * math.log10(255 ** 2 / mse))
    assert delta_stats(x, x)["psnr"] == math.inf
    with pytest.raises(ValueError, match="differ in size"):
        visibility(x, p[:-1])
