"""The canonical pixel pipeline: decoding rules, working size, resizes, 8-bit rounding, saving."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, ImageCms
from skimage import data as skdata

import ridpixels
from ridtrain import pixels
from ridtrain.pixels import ImageError, delta_to_full, load_image, save_image, to_float, to_uint8, to_working, working_size

ORIENTATION, GPS_IFD = 0x0112, 0x8825
H, W = 56, 40


def rand_rgb(h=H, w=W, c=3, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, c), dtype=np.uint8)


def encode(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def exif_with(orientation: int | None = None, gps: bool = False) -> Image.Exif:
    exif = Image.Exif()
    exif[0x010F] = "TestCam"  # Make
    if orientation is not None:
        exif[ORIENTATION] = orientation
    if gps:
        exif.get_ifd(GPS_IFD).update({1: "N", 2: (48.0, 51.0, 30.0)})
    return exif


def png_by_hand(w: int, h: int, bit_depth: int, colour_type: int, rows: bytes) -> bytes:
    """A PNG written chunk by chunk, so a header may declare any size without allocating it."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", w, h, bit_depth, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


# What EXIF orientation o means, written from the EXIF spec (not from Pillow): the operation that
# turns the stored pixels into the displayed ones ("mirror horizontally, then rotate clockwise").
def displayed(stored: np.ndarray, o: int) -> np.ndarray:
    mirrored = stored[:, ::-1] if o in (2, 4, 5, 7) else stored
    clockwise_quarter_turns = {1: 0, 2: 0, 3: 2, 4: 2, 5: 3, 6: 1, 7: 1, 8: 3}[o]
    return np.rot90(mirrored, -clockwise_quarter_turns)


# ----------------------------------------------------------------------------- orientation


@pytest.mark.parametrize("o", range(1, 9))
def test_exif_orientation_png(o):
    stored = rand_rgb()
    dec = load_image(encode(Image.fromarray(stored), "PNG", exif=exif_with(o)))
    np.testing.assert_array_equal(dec.rgb, displayed(stored, o))
    kept = Image.Exif()
    kept.load(dec.exif)
    assert kept[ORIENTATION] == 1 and kept[0x010F] == "TestCam"


def test_exif_orientation_jpeg():
    """Same JPEG data under each tag: the decoded pixels are the tag-1 pixels, transformed."""
    im = Image.fromarray(rand_rgb())
    upright = load_image(encode(im, "JPEG", quality=95, exif=exif_with(1))).rgb
    for o in range(1, 9):
        dec = load_image(encode(im, "JPEG", quality=95, exif=exif_with(o)))
        np.testing.assert_array_equal(dec.rgb, displayed(upright, o), err_msg=f"orientation {o}")


# ----------------------------------------------------------------------------- modes


def test_rgba_alpha_untouched():
    rgba = rand_rgb(c=4)
    dec = load_image(encode(Image.fromarray(rgba), "PNG"))
    np.testing.assert_array_equal(dec.rgb, rgba[..., :3])
    np.testing.assert_array_equal(dec.alpha, rgba[..., 3])


def test_la_alpha_untouched():
    la = rand_rgb(c=2)
    dec = load_image(encode(Image.fromarray(la, "LA"), "PNG"))
    np.testing.assert_array_equal(dec.rgb, np.repeat(la[..., :1], 3, axis=2))
    np.testing.assert_array_equal(dec.alpha, la[..., 1])


def test_palette_with_transparency_gets_alpha():
    idx = rand_rgb(c=1)[..., 0] % 4
    palette = [255, 0, 0, 0, 255, 0, 0, 0, 255, 9, 9, 9]
    im = Image.fromarray(idx, "P")
    im.putpalette(palette)
    dec = load_image(encode(im, "PNG", transparency=2))
    np.testing.assert_array_equal(dec.rgb, np.array(palette).reshape(4, 3)[idx])
    np.testing.assert_array_equal(dec.alpha, np.where(idx == 2, 0, 255))


def test_palette_without_transparency_has_no_alpha():
    im = Image.fromarray(rand_rgb()).convert("P")
    dec = load_image(encode(im, "PNG"))
    assert dec.alpha is None
    np.testing.assert_array_equal(dec.rgb, np.asarray(im.convert("RGB")))


def test_grey_and_bilevel():
    g = rand_rgb(c=1)[..., 0]
    dec = load_image(encode(Image.fromarray(g, "L"), "PNG"))
    np.testing.assert_array_equal(dec.rgb, np.repeat(g[..., None], 3, axis=2))
    assert dec.alpha is None
    bits = load_image(encode(Image.fromarray(g > 127), "PNG"))  # mode "1"
    np.testing.assert_array_equal(bits.rgb[..., 0], np.where(g > 127, 255, 0))


def test_grey_16bit_rounds_to_nearest_level():
    v = np.array([[0, 128, 129, 385, 386, 32896, 65406, 65535]], dtype=np.uint16)
    data = encode(Image.fromarray(v), "PNG")
    assert Image.open(io.BytesIO(data)).mode == "I;16"
    dec = load_image(data)
    # round(v*255/65535): 128 -> 0.498 -> 0, 129 -> 0.502 -> 1 (v >> 8 would give 0 for both)
    np.testing.assert_array_equal(dec.rgb[0, :, 0], [0, 0, 1, 1, 2, 128, 254, 255])
    np.testing.assert_array_equal(dec.rgb[..., 0], np.round(v.astype(np.float64) * 255 / 65535))
    assert (dec.rgb == dec.rgb[..., :1]).all()


def test_grey_16bit_big_endian_and_32bit():
    v = np.array([[0, 129, 65535, 70000, -5]], dtype=np.int32)
    dec = load_image(encode(Image.fromarray(v), "TIFF"))  # mode I: clipped to 0..65535 first
    np.testing.assert_array_equal(dec.rgb[0, :, 0], [0, 1, 255, 255, 0])
    im = Image.frombytes("I;16B", (3, 1), np.array([129, 32896, 65535], ">u2").tobytes())
    np.testing.assert_array_equal(pixels._to_rgb8(im)[0][0, :, 0], [1, 128, 255])


def test_rgb_16bit_png_keeps_pillows_high_byte():
    """Pinned Pillow behaviour (see module docstring): 16-bit colour decodes as v >> 8."""
    rows = b"\x00" + struct.pack(">6H", 0x1234, 0xFF80, 0x00FF, 0x80FF, 0x7F80, 0xFFFF)
    dec = load_image(png_by_hand(2, 1, 16, 2, rows))
    np.testing.assert_array_equal(dec.rgb, [[[0x12, 0xFF, 0x00], [0x80, 0x7F, 0xFF]]])
    assert dec.alpha is None


def test_cmyk_jpeg():
    cmyk = np.zeros((16, 32, 4), np.uint8)
    cmyk[:, :16, 0] = 255  # cyan
    cmyk[:, 16:, 3] = 255  # black
    dec = load_image(encode(Image.fromarray(cmyk, "CMYK"), "JPEG", quality=95))
    assert dec.rgb.shape == (16, 32, 3) and dec.alpha is None
    np.testing.assert_allclose(dec.rgb[8, 4], [0, 255, 255], atol=3)
    np.testing.assert_allclose(dec.rgb[8, 28], [0, 0, 0], atol=3)


def test_float_mode_uses_pillows_0_255_scale():
    im = Image.fromarray(np.array([[-3.0, 0.5, 1.5, 254.6, 300.0]], np.float32))
    np.testing.assert_array_equal(pixels._to_rgb8(im)[0][0, :, 0], [0, 0, 2, 255, 255])


def test_animated_gif_uses_first_frame():
    frames = [Image.fromarray(np.full((8, 8, 3), c, np.uint8)) for c in (10, 200)]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:])
    assert (load_image(data).rgb == 10).all()


def test_icc_profile_is_carried_not_applied():
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes()  # far from sRGB
    rgb = rand_rgb()
    dec = load_image(encode(Image.fromarray(rgb), "PNG", icc_profile=icc))
    assert dec.icc_profile == icc
    np.testing.assert_array_equal(dec.rgb, rgb)


# ----------------------------------------------------------------------------- bad input


def test_too_many_pixels_checked_before_decoding():
    huge = png_by_hand(9000, 9000, 8, 2, b"\x00" * 10)  # 81 MP declared, 10 bytes of pixels
    with pytest.raises(ImageError, match=r"too many pixels: 9000x9000"):
        load_image(huge)
    with pytest.raises(ImageError, match=r"too many pixels: 40x56"):
        load_image(encode(Image.fromarray(rand_rgb()), "PNG"), max_pixels=40 * 56 - 1)
    assert load_image(encode(Image.fromarray(rand_rgb()), "PNG"), max_pixels=40 * 56).rgb.shape == (H, W, 3)


def test_pillow_bomb_error_becomes_image_error():
    with pytest.raises(ImageError, match="too many pixels"):
        load_image(png_by_hand(30000, 30000, 8, 2, b"\x00" * 10))
    with pytest.raises(ImageError, match="too many pixels"):  # Pillow's warning band is an error too
        load_image(png_by_hand(10000, 9000, 8, 2, b"\x00" * 10), max_pixels=10**9)


@pytest.mark.parametrize(
    "make, reason",
    [
        (lambda: b"", "not an image \\(empty file\\)"),
        (lambda: b"hello, I am text", "not an image \\(cannot identify"),
        (lambda: encode(Image.fromarray(rand_rgb()), "JPEG")[:400], "corrupt or truncated"),
        (lambda: encode(Image.fromarray(rand_rgb()), "PNG")[:300], "corrupt or truncated"),
        (lambda: encode(Image.fromarray(rand_rgb()), "EPS"), "not an image"),  # format not allowed
    ],
)
def test_bad_files_raise_image_error(make, reason):
    with pytest.raises(ImageError, match=reason):
        load_image(make())


# ----------------------------------------------------------------------------- working size


@pytest.mark.parametrize(
    "hw, expected",
    [((512, 512), (512, 512)), ((3000, 4000), (512, 688)), ((56, 40), (720, 512)), ((91, 37), (1264, 512)),
     ((1, 40), (512, 2048)), ((8000, 1000), (2048, 512)), ((1080, 1920), (512, 912))],
)
def test_working_size_examples(hw, expected):
    assert working_size(*hw) == expected


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 20000), st.integers(1, 20000), st.sampled_from([8, 16, 32]))
def test_working_size_properties(h, w, m):
    hw, ww = working_size(h, w, multiple=m)
    assert hw % m == 0 and ww % m == 0 and min(hw, ww) >= m and max(hw, ww) <= 2048
    assert abs(min(hw, ww) - 512) <= m / 2  # the shorter side stays the shorter one, near 512
    long_exact = max(h, w) * 512 / min(h, w)
    if long_exact < 2048 - m:  # uncapped: aspect ratio kept up to rounding
        assert abs(max(hw, ww) - long_exact) <= m / 2
    assert not (hw > ww and h < w) and not (hw < ww and h > w)  # orientation never flips


# ----------------------------------------------------------------------------- resizes, rounding


def test_to_working_and_back_keep_eps():
    x = to_float(rand_rgb(37, 91))
    xw = to_working(x, working_size(37, 91))
    assert xw.shape == (1, 3, 512, 1264) and 0 <= xw.min() and xw.max() <= 1
    eps = 8 / 255
    delta = eps * torch.tanh(10 * torch.randn(1, 3, 512, 1264))
    full = delta_to_full(delta, (37, 91), eps)
    assert full.shape == (1, 3, 37, 91) and full.abs().max() <= eps
    # plain bilinear, align_corners=False (not nearest, not antialiased)
    expect = torch.nn.functional.interpolate(delta, size=(37, 91), mode="bilinear", align_corners=False)
    torch.testing.assert_close(full, expect.clamp(-eps, eps))


def test_to_working_antialiases_when_shrinking():
    stripes = torch.zeros(1, 3, 64, 64)
    stripes[..., ::4] = 1.0  # 1 lit column in 4: plain bilinear at 1/4 samples only the dark ones
    small = to_working(stripes, (16, 16))[..., 1:-1]  # (the kernel is cut at the borders)
    torch.testing.assert_close(small, torch.full_like(small, 0.25), atol=1e-5, rtol=0)


def test_to_uint8_rounds_half_to_even_and_clamps():
    levels = torch.tensor([0.5, 1.5, 2.5, 3.5, 254.5, 100.49, -7.0, 300.0])
    x = levels / 255.0
    ties = (x[:5] * 255.0).tolist()
    assert ties == [0.5, 1.5, 2.5, 3.5, 254.5], "test values must be exact ties in float32"
    out = to_uint8(x.view(1, 1, 1, 8).expand(1, 3, 1, 8))  # (1,3,1,8) -> (1,8,3)
    assert out.dtype == np.uint8 and out.shape == (1, 8, 3)
    np.testing.assert_array_equal(out[0, :, 0], [0, 2, 2, 4, 254, 100, 0, 255])  # half-up: 1, 2, 3, 4, 255


def test_uint8_float_round_trip_is_exact():
    v = np.arange(256, dtype=np.uint8).reshape(16, 16, 1).repeat(3, axis=2)
    x = to_float(v)
    assert x.shape == (1, 3, 16, 16) and x.dtype == torch.float32
    np.testing.assert_array_equal(to_uint8(x), v)
    with pytest.raises(ValueError, match="uint8"):
        to_float(v.astype(np.float32))


# ----------------------------------------------------------------------------- saving


@pytest.mark.parametrize("fmt", ["png", "webp"])
def test_save_is_lossless_and_keeps_rgb_under_zero_alpha(tmp_path, fmt):
    rgba = rand_rgb(c=4)
    rgba[..., 3] = np.where(rgba[..., 3] < 128, 0, rgba[..., 3])
    out = tmp_path / f"x.{fmt}"
    save_image(out, rgba[..., :3], rgba[..., 3], fmt)
    dec = load_image(out)
    np.testing.assert_array_equal(dec.rgb, rgba[..., :3])
    np.testing.assert_array_equal(dec.alpha, rgba[..., 3])
    assert [p.name for p in tmp_path.iterdir()] == [out.name]


@pytest.mark.parametrize("fmt", ["png", "jpeg", "webp"])
def test_save_writes_exif_only_when_given_and_always_icc(tmp_path, fmt):
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    exif = exif_with(1, gps=True).tobytes()
    save_image(tmp_path / f"a.{fmt}", rand_rgb(), fmt=fmt, icc=icc)
    save_image(tmp_path / f"b.{fmt}", rand_rgb(), fmt=fmt, icc=icc, exif=exif)
    a, b = load_image(tmp_path / f"a.{fmt}"), load_image(tmp_path / f"b.{fmt}")
    assert a.exif is None and a.icc_profile == icc == b.icc_profile
    kept = Image.Exif()
    kept.load(b.exif)
    assert kept.get_ifd(GPS_IFD)[1] == "N"


def test_failed_save_leaves_old_file_and_no_temp(tmp_path, monkeypatch):
    out = tmp_path / "x.png"
    out.write_bytes(b"old")

    def crash(self, fp, *args, **kwargs):
        fp.write(b"half a png")
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        save_image(out, rand_rgb())
    assert out.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["x.png"]


def test_save_rejects_unknown_format(tmp_path):
    with pytest.raises(ValueError, match="png, jpeg, webp"):
        save_image(tmp_path / "x.gif", rand_rgb(), fmt="gif")


def test_save_options_are_the_shared_table():
    """One list of choices (ridpixels.OUTPUT_FORMATS), the JPEG quality from it."""
    assert list(pixels.SAVE_OPTIONS) == list(ridpixels.OUTPUT_FORMATS)
    assert pixels.SAVE_OPTIONS["jpeg"]["quality"] == ridpixels.OUTPUT_FORMATS["jpeg"]["quality"]
    for fmt, spec in ridpixels.OUTPUT_FORMATS.items():
        data = pixels.encode_image(rand_rgb(), fmt=fmt)
        assert Image.open(io.BytesIO(data)).get_format_mimetype() == spec["media_type"], fmt


@pytest.fixture(scope="module")
def protected_like() -> np.ndarray:
    """A photograph with a +-3-level perturbation, as a protected photo is."""
    rgb = skdata.astronaut()
    noise = np.random.default_rng(0).integers(-3, 4, rgb.shape)
    return np.clip(rgb.astype(np.int16) + noise, 0, 255).astype(np.uint8)


def test_jpeg_decodes_close_and_smaller_than_the_png_which_stays_exact(protected_like):
    png, jpeg = (pixels.encode_image(protected_like, fmt=fmt) for fmt in ("png", "jpeg"))
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(png))), protected_like)  # PNG: lossless
    im = Image.open(io.BytesIO(jpeg))
    assert im.format == "JPEG" and im.mode == "RGB" and im.size == (512, 512)
    assert im.layer == [(1, 2, 2, 0), (2, 1, 1, 1), (3, 1, 1, 1)]  # 4:2:0, as the page's canvas encoder
    err = np.asarray(im).astype(np.float64) - protected_like
    psnr = 10 * np.log10(255**2 / np.mean(err**2))
    print(f"jpeg {len(jpeg)} bytes, png {len(png)}: {len(jpeg) / len(png):.2f}x; PSNR {psnr:.1f} dB")
    assert psnr > 32 and len(jpeg) < len(png) / 2


def test_jpeg_pixels_are_what_the_efficacy_report_measures(protected_like):
    """The JPEG download decodes to the pixels of purify's JPEG at the table's quality (optimize=True
    changes only the Huffman tables), so the report's protection figures are those of the file
    delivered."""
    from ridtrain.attacker.purify import jpeg

    delivered = np.asarray(Image.open(io.BytesIO(pixels.encode_image(protected_like, fmt="jpeg"))))
    np.testing.assert_array_equal(delivered, jpeg(protected_like, ridpixels.OUTPUT_FORMATS["jpeg"]["quality"]))


def test_jpeg_refuses_transparent_parts_and_drops_an_opaque_alpha():
    rgb, alpha = rand_rgb(), np.full((H, W), 255, np.uint8)
    opaque = Image.open(io.BytesIO(pixels.encode_image(rgb, alpha, "jpeg")))
    assert opaque.mode == "RGB" and opaque.size == (W, H)
    alpha[3, 5] = 254
    with pytest.raises(ImageError) as err:
        pixels.encode_image(rgb, alpha, "jpeg")
    assert err.value.code == "alpha_not_supported"
    assert str(err.value) == "this photo has transparent parts, which JPEG cannot keep: choose PNG or WebP"
    for fmt in ("png", "webp"):  # the lossless formats keep it
        np.testing.assert_array_equal(load_image(pixels.encode_image(rgb, alpha, fmt)).alpha, alpha)
