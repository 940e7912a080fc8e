"""`rid check EXPORT_DIR`: the parity suite for any export folder, one row per runtime.

    manifest      schema, every file's size and sha256, the fixture's index and its files
    pytorch       (with a checkpoint) the checkpoint recomputes the fixture's photos
    onnxruntime   every fp32 or lossless generator file, on the fixture's photos (tiled pipeline)
    server        /v1/protect over a socket (uvicorn), the fixture's photos with their seeds, 8-bit

Every row is held to the parity rule of ridexport.parity against the fixture (PyTorch's outputs,
written at export time): float max |Δ| <= FLOAT_TOL, >= MIN_IDENTICAL identical 8-bit values,
<= MAX_LEVELS levels. The server answers 8-bit PNGs only, so its row has no float column.
The browser rows (WASM with 1 and 2 threads, WebGPU, the widget) are still in tests/test_browser.py,
on the bundled export only (issue 13 is open).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import ridpixels
from ridexport.parity import FLOAT_TOL, MAX_LEVELS, MIN_IDENTICAL, compare, compare_8bit, fixture_photos, passes, self_check

RUNTIMES = ("manifest", "pytorch", "onnxruntime", "server")


@dataclass
class Row:
    runtime: str
    ok: bool
    cases: int = 0
    max_abs: float | None = None
    identical: float | None = None
    max_levels: int | None = None
    note: str = ""
    ran: bool = True  # False: not asked for (no --checkpoint); neither a pass nor a failure


def _row(runtime: str, stats: list[dict], note: str = "") -> Row:
    if not stats:
        return Row(runtime, False, note="nothing to check")
    floats = [s["max_abs"] for s in stats if s["max_abs"] is not None]
    return Row(runtime, all(passes(s) for s in stats), len(stats), max(floats) if floats else None,
               min(s["identical_8bit"] for s in stats), max(s["max_levels"] for s in stats), note)


def check_manifest(export: Path, checkpoint=None) -> Row:
    from ridexport.manifest import load_manifest

    manifest = load_manifest(export)
    for case, _, _ in fixture_photos(export / "fixture"):
        if not (export / "fixture" / case["protected_png"]).is_file():
            raise FileNotFoundError(f"fixture file {case['protected_png']} is missing")
    return Row("manifest", True, len(manifest["files"]), note=f"{len(manifest['files'])} files, sha256 match")


def check_pytorch(export: Path, checkpoint=None) -> Row:
    from ridtrain.generators import load_generator
    from ridtrain.protect import protected_float

    if checkpoint is None:
        return Row("pytorch", True, ran=False, note="not run: no --checkpoint")
    gen = load_generator(checkpoint)
    stats = [compare(expected, protected_float(gen, rgb, case["eps_levels"], seed=case.get("seed")).numpy())
             for case, rgb, expected in fixture_photos(export / "fixture")]
    return _row("pytorch", stats, "the checkpoint against the fixture")


def check_onnxruntime(export: Path, checkpoint=None) -> Row:
    from ridexport.manifest import load_manifest
    from ridexport.runtime import OnnxProtector

    manifest = load_manifest(export)
    generators = [name for name, e in manifest["files"].items() if e.get("role", "generator") == "generator"
                  and (e["precision"] == "fp32" or e.get("lossless"))]  # lossy variants are measured, not held to the rule
    stats = [s for name in generators for s in self_check(OnnxProtector(export, name)).values()]
    return _row("onnxruntime", stats, ", ".join(generators))


def check_server(export: Path, checkpoint=None) -> Row:
    import httpx
    from PIL import Image

    from server_fallback.launch import running
    from server_fallback.settings import Settings

    with running(Settings(model=str(export), rate_limit="100000/minute")) as (url, _):
        stats = []
        for case, rgb, expected in fixture_photos(export / "fixture"):
            data = {"eps": str(case["eps_levels"]), **({"seed": case["seed"]} if case.get("seed") else {})}
            files = {"file": (case["input_png"], (export / "fixture" / case["input_png"]).read_bytes(), "image/png")}
            r = httpx.post(url + "/v1/protect", data=data, files=files, timeout=120)
            if r.status_code != 200:
                raise RuntimeError(f"HTTP {r.status_code}: {r.text[:200]}")
            got = np.asarray(Image.open(io.BytesIO(r.content)).convert("RGB"))
            ridpixels.check_bound(rgb, got, case["eps_levels"])
            stats.append(compare_8bit(ridpixels.to_uint8(expected), got))
    return _row("server", stats, "8-bit PNGs")


CHECKS = {"manifest": check_manifest, "pytorch": check_pytorch, "onnxruntime": check_onnxruntime, "server": check_server}


def run_check(export: str | Path, checkpoint=None, runtimes=RUNTIMES) -> list[Row]:
    """One Row per runtime; a runtime that raises is a failed row with the error as its note."""
    rows = []
    for runtime in runtimes:
        try:
            rows.append(CHECKS[runtime](Path(export), checkpoint))
        except Exception as err:  # noqa: BLE001  (every failure is reported in its row)
            rows.append(Row(runtime, False, note=f"{type(err).__name__}: {err}"[:300]))
    return rows


def print_table(rows: list[Row], console=None) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"parity rule: float <= {FLOAT_TOL}, >= {MIN_IDENTICAL:.1%} identical 8-bit, <= {MAX_LEVELS} level")
    for column in ("runtime", "result", "cases", "max |Δ|", "identical 8-bit", "worst levels", "note"):
        table.add_column(column)
    for r in rows:
        table.add_row(r.runtime, "not run" if not r.ran else "pass" if r.ok else "FAIL", str(r.cases),
                      "-" if r.max_abs is None else f"{r.max_abs:.2e}", "-" if r.identical is None else f"{r.identical:.4%}",
                      "-" if r.max_levels is None else str(r.max_levels), r.note)
    console = console or Console()
    if not console.is_terminal:  # a log or a pipe: wide enough for every column
        console.width = max(console.width, 130)
    console.print(table)
