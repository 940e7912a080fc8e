"""What /v1/protect does with an upload, off the event loop: sniff, decode, protect, encode."""

from __future__ import annotations

import time

from ridpixels import OUTPUT_FORMATS
from ridtrain.defender.protect import protect_bytes
from ridtrain.pixels import ImageError
from server_fallback.errors import ApiError

# Magic bytes, never the file name or the Content-Type.
MAGIC = {"jpeg": (b"\xff\xd8\xff",), "png": (b"\x89PNG\r\n\x1a\n",)}
# The `format` field: ridpixels.OUTPUT_FORMATS' names, and the old name of lossless WebP, which
# clients written before JPEG joined still send.
FORMAT_ALIASES = {"webp-lossless": "webp"}
FORMAT_CHOICES = (*OUTPUT_FORMATS, *FORMAT_ALIASES)
IMAGE_ERROR_STATUS = {"too_many_pixels": 413}  # every other ImageError (corrupt, truncated, odd mode, alpha as JPEG): 422


def output_format(name: str) -> str:
    """A `format` field's value (one of FORMAT_CHOICES) -> its OUTPUT_FORMATS name."""
    return FORMAT_ALIASES.get(name, name)


def sniff(data: bytes) -> str | None:
    """jpeg, png or webp from the first bytes; None for anything else."""
    for kind, prefixes in MAGIC.items():
        if data.startswith(prefixes):
            return kind
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return None


def protect_upload(protector, data: bytes, eps: int | None, fmt: str, keep_metadata: bool, max_pixels: int,
                   seed: bytes | None = None) -> tuple[bytes, float]:
    """(encoded protected image, milliseconds); `fmt` is an OUTPUT_FORMATS name. Raises ApiError
    for anything the client sent wrong, a photo with transparent parts asked for as JPEG included
    (422 alpha_not_supported)."""
    started = time.perf_counter()
    if not data:
        raise ApiError(422, "empty_file", "the uploaded file is empty")
    if sniff(data) is None:
        raise ApiError(415, "unsupported_type", "not a JPEG, PNG or WebP image (judged by its content, not its name)")
    try:
        out = protect_bytes(protector, data, eps, fmt, keep_metadata, max_pixels, seed=seed)
    except ImageError as err:
        # The magic bytes said JPEG/PNG/WebP: a file Pillow then cannot identify is a corrupt one.
        code = "corrupt_image" if err.code == "not_an_image" else err.code
        raise ApiError(IMAGE_ERROR_STATUS.get(code, 422), code, str(err)) from None
    return out, (time.perf_counter() - started) * 1000
