"""Purifications (ridtrain/attacker/purify.py) and `rid eval --purify`."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from ridtrain import pixels
from ridtrain.attacker.purify import (PURIFICATIONS, PurifyContext, mean_working_delta, public_tiles, purify, subtract_mean_delta,
                                      subtract_periodic_mean, subtract_public_model, subtract_tile_fit)

SIDE = 32  # working side of these tests: photos are 1x to 4x it
EPS = 8 / 255


def photo(rng, h, w):
    """A smooth mid-grey texture (bicubic from a coarse grid), so that adding a few levels never clips."""
    coarse = rng.uniform(50, 205, (max(2, h // 8), max(2, w // 8), 3)).astype(np.uint8)
    return np.asarray(Image.fromarray(coarse).resize((w, h), Image.BICUBIC))


def period16_tile(levels=6.0):
    """An image-independent (3,16,16) delta, smooth, as a universal tile may be. Smooth because
    bringing a full-size delta back to the working size is a blur: a tile with detail at the
    pixel scale cannot be recovered exactly by the resize-based estimator, and this test is about
    alignment and averaging, not about that loss."""
    yy, xx = np.meshgrid(np.arange(16), np.arange(16), indexing="ij")
    return np.stack([np.sin(2 * np.pi * (yy + 4 * c) / 16) * np.cos(2 * np.pi * (xx - 3 * c) / 16) for c in range(3)]).astype(np.float32) * levels / 255


def with_tile(rgb, tile, side=SIDE, cell_signs=None):
    """rgb protected by a period-16 tile aligned to the top-left of its working size, through the
    real pipeline (delta_to_full, clamp, 8-bit rounding); `cell_signs(i, j)` scales cell (i, j)."""
    size = pixels.working_size(*rgb.shape[:2], side=side, multiple=16)
    reps = (1, -(-size[0] // 16), -(-size[1] // 16))
    tiled = np.tile(tile, reps)[:, :size[0], :size[1]]
    if cell_signs is not None:
        rows, cols = np.arange(size[0]) // 16, np.arange(size[1]) // 16
        tiled = tiled * cell_signs(rows[:, None], cols[None, :])
    delta = torch.from_numpy(np.ascontiguousarray(tiled, dtype=np.float32))[None]
    return pixels.apply_delta(pixels.to_float(rgb), delta, EPS)


def levels_off(a, b):
    return np.abs(a.astype(int) - b.astype(int))


class ImageIndependentProtector:
    """A stub public model whose delta is the same tile whatever the photo."""

    def __init__(self, tile):
        self.tile = tile

    def protected_float(self, rgb, eps_levels=None):
        return pixels.to_float(with_tile(rgb, self.tile)).numpy()


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.mark.parametrize("name", sorted(PURIFICATIONS))
def test_every_purification_keeps_shape_and_dtype(name, rng):
    rgb = photo(rng, 45, 70)
    from ridtrain.defender.generators import build_generator

    small = build_generator("rid-s", pattern=16, code_dim=16, channels=(8, 16, 16), working_side=SIDE).eval()
    context = PurifyContext(protector=ImageIndependentProtector(period16_tile()), mean_delta=period16_tile(), side=SIDE,
                            tiles=period16_tile()[None], generator=small)
    out = purify(rgb, name, context)
    assert out.shape == rgb.shape and out.dtype == np.uint8


@pytest.mark.parametrize("name", ["jpeg75", "resize0.5", "blur1"])
def test_image_purifications_change_detail_but_keep_a_flat_image_flat(name, rng):
    noisy = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    assert levels_off(purify(noisy, name), noisy).mean() > 10
    flat = np.full((48, 64, 3), 117, np.uint8)
    assert levels_off(purify(flat, name), flat).max() <= 1


def test_blur1_is_a_gaussian_of_sigma_1(rng):
    impulse = np.zeros((21, 21, 3), np.uint8)
    impulse[10, 10] = 255
    row = purify(impulse, "blur1")[10, :, 0].astype(float)
    g = np.exp(-((np.arange(21) - 10) ** 2) / 2)
    expected = 255 * g * g[10] / g[7:14].sum() ** 2  # the 7x7 kernel, normalised, through the centre row
    assert np.abs(row - np.round(expected)).max() <= 1


def test_subtract_mean_delta_removes_an_image_independent_tile(rng):
    tile = period16_tile()
    sizes = [(32, 32), (40, 56), (56, 40), (64, 80), (96, 70), (128, 100), (50, 120), (33, 47)] * 2 + [(90, 200)]  # the last: 32x64, twice the estimate
    clean = [photo(rng, h, w) for h, w in sizes]
    protected = [with_tile(c, tile) for c in clean]
    mean = mean_working_delta(list(zip(clean[:16], protected[:16])), SIDE)
    assert mean.shape == (3, 32, 32)  # the smallest working size among them
    target, attacked = clean[16], protected[16]
    assert (levels_off(attacked, target) > 1).mean() > 0.5  # there is a tile to remove
    assert (levels_off(subtract_mean_delta(attacked, mean, SIDE), target) <= 1).mean() > 0.99
    misaligned = np.roll(mean, 8, axis=2)  # half a period off: the tile's phase matters
    assert (levels_off(subtract_mean_delta(attacked, misaligned, SIDE), target) <= 1).mean() < 0.7


def test_subtract_periodic_mean_removes_a_repeating_tile_from_one_photo_but_not_a_varying_one(rng):
    side = 128  # 8 x 12 cells
    tile = period16_tile()
    coarse = rng.uniform(50, 205, (5, 7, 3)).astype(np.uint8)  # shading, no detail at the cell's scale
    clean = np.asarray(Image.fromarray(coarse).resize((192, 128), Image.BICUBIC))
    attacked = with_tile(clean, tile, side)
    assert (levels_off(attacked, clean) > 1).mean() > 0.5
    assert (levels_off(subtract_periodic_mean(attacked, side), clean) <= 1).mean() > 0.95
    assert (levels_off(purify(attacked, "subtract-periodic-mean", PurifyContext(side=side)), clean) <= 1).mean() > 0.95
    # the same tile scaled cell by cell by a wave with a frequency that is not a whole number of cycles
    varying = with_tile(clean, tile, side, lambda i, j: np.cos(np.pi * (0.37 * i + 0.61 * j + 0.2)))
    removed = levels_off(subtract_periodic_mean(varying, side), varying).astype(float)
    assert removed.mean() < 0.35 * levels_off(varying, clean).mean()
    # ...which an attacker who reads the tile from the public weights fits cell by cell
    fitted = subtract_tile_fit(varying, tile[None], side)
    assert (levels_off(fitted, clean) <= 1).mean() > 0.95
    assert np.array_equal(purify(varying, "subtract-tile-fit", PurifyContext(side=side, tiles=tile[None])), fitted)
    other = np.roll(tile, 5, axis=2)[None]  # a tile the photo does not carry: little to fit
    assert (levels_off(subtract_tile_fit(varying, other, side), clean) <= 1).mean() < 0.7


def test_public_tiles_are_laid_out_as_the_generator_lays_them():
    from ridtrain.defender.generators import PATTERN_GAIN, build_generator

    gen = build_generator("rid-s", pattern=16, code_dim=16, channels=(8, 16, 32)).eval()
    torch.nn.init.normal_(gen.tile, std=0.5 / PATTERN_GAIN)
    tiles = public_tiles(gen)
    assert tiles.shape == (5, 3, 16, 16)  # the fixed tile and the code's 4
    torch.nn.init.zeros_(gen.code_tile_bank)  # delta = the fixed tile alone (head and FiLM start at zero)
    with torch.no_grad():
        delta = gen(torch.rand(1, 3, 32, 48), 8 / 255)[0, :, :16, :16]
    assert torch.allclose(torch.atanh(delta * 255 / 8) / PATTERN_GAIN, torch.from_numpy(tiles[0]), atol=1e-5)
    with pytest.raises(ValueError, match="no tiles"):
        public_tiles(build_generator("rid-s", channels=(8, 16, 32)))


def test_subtract_public_model_undoes_an_image_independent_delta(rng):
    tile = period16_tile()
    clean = photo(rng, 70, 90)
    attacked = with_tile(clean, tile)
    assert (levels_off(attacked, clean) > 1).mean() > 0.5
    recovered = subtract_public_model(attacked, ImageIndependentProtector(tile))
    assert levels_off(recovered, clean).max() <= 1


def test_subtract_public_model_on_a_real_generator(rng):
    from ridtrain.defender.generators import build_generator
    from ridtrain.defender.protect import TorchProtector

    torch.manual_seed(0)
    gen = build_generator("rid-s", channels=(8, 16, 16), blocks=(0, 1, 1), up_blocks=(0, 1), working_side=SIDE).eval()
    torch.nn.init.normal_(gen.head.bias, std=1.0)  # an image-independent delta of a few levels
    clean = photo(rng, 40, 48)
    attacked = TorchProtector(gen).protect_array(clean)
    assert (levels_off(subtract_public_model(attacked, TorchProtector(gen)), clean) <= 1).mean() > 0.95


def test_unknown_or_unready_purifications_are_named(rng):
    rgb = photo(rng, 32, 32)
    with pytest.raises(ValueError, match="unknown purification 'jpeg10'"):
        purify(rgb, "jpeg10")
    with pytest.raises(ValueError, match="needs the public model"):
        purify(rgb, "subtract-public-model")
    with pytest.raises(ValueError, match="needs a mean delta"):
        purify(rgb, "subtract-mean-delta")
    with pytest.raises(ValueError, match="needs the working side"):
        purify(rgb, "subtract-periodic-mean")
    with pytest.raises(ValueError, match="needs the public model's tiles"):
        purify(rgb, "subtract-tile-fit", PurifyContext(side=SIDE))
    with pytest.raises(ValueError, match="needs the public model as a PyTorch generator"):
        purify(rgb, "subtract-code-search")


def test_mean_delta_of_protected_copies_and_only_of_other_photos(tmp_path, rng):
    from ridtrain.attacker.evaluate import purify_context

    tile = period16_tile()
    others, copies, evaluated = tmp_path / "others", tmp_path / "copies", tmp_path / "evaluated"
    for folder in (others, copies, evaluated):
        folder.mkdir()
    for k in range(3):
        clean = photo(rng, 32 + 16 * k, 48)
        pixels.save_image(others / f"o{k}.png", clean)
        pixels.save_image(copies / f"o{k}.png", with_tile(clean, tile))
    pixels.save_image(evaluated / "e.png", photo(rng, 40, 40))
    context, notes = purify_context(["subtract-mean-delta"], evaluated, 8, SIDE, mean_delta_images=others, mean_delta_protected=copies)
    assert notes["subtract-mean-delta"]["photos"] == 3 and context.mean_delta.shape == (3, 32, 32)
    assert np.abs(context.mean_delta - np.tile(tile, (1, 2, 2))).max() < 1.5 / 255
    with pytest.raises(ValueError, match="other photos than the evaluated ones"):
        purify_context(["subtract-mean-delta"], others / "o1.png", 8, SIDE, mean_delta_images=others, mean_delta_protected=copies)
    with pytest.raises(ValueError, match="needs load_public"):  # the loader comes from above (ridexport.backends)
        purify_context(["subtract-public-model"], evaluated, 8, SIDE, attacker_model="default")


def test_rid_eval_reports_what_each_purification_keeps(tmp_path, ldm_paths, perturbed_generator, rng):
    from rid.cli import app

    model = perturbed_generator(0.5, channels=(8, 16, 16), blocks=(0, 1, 1), up_blocks=(0, 1), pattern=16, working_side=SIDE)
    images, others = tmp_path / "images", tmp_path / "others"
    for folder, count in ((images, 1), (others, 2)):
        folder.mkdir()
        for k in range(count):
            pixels.save_image(folder / f"p{k}.png", photo(rng, 40 + 8 * k, 48))
    args = ["eval", str(images), "-t", str(ldm_paths[0]), "--model", str(model), "--side", str(SIDE), "--samples", "1",
            "--purify", "jpeg75", "--purify", "subtract-public-model", "--purify", "subtract-tile-fit",
            "--purify", "subtract-periodic-mean", "--purify", "subtract-code-search", "--purify", "subtract-mean-delta",
            "--mean-delta-images", str(others)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert set(report["purified"]) == {"jpeg75", "subtract-public-model", "subtract-tile-fit", "subtract-periodic-mean",
                                       "subtract-code-search", "subtract-mean-delta"}
    kept = report["kept_pct"]["jpeg75"][ldm_paths[0].name]["denoise_mse"]
    assert kept is not None and np.isfinite(kept)
    assert report["purify_notes"]["subtract-public-model"]["backend"] == "torch"  # the test model has no export
    assert report["purify_notes"]["subtract-mean-delta"]["photos"] == 2
    assert report["purify_notes"]["subtract-tile-fit"]["tiles"] == 1  # a deterministic model: its fixed tile
    assert "subtract-mean-delta" in result.stderr and "%" in result.stderr

    missing = CliRunner().invoke(app, args[:-2])
    assert missing.exit_code == 2 and "--mean-delta-images" in missing.stderr
    unknown = CliRunner().invoke(app, args[:8] + ["--purify", "sharpen"])
    assert unknown.exit_code == 2 and "unknown purification 'sharpen'" in unknown.stderr


def test_rid_eval_help_names_every_purification():
    from rid.cli import app

    text = " ".join(CliRunner().invoke(app, ["eval", "--help"], terminal_width=400).output.split())
    missing = [name for name in PURIFICATIONS if name not in text]
    assert not missing, f"rid eval --help does not name {missing}"


def test_subtract_code_search_finds_a_secret_code_and_leaves_the_generator_as_it_was(rng):
    from ridtrain.attacker.purify import subtract_code_search
    from ridtrain.defender.generators import PATTERN_GAIN, build_generator
    from ridtrain.defender.protect import TorchProtector

    torch.manual_seed(0)
    # delta = a mix of tiles set smoothly by the code (no waves: their frequencies make the search a
    # much harder one), a few levels
    gen = build_generator("rid-s", pattern=16, code_dim=16, channels=(8, 16, 32), working_side=64).eval()
    torch.nn.init.normal_(gen.code_tile_bank, std=0.5 / PATTERN_GAIN)
    torch.nn.init.normal_(gen.code_mix.weight, std=1.0)
    coarse = rng.uniform(60, 195, (5, 7, 3)).astype(np.uint8)
    clean = np.asarray(Image.fromarray(coarse).resize((96, 64), Image.BICUBIC))
    attacked = TorchProtector(gen).protect_array(clean, seed="00" * 16)
    searched = subtract_code_search(attacked, gen)
    before, after = levels_off(attacked, clean).mean(), levels_off(searched, clean).mean()
    assert before > 3 and after < 0.5 * before
    assert all(q.requires_grad for q in gen.parameters())
    assert np.array_equal(purify(attacked, "subtract-code-search", PurifyContext(generator=gen)), searched)  # seeded starts
