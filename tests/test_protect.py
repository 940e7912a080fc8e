"""`rid protect`: protect_array's eps bound, and the batch command on good and bad files."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, ImageCms
from skimage import data as skdata
from typer.testing import CliRunner

from rid.cli import app
from ridpixels import OUTPUT_FORMATS
from ridtrain.defender.generators import ALLOWED_EPS, load_generator
from ridtrain.defender.protect import protect_array
from ridtrain.pixels import load_image

REPO = Path(__file__).resolve().parents[1]
ORIENTATION, GPS_IFD = 0x0112, 0x8825


@pytest.fixture(scope="module")
def model_dir(perturbed_generator) -> Path:
    """delta != 0 and reaches +-eps in places (eps = 8): the bias moves even flat images."""
    return perturbed_generator(0.5, bias_std=3.0)


@pytest.fixture(scope="module")
def gen(model_dir):
    return load_generator(model_dir)


def rand_rgb(h=56, w=40, c=3, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, c), dtype=np.uint8)


def save(path: Path, arr: np.ndarray, fmt: str | None = None, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, fmt, **kw)
    return path


def huge_png_header(w=30000, h=30000) -> bytes:
    """A PNG that declares w x h pixels but holds a few bytes: no huge allocation to write it."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 10)) + chunk(b"IEND", b"")


def rid(*args: str | Path):
    return CliRunner().invoke(app, ["protect", *map(str, args)])


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def read(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))


# ----------------------------------------------------------------------------- protect_array


@settings(max_examples=15, deadline=None)
@given(
    h=st.integers(1, 48),
    w=st.integers(1, 48),
    eps=st.sampled_from(ALLOWED_EPS),
    seed=st.integers(0, 2**32 - 1),
)
def test_protect_array_stays_within_eps(gen, h, w, eps, seed):
    rgb = rand_rgb(h, w, seed=seed)
    out = protect_array(gen, rgb, eps)
    assert out.dtype == np.uint8 and out.shape == rgb.shape
    assert np.abs(out.astype(int) - rgb).max() <= eps


@pytest.mark.parametrize("eps", [4, 16, None])
def test_protect_array_uses_the_whole_budget(gen, eps):
    """The perturbed head saturates tanh somewhere, so pixels away from 0 and 255 move by up to
    exactly eps levels: the eps given, or the model's."""
    rgb = np.random.default_rng(0).integers(32, 224, (37, 91, 3), dtype=np.uint8)
    diff = np.abs(protect_array(gen, rgb, eps).astype(int) - rgb)
    assert diff.max() == (eps or gen.config.eps)


def test_the_generator_runs_at_its_own_working_side():
    """A generator trained at a 128-px shorter side (the proxies' scale) sees the photo at that
    size, and its period-16 tile reaches the photo enlarged by the same factor."""
    import torch

    from ridtrain.defender.generators import build_generator
    from ridtrain.pixels import to_float, working_image

    torch.manual_seed(0)
    gen = build_generator("rid-s", working_side=128, pattern=16).eval()
    torch.nn.init.normal_(gen.tile, std=0.01)
    seen = []
    gen.register_forward_hook(lambda module, args, out: seen.append(tuple(args[0].shape[-2:])))
    rgb = rand_rgb(300, 500, seed=1)
    out = protect_array(gen, rgb, 8)
    assert seen == [(128, 208)] and gen.working_size_rule == {"side": 128, "multiple": 16, "max_long": 2048}
    with torch.no_grad():
        tile = gen(working_image(to_float(rgb), **gen.working_size_rule), 8 / 255)[0, :, :16, :16]
    assert tile.abs().max() > 1 / 255  # the tile is there, so the delta is not 0 ...
    diff = out.astype(int) - rgb
    assert np.abs(diff).max() <= 8 and np.abs(diff[:35, :35]).mean() > 1  # ... and reaches the photo


def test_protect_array_rejects_bad_eps(gen):
    with pytest.raises(ValueError, match="eps must be one of"):
        protect_array(gen, rand_rgb(), 5)


# ----------------------------------------------------------------------------- rid protect


@pytest.fixture
def mixed_folder(tmp_path) -> Path:
    src = tmp_path / "in"
    save(src / "good.jpg", rand_rgb(seed=1), quality=95)
    save(src / "sub" / "odd.PNG", rand_rgb(91, 37, seed=2))  # odd size, upper-case suffix
    save(src / "sub" / "alpha.webp", rand_rgb(c=4, seed=3), lossless=True)
    (src / "empty.jpg").write_bytes(b"")
    (src / "text.jpg").write_text("not a photo\n")
    (src / "cut.jpg").write_bytes(save(tmp_path / "full.jpg", rand_rgb(seed=4)).read_bytes()[:500])
    (src / "huge.png").write_bytes(huge_png_header())
    (src / "notes.txt").write_text("ignored: not an image suffix\n")
    (src / ".hidden").mkdir()
    save(src / ".hidden" / "thumb.jpg", rand_rgb(seed=5))
    return src


BAD = ("empty.jpg", "text.jpg", "cut.jpg", "huge.png")


def test_bad_files_one_line_each_and_batch_goes_on(mixed_folder, model_dir, tmp_path):
    out = tmp_path / "out"
    res = rid(mixed_folder, "-o", out, "--model", model_dir)
    assert res.exit_code == 1, res.output
    lines = error_lines(res.stderr)
    assert len(lines) == len(BAD)
    for name in BAD:
        assert sum(f"{mixed_folder / name}:" in line for line in lines) == 1, (name, lines)
    assert "empty file" in res.stderr and "cannot identify" in res.stderr and "too many pixels" in res.stderr
    assert "Traceback" not in res.output
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*"))
    assert written == ["good.png", "sub", "sub/alpha.png", "sub/odd.png"]  # no temp files, no hidden
    assert "3 protected, 0 skipped (already done), 4 failed" in res.stderr


def test_outputs_keep_size_alpha_and_eps(mixed_folder, model_dir, tmp_path):
    out = tmp_path / "out"
    rid(mixed_folder, "-o", out, "--model", model_dir, "--eps", "4")
    odd_in, odd_out = read(mixed_folder / "sub" / "odd.PNG"), read(out / "sub" / "odd.png")
    assert odd_out.shape == (91, 37, 3)
    assert 0 < np.abs(odd_out.astype(int) - odd_in).max() <= 4
    alpha_in, alpha_out = read(mixed_folder / "sub" / "alpha.webp"), read(out / "sub" / "alpha.png")
    assert alpha_out.shape == (56, 40, 4)
    np.testing.assert_array_equal(alpha_out[..., 3], alpha_in[..., 3])
    assert np.abs(alpha_out[..., :3].astype(int) - alpha_in[..., :3]).max() <= 4


def test_rerun_skips_and_overwrite_redoes(mixed_folder, model_dir, tmp_path):
    for name in BAD:
        (mixed_folder / name).unlink()
    out = tmp_path / "out"
    assert rid(mixed_folder, "-o", out, "--model", model_dir).exit_code == 0
    (out / "good.png").write_bytes(b"marker")  # a skipped file is not touched
    res = rid(mixed_folder, "-o", out, "--model", model_dir)
    assert res.exit_code == 0 and "0 protected, 3 skipped" in res.stderr
    assert (out / "good.png").read_bytes() == b"marker"
    res = rid(mixed_folder, "-o", out, "--model", model_dir, "--overwrite")
    assert res.exit_code == 0 and "3 protected, 0 skipped" in res.stderr
    assert read(out / "good.png").shape == (56, 40, 3)


def test_exif_orientation_gives_transposed_outputs(model_dir, tmp_path):
    src, out = tmp_path / "in", tmp_path / "out"
    stored = rand_rgb(56, 40)
    for o in range(1, 9):
        exif = Image.Exif()
        exif[ORIENTATION] = o
        save(src / f"o{o}.png", stored, exif=exif)
    assert rid(src, "-o", out, "--model", model_dir).exit_code == 0
    for o in range(1, 9):
        shown = load_image(src / f"o{o}.png").rgb  # checked against the EXIF spec in test_pixels
        got = read(out / f"o{o}.png")
        assert got.shape == ((56, 40, 3) if o <= 4 else (40, 56, 3)), o
        assert np.abs(got.astype(int) - shown).max() <= 8, o  # the right pixels, not just the right size


def test_metadata_stripped_by_default_kept_on_request(model_dir, tmp_path):
    exif = Image.Exif()
    exif[ORIENTATION] = 6
    exif.get_ifd(GPS_IFD).update({1: "N", 2: (48.0, 51.0, 30.0)})
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    photo = save(tmp_path / "in" / "gps.jpg", rand_rgb(), exif=exif, icc_profile=icc)
    for flags, fmt in (([], "png"), (["--keep-metadata"], "png"), (["--keep-metadata"], "webp"), ([], "jpeg"), (["--keep-metadata"], "jpeg")):
        out = tmp_path / f"out-{fmt}-{len(flags)}"
        assert rid(photo, "-o", out, "--model", model_dir, "--format", fmt, *flags).exit_code == 0
        im = Image.open(out / f"gps.{OUTPUT_FORMATS[fmt]['extension']}")
        im.load()
        assert im.size == (56, 40) and im.info.get("icc_profile") == icc
        kept = im.getexif()
        if flags:
            assert kept[ORIENTATION] == 1 and kept.get_ifd(GPS_IFD)[1] == "N"
        else:
            assert len(kept) == 0 and "exif" not in im.info


@pytest.mark.parametrize(
    "args, message",
    [
        (["--eps", "5"], "eps must be one of"),
        (["--format", "gif"], "unknown format 'gif'; choose one of png, jpeg, webp"),
        (["--model", "no-such-model"], "cannot load model 'no-such-model'"),
    ],
)
def test_usage_errors_exit_2(model_dir, tmp_path, args, message):
    photo = save(tmp_path / "a.png", rand_rgb())
    res = rid(photo, "-o", tmp_path / "out", "--model", model_dir, *args)
    assert res.exit_code == 2 and message in res.stderr and "Traceback" not in res.output
    assert not (tmp_path / "out").exists()


def test_format_jpeg_writes_smaller_jpg_files_and_refuses_transparent_photos(model_dir, tmp_path):
    """--format jpeg: NAME.jpg beside the PNG layout, close to the PNG's pixels and smaller; a photo
    with transparent parts gets one error line and the batch goes on (an all-opaque alpha is fine)."""
    src = tmp_path / "in"
    face = np.asarray(Image.fromarray(skdata.astronaut()).resize((160, 128), Image.LANCZOS))
    opaque, see_through = (np.dstack([face, np.full(face.shape[:2], 255, np.uint8)]) for _ in range(2))
    see_through[:10, :10, 3] = 0
    save(src / "face.png", face)
    save(src / "sub" / "opaque.png", opaque)
    save(src / "sub" / "see-through.png", see_through)
    res = rid(src, "-o", tmp_path / "jpeg", "--model", model_dir, "--format", "jpeg", "--seed", "ab" * 16)
    assert res.exit_code == 1, res.output
    assert error_lines(res.stderr) == [f"error: {src / 'sub' / 'see-through.png'}: this photo has transparent parts, "
                                       "which JPEG cannot keep: choose PNG or WebP"]
    assert "2 protected, 0 skipped (already done), 1 failed" in res.stderr and "Traceback" not in res.output
    written = sorted(str(p.relative_to(tmp_path / "jpeg")) for p in (tmp_path / "jpeg").rglob("*"))
    assert written == ["face.jpg", "sub", "sub/opaque.jpg"]
    assert rid(src / "face.png", "-o", tmp_path / "png", "--model", model_dir, "--seed", "ab" * 16).exit_code == 0
    jpg, png = Image.open(tmp_path / "jpeg" / "face.jpg"), Image.open(tmp_path / "png" / "face.png")
    assert jpg.format == "JPEG" and jpg.mode == "RGB" and jpg.size == png.size == (160, 128)
    err = np.asarray(jpg).astype(np.float64) - np.asarray(png)
    psnr = 10 * np.log10(255**2 / np.mean(err**2))
    jpg_bytes, png_bytes = (tmp_path / "jpeg" / "face.jpg").stat().st_size, (tmp_path / "png" / "face.png").stat().st_size
    print(f"face: jpeg {jpg_bytes} bytes, png {png_bytes}; PSNR {psnr:.1f} dB")
    assert psnr > 30 and jpg_bytes < png_bytes / 2
    assert Image.open(tmp_path / "jpeg" / "sub" / "opaque.jpg").size == (160, 128)


def test_missing_input_exits_2(model_dir, tmp_path):
    res = rid(tmp_path / "nope", "-o", tmp_path / "out", "--model", model_dir)
    assert res.exit_code == 2 and f"no such file or folder: {tmp_path / 'nope'}" in res.stderr


def test_output_folder_inside_input_is_not_reprotected(model_dir, tmp_path):
    save(tmp_path / "a.jpg", rand_rgb())
    for _ in range(2):
        res = rid(tmp_path, "-o", tmp_path / "protected", "--model", model_dir)
        assert res.exit_code == 0
    assert sorted(p.name for p in (tmp_path / "protected").iterdir()) == ["a.png"]
    assert "0 protected, 1 skipped" in res.stderr


def test_two_inputs_for_one_output_is_an_error(model_dir, tmp_path):
    save(tmp_path / "in" / "a.jpg", rand_rgb())
    save(tmp_path / "in" / "a.png", rand_rgb())
    res = rid(tmp_path / "in", "-o", tmp_path / "out", "--model", model_dir)
    assert res.exit_code == 1 and len(error_lines(res.stderr)) == 1 and "already taken" in res.stderr


@pytest.mark.parametrize("overwrite", [False, True])
def test_a_photo_is_never_written_over_itself(model_dir, tmp_path, overwrite):
    """a.png protected as PNG into its own folder: an error line, the original as it was (and never
    skipped as already done)."""
    save(tmp_path / "a.png", rand_rgb())
    before = (tmp_path / "a.png").read_bytes()
    res = rid(tmp_path / "a.png", "-o", tmp_path, "--model", model_dir, *(["--overwrite"] if overwrite else []))
    assert res.exit_code == 1 and len(error_lines(res.stderr)) == 1 and "would replace the photo itself" in res.stderr
    assert (tmp_path / "a.png").read_bytes() == before and "0 skipped" in res.stderr


def test_console_script_in_a_subprocess(mixed_folder, model_dir, tmp_path):
    out = tmp_path / "out"
    script = Path(sys.executable).with_name("rid")  # the console script, once `pip install -e .` made it
    entry = [str(script)] if script.is_file() else [sys.executable, "-c", "from rid.cli import app; app()"]
    cmd = [*entry, "protect", str(mixed_folder), "-o", str(out), "--model", str(model_dir)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 1, res.stderr
    assert len(error_lines(res.stderr)) == len(BAD) and "Traceback" not in res.stderr
    assert sorted(p.name for p in out.rglob("*.png")) == ["alpha.png", "good.png", "odd.png"]
    assert not [p for p in out.rglob("*") if p.name.startswith(".")]


# ----------------------------------------------------------------------------- seeds


@pytest.fixture(scope="module")
def randomised_dir(perturbed_generator) -> Path:
    return perturbed_generator(0.3, bias_std=0.5, pattern=16, code_dim=16, channels=(8, 16, 32))


def test_two_protections_differ_and_both_stay_within_eps(randomised_dir):
    gen, rgb = load_generator(randomised_dir), rand_rgb(90, 130, seed=3)
    a, b = protect_array(gen, rgb, 8), protect_array(gen, rgb, 8)
    assert (a != b).mean() > 0.2  # a fresh seed each time
    for out in (a, b):
        assert 0 < np.abs(out.astype(int) - rgb).max() <= 8
    seed = "0123456789abcdef" * 2
    assert np.array_equal(protect_array(gen, rgb, 8, seed), protect_array(gen, rgb, 8, bytes.fromhex(seed)))


def test_rid_protect_seed_reproduces_bytes_and_bad_seeds_are_usage_errors(randomised_dir, tmp_path):
    src = save(tmp_path / "in" / "p.png", rand_rgb(64, 80, seed=4))
    seed = "aa" * 16
    for name, extra in (("one", ["--seed", seed]), ("two", ["--seed", seed]), ("fresh", [])):
        assert rid(src, "-o", tmp_path / name, "--model", randomised_dir, *extra).exit_code == 0
    one, two, fresh = ((tmp_path / n / "p.png").read_bytes() for n in ("one", "two", "fresh"))
    assert one == two and one != fresh
    result = rid(src, "-o", tmp_path / "bad", "--model", randomised_dir, "--seed", "xyz")
    assert result.exit_code == 2 and "seed" in result.output
