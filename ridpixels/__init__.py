"""The pixel policy without torch: the working-size rule, the tile plan, the 8-bit rounding and the
bound check. One file of pure Python, so that the same file serves the Python runtimes (the
server, `rid protect --backend onnx`, the parity suite) and, built into a pure-Python wheel, the
browser under Pyodide (web/src/verify/), where it checks the JavaScript pipeline from inside the
page.

The integer rules are plain Python. The array rules take numpy arrays where numpy is installed
(the Python runtimes), and flat sequences of float32 or 8-bit values otherwise: Pyodide can load
numpy only from a wheel built for it, which this project cannot ship (the npm package `pyodide`
carries none), so the page runs the stdlib forms. tests/test_ridpixels.py holds the two forms of
each rule to each other; ridtrain/pixels.py and web/src/shared/pipeline.js call or mirror these.

    working_size(h, w, side, multiple, max_long)  (hw, ww) the generator sees
    tile_origins(h, w, tile)                      top-left corners of the tiles, row-major
    to_float(rgb) / to_uint8(x)                   uint8 (H,W,3) <-> float32 (1,3,H,W), numpy
    levels(values)                                the 8-bit rule on a flat float32 sequence, stdlib
    check_bound(original, protected, eps_levels)  no 8-bit value moved by more than eps levels
    OUTPUT_FORMATS, protected_name(name, fmt)     the files a person may download, and their names
"""

from __future__ import annotations

import operator
from array import array

__version__ = "0.1.0"
MAX_LONG = 2048  # the working size's cap on the longer side, for every model


# The output formats a person may choose: the same choices in the page, its zip, `rid protect` and
# the server (web/src/shared/formats.js mirrors this table; tests/test_web_page.py holds them equal).
# PNG and WebP are lossless; JPEG is the smaller file for upload forms with size limits, at a
# quality whose protection the efficacy report measures (docs/efficacy).
OUTPUT_FORMATS = {
    "png": {"extension": "png", "media_type": "image/png", "lossless": True},
    "jpeg": {"extension": "jpg", "media_type": "image/jpeg", "lossless": False, "quality": 90},
    "webp": {"extension": "webp", "media_type": "image/webp", "lossless": True},
}


def protected_name(name: str, fmt: str = "png") -> str:
    """The protected copy's file name: NAME.protected.EXT, so that it is never mistaken for (or
    saved over) the original. `name` may carry a folder; only its last part is kept."""
    if fmt not in OUTPUT_FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(OUTPUT_FORMATS)}")
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    dot = base.rfind(".")
    stem = base[:dot] if dot > 0 else base
    return f"{stem or 'photo'}.protected.{OUTPUT_FORMATS[fmt]['extension']}"


class BoundError(ValueError):
    """A protected photo with a value further than eps levels from the original's."""


# ----------------------------------------------------------------------------- geometry


def working_size(h: int, w: int, side: int = 512, multiple: int = 16, max_long: int = MAX_LONG) -> tuple[int, int]:
    """(hw, ww) the generator sees: the shorter side scaled to `side`, each dimension rounded to
    the nearest multiple of `multiple` (halves up, at least `multiple`), and the longer one then
    capped at max_long rounded to `multiple`. The cap changes the aspect ratio on purpose: the
    shorter side keeps its 512 px, as in the attacker's "resize shorter side to 512, crop 512".
    Integer arithmetic only, so that JavaScript gets the same numbers:
        dim -> max(multiple, floor((2*dim*side + short*multiple) / (2*short*multiple)) * multiple)
    """
    if min(h, w, side, multiple, max_long) < 1:
        raise ValueError(f"sizes must be positive, got h={h} w={w} side={side} multiple={multiple} max_long={max_long}")
    short = min(h, w)
    cap = max(multiple, (2 * max_long + multiple) // (2 * multiple) * multiple)

    def scale(dim: int) -> int:
        return min(cap, max(multiple, (2 * dim * side + short * multiple) // (2 * short * multiple) * multiple))

    return scale(h), scale(w)


def tile_origins(h: int, w: int, tile: int) -> list[tuple[int, int]]:
    """Top-left corners of the tiles, row-major: the order in which shrink parts are added
    (ridexport/tiles.py). A tile is rgb[r:r+tile, c:c+tile], cut short at the photo's edges."""
    if tile < 1:
        raise ValueError(f"tile must be positive, got {tile}")
    return [(r, c) for r in range(0, h, tile) for c in range(0, w, tile)]


# ----------------------------------------------------------------------------- 8 bits <-> float


def to_float(rgb):
    """uint8 (H,W,3) -> float32 (1,3,H,W) in [0,1], v / 255 (a float32 division), numpy."""
    import numpy as np

    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected uint8 (H, W, 3), got {rgb.dtype} {rgb.shape}")
    return np.ascontiguousarray(rgb.transpose(2, 0, 1)[None], dtype=np.float32) / np.float32(255.0)


def to_uint8(x):
    """float (1,3,H,W) on the [0,1] scale -> uint8 (H,W,3): rint(x * 255) with the product in
    float32, half to even, clamped to 0..255, numpy. What a browser's Uint8ClampedArray does
    with Math.fround(x * 255)."""
    import numpy as np

    q = np.rint(np.asarray(x, dtype=np.float32) * np.float32(255.0))  # (1, 3, H, W), float32
    return np.ascontiguousarray(np.clip(q, 0, 255).astype(np.uint8)[0].transpose(1, 2, 0))


def levels(values) -> bytes:
    """The 8-bit rule of to_uint8 on a flat sequence of float32 values (a memoryview of a
    Float32Array, an array('f'), a list), without numpy: the float32 product is exact in double
    and rounded once by array('f'), round() is half to even."""
    products = array("f", [v * 255.0 for v in values])
    return bytes(0 if q < 0 else 255 if q > 255 else q for q in map(round, products))


# ----------------------------------------------------------------------------- the bound


def max_level_change(original, protected) -> int:
    """The largest |protected - original| over all 8-bit values: numpy arrays of one shape, or
    two bytes-like objects of one length (any layout, as long as both share it)."""
    if hasattr(original, "dtype") and hasattr(protected, "dtype"):
        import numpy as np

        if original.shape != protected.shape:
            raise ValueError(f"shapes differ: {original.shape} and {protected.shape}")
        if original.size == 0:
            return 0
        return int(np.abs(original.astype(np.int16) - protected.astype(np.int16)).max())
    a, b = memoryview(original).cast("B"), memoryview(protected).cast("B")
    if len(a) != len(b):
        raise ValueError(f"lengths differ: {len(a)} and {len(b)} values")
    return max(map(abs, map(operator.sub, a, b)), default=0)


def check_bound(original, protected, eps_levels: int) -> int:
    """max_level_change, raising BoundError when it exceeds eps_levels: a protected photo that
    breaks its bound is never handed out."""
    change = max_level_change(original, protected)
    if change > eps_levels:
        raise BoundError(f"a value moved by {change} levels, over the bound of {eps_levels}")
    return change
