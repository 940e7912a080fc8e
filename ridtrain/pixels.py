"""The one canonical pixel pipeline. The browser (onnxruntime-web) and the server reproduce it;
change a rule here and in their fixtures together. Its torch-free rules (the working size, the
tile plan, the 8-bit rounding, the bound check) are defined in ridpixels; this module calls them.

    file --load_image--> Decoded(rgb uint8 HxWx3, alpha uint8 HxW | None, exif, icc)
         --to_float-->   x = v / 255, float32 (1,3,H,W)
         --to_working--> x at working_size(H, W): shorter side = the model's working_side, multiples of its stride
         --generator-->  delta, |delta| <= eps
         --delta_to_full--> delta at (H, W), clamped to [-eps, eps]
         --to_uint8-->   rint(clamp(x + delta, 0, 1) * 255)   (round half to even)
         --save_image--> PNG or WebP (lossless) or JPEG (ridpixels.OUTPUT_FORMATS), written
                         atomically; alpha untouched (JPEG has none: a photo with transparent
                         parts is refused, ImageError alpha_not_supported)

Decoding rules (Pillow, no colour management):
- Formats: JPEG (MPO files open as JPEG), PNG (and APNG), WebP, BMP, TIFF, GIF. Animated: the first frame.
- The header size is checked before any pixel is decoded: W*H > MAX_PIXELS -> ImageError.
- Truncated or corrupt data is an error (full decode, LOAD_TRUNCATED_IMAGES is never set).
- EXIF orientation is applied, so pixels come out the way they are meant to be seen; the EXIF
  kept in `Decoded.exif` has its orientation tag reset to 1 to match.
- The ICC profile is carried through untouched to the output, never applied.
- Modes: 1, L, P, CMYK, YCbCr, RGB -> Pillow's convert("RGB"). Anything with an alpha band,
  or with a `transparency` key (P, L, RGB with tRNS) -> Pillow's convert("RGBA"), and the alpha
  is kept untouched. 16-bit grey (I;16, I;16L, I;16B, I;16N) and 32-bit I are read as 0..65535
  (I is clipped to that range) and reduced with round(v * 255 / 65535) == (v + 128) // 257
  (v/257 is never a tie, so the integer form is exact). F is on Pillow's 0..255 scale:
  rint, clipped to 0..255.
- 16-bit RGB(A) PNGs (and 16-bit grey+alpha, which Pillow 13 widens to RGBA): Pillow has no
  16-bit colour mode and decodes them to 8 bits by keeping the high byte, v >> 8. We cannot see
  the low byte, so we accept this; it differs from the grey rule by at most one level.

Resizing rules (to be exported to ONNX, so only F.interpolate bilinear, align_corners=False):
- to_working: antialias=True, always. Shrinking needs it (a photo of 4000 px seen through
  plain bilinear is aliased, unlike the attacker's antialiased resize); when enlarging,
  torch's antialiased bilinear equals plain bilinear (to ~1e-7), so one rule serves both.
- delta_to_full: antialias=False, then clamp to [-eps, eps]. Bilinear weights are convex,
  so the clamp only removes float error.

8-bit rule (to_uint8): q = rint(x * 255) with x * 255 computed in float32, round half to
even, clamped to 0..255 -- what a browser's Uint8ClampedArray does with the same float.
"""

from __future__ import annotations

import io
import os
import secrets
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageFile, ImageOps

import ridpixels

MAX_PIXELS = 64 * 2**20  # 67 108 864: a "64 MP" phone photo (9248 x 6936) still passes
FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF")  # never EPS & co. (Ghostscript)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif")  # files we look for
GREY16_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")
# How Pillow writes each of ridpixels.OUTPUT_FORMATS (the one list of choices; the quality comes
# from it). A format added there without a line here fails at import.
# - PNG: zlib level 6, Pillow's default. optimize=True (level 9) is 2-5 % smaller and 5-8x slower
#   on the bundled model's output: for 2560x1600 TwoWings.jpg, 3.91 MB in 1.3 s against 3.73 MB
#   in 11 s (two CPU cores), too slow a price for the server and `rid protect`.
# - JPEG: 4:2:0 chroma subsampling, Pillow's default and what Chromium's canvas encoder (the page)
#   gives; optimize=True (Huffman tables: smaller, the same pixels).
# - WebP: lossless; exact=True keeps the RGB under alpha 0.
_PILLOW = {"png": dict(format="PNG", compress_level=6), "jpeg": dict(format="JPEG", subsampling="4:2:0", optimize=True),
           "webp": dict(format="WEBP", lossless=True, exact=True)}
SAVE_OPTIONS = {fmt: {**_PILLOW[fmt], **({"quality": spec["quality"]} if "quality" in spec else {})}
                for fmt, spec in ridpixels.OUTPUT_FORMATS.items()}
ALPHA_NOT_SUPPORTED = "this photo has transparent parts, which JPEG cannot keep: choose PNG or WebP"
ORIENTATION = 0x0112


def is_image_path(rel: Path) -> bool:
    """Files that folder scans pick up: an image suffix and no hidden part (".thumbnails/", macOS
    "._x.jpg", our own temp files). `rel` is relative to the folder scanned."""
    return rel.suffix.lower() in IMAGE_SUFFIXES and not any(part.startswith(".") for part in rel.parts)


class ImageError(ValueError):
    """A file that cannot be used as a photo; the message is a short reason, `code` a stable
    name for it: not_an_image, too_many_pixels, corrupt_image, unsupported_mode, or
    alpha_not_supported (a photo with transparent parts asked for as JPEG)."""

    def __init__(self, message: str, code: str = "corrupt_image"):
        super().__init__(message)
        self.code = code


@dataclass
class Decoded:
    rgb: np.ndarray  # uint8 (H, W, 3), display orientation
    alpha: np.ndarray | None  # uint8 (H, W), untouched
    exif: bytes | None  # orientation tag reset to 1; None when the file has no EXIF
    icc_profile: bytes | None


# ----------------------------------------------------------------------------- decoding


def load_image(src: str | Path | bytes, max_pixels: int = MAX_PIXELS) -> Decoded:
    """Decode a photo by the rules at the top of this module; raises ImageError."""
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        raise RuntimeError("PIL.ImageFile.LOAD_TRUNCATED_IMAGES is set; refusing to decode truncated files")
    data = Path(src).read_bytes() if isinstance(src, (str, Path)) else bytes(src)
    if not data:
        raise ImageError("not an image (empty file)", "not_an_image")
    with _pillow_errors():
        im = Image.open(io.BytesIO(data), formats=FORMATS)
        w, h = im.size
        if w * h > max_pixels:
            raise ImageError(f"too many pixels: {w}x{h} = {w * h / 1e6:.1f} MP > limit {max_pixels / 1e6:.1f} MP", "too_many_pixels")
        im.load()  # the whole first frame: truncation and corruption surface here
        oriented = ImageOps.exif_transpose(im)
        exif, icc = _exif_bytes(im), im.info.get("icc_profile")  # from the file as stored
    rgb, alpha = _to_rgb8(oriented)
    return Decoded(rgb=rgb, alpha=alpha, exif=exif, icc_profile=icc)


@contextmanager
def _pillow_errors():
    """Pillow's many failure modes -> ImageError with a short reason; bomb warnings are errors."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageError(f"too many pixels: {e}", "too_many_pixels") from None
    except Image.UnidentifiedImageError:
        raise ImageError("not an image (cannot identify image file)", "not_an_image") from None
    except Exception as e:  # hostile files make Pillow raise OSError, SyntaxError, EOFError, struct.error, ...
        raise ImageError(f"corrupt or truncated image ({type(e).__name__}: {e})") from None


def _exif_bytes(im: Image.Image) -> bytes | None:
    """The EXIF block with orientation reset to 1 (the pixels are transposed), or None. Call it
    after exif_transpose: it edits `im`'s EXIF in place."""
    exif = im.getexif()
    if not exif:
        return None
    if ORIENTATION in exif:
        exif[ORIENTATION] = 1
    return exif.tobytes()


def _to_rgb8(im: Image.Image) -> tuple[np.ndarray, np.ndarray | None]:
    """(rgb uint8 HxWx3, alpha uint8 HxW or None) by the mode rules at the top of this module."""
    if im.mode in GREY16_MODES or im.mode == "F":
        return _grey_to_rgb8(im)
    has_alpha = any(b in ("A", "a") for b in im.getbands()) or "transparency" in im.info
    try:
        rgba = np.asarray(im.convert("RGBA" if has_alpha else "RGB"))
    except ValueError as e:
        raise ImageError(f"unsupported colour mode {im.mode} ({e})", "unsupported_mode") from None
    return np.ascontiguousarray(rgba[..., :3]), (np.ascontiguousarray(rgba[..., 3]) if has_alpha else None)


def _grey_to_rgb8(im: Image.Image) -> tuple[np.ndarray, np.ndarray | None]:
    """16-bit and 32-bit grey: (v + 128) // 257 == round(v * 255 / 65535); F: rint on 0..255."""
    v = np.asarray(im)
    if im.mode == "F":
        g = np.clip(np.rint(v), 0, 255).astype(np.uint8)
    else:
        g = ((np.clip(v.astype(np.int64), 0, 65535) + 128) // 257).astype(np.uint8)
    key = im.info.get("transparency")  # tRNS of a 16-bit grey PNG: one grey value is transparent
    alpha = np.where(v == key, 0, 255).astype(np.uint8) if isinstance(key, int) else None
    return np.repeat(g[..., None], 3, axis=2), alpha


# ----------------------------------------------------------------------------- geometry


# The working-size rule lives in ridpixels (torch-free, written to run under Pyodide too).
MAX_LONG, working_size = ridpixels.MAX_LONG, ridpixels.working_size


def to_working(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """The [0,1] image (N,3,H,W) resized to the working size; bilinear, antialias=True."""
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)


def working_image(x: torch.Tensor, side: int = 512, multiple: int = 16, max_long: int = MAX_LONG) -> torch.Tensor:
    """x (N,3,H,W) brought to working_size(H, W, side, multiple, max_long) by to_working."""
    return to_working(x, working_size(*x.shape[-2:], side=side, multiple=multiple, max_long=max_long))


def delta_to_full(delta: torch.Tensor, size: tuple[int, int], eps: float) -> torch.Tensor:
    """delta (N,3,hw,ww) back to the photo's (H, W); bilinear, antialias=False, clamped to +-eps."""
    full = F.interpolate(delta, size=size, mode="bilinear", align_corners=False, antialias=False)
    return full.clamp_(-eps, eps)


def add_delta(x: torch.Tensor, delta: torch.Tensor, eps: float) -> torch.Tensor:
    """The photo x (1,3,H,W) plus a working-size delta: delta_to_full, add, clamp to [0,1]."""
    return (x + delta_to_full(delta, tuple(x.shape[-2:]), eps)).clamp_(0.0, 1.0)


def apply_delta(x: torch.Tensor, delta: torch.Tensor, eps: float) -> np.ndarray:
    """add_delta as 8-bit (H,W,3)."""
    return to_uint8(add_delta(x, delta, eps))


# ----------------------------------------------------------------------------- 8 bits <-> float


def to_float(rgb: np.ndarray) -> torch.Tensor:
    """uint8 (H,W,3) -> float32 (1,3,H,W) in [0,1], v / 255 (ridpixels.to_float)."""
    return torch.from_numpy(ridpixels.to_float(rgb))


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """float (1,3,H,W) on the [0,1] scale -> uint8 (H,W,3) by the 8-bit rule (ridpixels.to_uint8):
    rint(x * 255) in float32, half to even, clamped to 0..255."""
    return ridpixels.to_uint8(x.detach().float().cpu().numpy())


# ----------------------------------------------------------------------------- encoding


def check_format(fmt: str, alpha: np.ndarray | None = None) -> None:
    """ValueError for a format outside ridpixels.OUTPUT_FORMATS; ImageError alpha_not_supported
    for JPEG of a photo with transparent parts (an alpha below 255 anywhere; a fully opaque alpha
    band is dropped). Callers check before protecting, so that no work is spent on a refusal."""
    if fmt not in SAVE_OPTIONS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(SAVE_OPTIONS)}")
    if fmt == "jpeg" and alpha is not None and int(alpha.min(initial=255)) < 255:
        raise ImageError(ALPHA_NOT_SUPPORTED, "alpha_not_supported")


def encode_image(
    rgb: np.ndarray,
    alpha: np.ndarray | None = None,
    fmt: str = "png",
    exif: bytes | None = None,
    icc: bytes | None = None,
) -> bytes:
    """The photo as `fmt` (SAVE_OPTIONS) in memory: lossless PNG or WebP (exact=True keeps RGB
    under alpha 0), or JPEG at the table's quality, which keeps no alpha (check_format). EXIF is
    written only when given; the ICC profile whenever given."""
    check_format(fmt, alpha)
    if fmt == "jpeg":
        alpha = None  # fully opaque (check_format): nothing is lost
    pixels = rgb if alpha is None else np.dstack([rgb, alpha])
    extra = {k: v for k, v in (("exif", exif), ("icc_profile", icc)) if v is not None}
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels)).save(buf, **SAVE_OPTIONS[fmt], **extra)
    return buf.getvalue()


def save_image(
    path: str | Path,
    rgb: np.ndarray,
    alpha: np.ndarray | None = None,
    fmt: str = "png",
    exif: bytes | None = None,
    icc: bytes | None = None,
) -> None:
    """encode_image, written atomically (write_atomic)."""
    write_atomic(path, encode_image(rgb, alpha, fmt, exif, icc))


def write_atomic(path: str | Path, data: bytes) -> None:
    """Write to a temporary name in the same folder, then os.replace it into place: a crash never
    leaves a partial `path`."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # 0o666 & ~umask, like open()
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
