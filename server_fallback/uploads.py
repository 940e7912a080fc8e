"""What /v1/protect does with an upload, off the event loop: sniff, decode, protect, encode."""

from __future__ import annotations

import time

from ridtrain.defender.protect import protect_bytes
from ridtrain.pixels import ImageError
from server_fallback.errors import ApiError

# Magic bytes, never the file name or the Content-Type.
MAGIC = {"jpeg": (b"\xff\xd8\xff",), "png": (b"\x89PNG\r\n\x1a\n",)}
FORMATS = {"png": ("png", "image/png"), "webp-lossless": ("webp", "image/webp")}
IMAGE_ERROR_STATUS = {"too_many_pixels": 413}  # every other ImageError (corrupt, truncated, odd mode): 422


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
    """(encoded protected image, milliseconds); raises ApiError for anything the client sent wrong."""
    started = time.perf_counter()
    if not data:
        raise ApiError(422, "empty_file", "the uploaded file is empty")
    if sniff(data) is None:
        raise ApiError(415, "unsupported_type", "not a JPEG, PNG or WebP image (judged by its content, not its name)")
    try:
        out = protect_bytes(protector, data, eps, FORMATS[fmt][0], keep_metadata, max_pixels, seed=seed)
    except ImageError as err:
        # The magic bytes said JPEG/PNG/WebP: a file Pillow then cannot identify is a corrupt one.
        code = "corrupt_image" if err.code == "not_an_image" else err.code
        raise ApiError(IMAGE_ERROR_STATUS.get(code, 422), code, str(err)) from None
    return out, (time.perf_counter() - started) * 1000
