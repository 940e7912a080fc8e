"""The checks of one protected photo, run by Pyodide inside the verify worker (verify-worker.js)
with ridpixels installed from the project's wheel. Every value on the Python side of a check is
computed here, by ridpixels' stdlib forms (the page has no numpy); the JavaScript side comes from
the pipeline that protected the photo. Results go back as JSON."""

import json
import sys

import ridpixels

WORKING_KEYS = ("side", "multiple", "max_long")


def about():
    return json.dumps({"python": sys.version, "platform": sys.platform, "ridpixels": ridpixels.__version__,
                       "ridpixels_file": ridpixels.__file__})


def first_difference(a, b):
    """(index, count) of the values where two equal-length sequences differ; (None, 0) if none."""
    diff = [i for i, (x, y) in enumerate(zip(a, b)) if x != y]
    return (diff[0] if diff else None), len(diff)


def check(params, original, protected, floats, js8):
    """params: JSON {width, height, png_width, png_height, channels, spec, tile, eps, working,
    origins}; original, protected: the decoded input and the output PNG's 8-bit values, one
    layout (RGB or RGBA, interleaved); floats and js8 (or None): the float output before
    rounding and the PNG's RGB values, both (H, W, 3) interleaved."""
    p = json.loads(params)
    h, w = p["height"], p["width"]
    checks = []

    def add(name, ok, js, python, detail):
        checks.append({"check": name, "ok": ok, "js": js, "python": python, "detail": detail})

    size = [p["png_height"], p["png_width"]]
    add("size", size == [h, w], size, [h, w], f"output PNG {size[1]}x{size[0]}, photo {w}x{h}")

    spec = {k: p["spec"][k] for k in WORKING_KEYS if k in p["spec"]}
    py = list(ridpixels.working_size(h, w, **spec))
    add("working_size", py == p["working"], p["working"], py, f"working_size({h}, {w}, {spec})")

    py = [list(o) for o in ridpixels.tile_origins(h, w, p["tile"])]
    js = p["origins"]
    at, n = first_difference(js, py)
    n += abs(len(js) - len(py))
    if at is None:
        at = min(len(js), len(py))
    short = max(len(js), len(py)) <= 16  # whole plans in the report, else the first difference
    add("tile_origins", n == 0, js if short else js[at:at + 1], py if short else py[at:at + 1],
        f"{len(py)} tile{'s' * (len(py) != 1)} of {p['tile']}" if n == 0 else
        f"{n} origins differ, first at tile {at} ({len(js)} tiles in JS, {len(py)} in Python)")

    original, protected = original.to_bytes(), protected.to_bytes()
    try:
        change = ridpixels.check_bound(original, protected, p["eps"])
        add("bound", True, p["eps"], change, f"max change {change} <= {p['eps']} levels over {len(original)} values")
    except ridpixels.BoundError as err:
        change = ridpixels.max_level_change(original, protected)
        add("bound", False, p["eps"], change, str(err))
    except ValueError as err:
        add("bound", False, len(protected), len(original), str(err))

    if floats is None:
        add("levels", None, None, None, "no float output (server backend): not checked")
    else:
        floats = floats.to_memoryview()
        js8, py8 = js8.to_bytes(), ridpixels.levels(floats)
        if len(js8) != len(py8):
            add("levels", False, len(js8), len(py8), "different numbers of values")
        elif js8 == py8:
            add("levels", True, len(js8), len(py8), f"{len(py8)} values rounded alike")
        else:
            at, n = first_difference(js8, py8)
            (y, x), ch = divmod(at // 3, w), at % 3
            add("levels", False, js8[at], py8[at],
                f"{n} of {len(py8)} values differ; first at y={y} x={x} channel {ch}: float {floats[at]!r}, JS {js8[at]}, Python {py8[at]}")
    return json.dumps(checks)
