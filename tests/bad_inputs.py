"""The server's bad-input corpus, generated: (name, bytes, expected status, expected code).
Expected 200s are the odd-but-valid photos, which must go through."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image

ORIENTATION = 0x0112


def encode(im: Image.Image, fmt: str, **options) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **options)
    return buf.getvalue()


def photo(h: int = 48, w: int = 64, mode: str = "RGB", seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    rgb = np.stack([(xx * 4) % 256, (yy * 5) % 256, rng.integers(0, 256, (h, w))], axis=-1).astype(np.uint8)
    return Image.fromarray(rgb).convert(mode)


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def header_only_png(w: int, h: int) -> bytes:
    """A header claiming w x h, then a few bytes of pixel data (Pillow needs an IDAT to open it)."""
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + png_chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + png_chunk(b"IEND", b""))


def header_only_jpeg(w: int, h: int) -> bytes:
    sof = struct.pack(">BHHB", 8, h, w, 3) + b"".join(struct.pack(">BBB", i, 0x11, 0) for i in (1, 2, 3))
    return b"\xff\xd8" + b"\xff\xc0" + struct.pack(">H", len(sof) + 2) + sof + b"\xff\xd9"


def header_only_webp(w: int, h: int) -> bytes:
    """An extended (VP8X) WebP header claiming w x h, and nothing after it."""
    vp8x = bytes([0, 0, 0, 0]) + (w - 1).to_bytes(3, "little") + (h - 1).to_bytes(3, "little")
    body = b"WEBP" + b"VP8X" + struct.pack("<I", len(vp8x)) + vp8x
    return b"RIFF" + struct.pack("<I", len(body)) + body


def with_orientation(value: int) -> bytes:
    exif = Image.Exif()
    exif[ORIENTATION] = value
    return encode(photo(40, 60, seed=value), "JPEG", quality=90, exif=exif.tobytes())


def huge_exif() -> bytes:
    exif = Image.Exif()
    exif[0x010E] = "x" * 60000  # ImageDescription: an APP1 segment near its 64 KB maximum
    return encode(photo(), "JPEG", exif=exif.tobytes())


def animated(fmt: str) -> bytes:
    frames = [photo(seed=i) for i in range(3)]
    return encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100, loop=0)


def bad_crc_png() -> bytes:
    data = bytearray(encode(photo(), "PNG"))
    data[29] ^= 0xFF  # the last byte of IHDR's CRC (8 signature + 4 length + 4 type + 13 data)
    return bytes(data)


def palette_with_transparency() -> bytes:
    im = photo().convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    return encode(im, "PNG", transparency=0)


def icc_jpeg() -> bytes:
    from PIL import ImageCms

    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    return encode(photo(), "JPEG", icc_profile=profile)


def corpus() -> list[tuple[str, bytes, int, str | None]]:
    jpeg, png = encode(photo(), "JPEG"), encode(photo(), "PNG")
    grey16 = Image.fromarray((np.arange(48 * 64).reshape(48, 64) * 21).astype(np.uint16))
    cases = [
        ("empty.jpg", b"", 422, "empty_file"),
        ("notes.txt", b"just some text\n", 415, "unsupported_type"),
        ("page.png", b"<!doctype html><html><body>hello</body></html>", 415, "unsupported_type"),
        ("truncated.jpg", jpeg[: len(jpeg) // 2], 422, "corrupt_image"),
        ("truncated.png", png[: len(png) // 2], 422, "corrupt_image"),
        ("bad-crc.png", bad_crc_png(), 422, "corrupt_image"),
        ("png-magic-garbage.png", b"\x89PNG\r\n\x1a\n" + b"\x00garbage" * 20, 422, None),
        ("riff-garbage.webp", b"RIFF\x10\x00\x00\x00WEBPVP8 " + b"\x00" * 8, 422, None),
        ("bomb-30000.png", header_only_png(30000, 30000), 413, "too_many_pixels"),
        ("bomb-30000.jpg", header_only_jpeg(30000, 30000), 413, "too_many_pixels"),
        ("one-pixel.png", encode(photo(1, 1), "PNG"), 200, None),
        ("one-pixel.jpg", encode(photo(1, 1), "JPEG"), 200, None),
        ("cmyk.jpg", encode(photo(mode="CMYK"), "JPEG"), 200, None),
        ("grey16.png", encode(grey16, "PNG"), 200, None),
        ("palette-transparent.png", palette_with_transparency(), 200, None),
        ("grey-alpha.png", encode(photo(mode="LA"), "PNG"), 200, None),
        ("animated.gif", animated("GIF"), 415, "unsupported_type"),
        ("animated.webp", animated("WEBP"), 200, None),  # the first frame, as `rid protect` does
        ("huge-exif.jpg", huge_exif(), 200, None),
        *((f"orientation-{v}.jpg", with_orientation(v), 200, None) for v in range(1, 9)),
        ("icc.jpg", icc_jpeg(), 200, None),
        ("polyglot.jpg", jpeg + b"PK\x03\x04" + b"\x00" * 26 + b"zip payload", 200, None),
        ("bitmap.bmp", encode(photo(), "BMP"), 415, "unsupported_type"),
        ("scan.tiff", encode(photo(), "TIFF"), 415, "unsupported_type"),
        ("lossy.webp", encode(photo(), "WEBP", quality=80), 200, None),
    ]
    return cases
