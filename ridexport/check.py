"""`rid check EXPORT_DIR`: the parity suite for any export folder, one row per runtime.

    manifest      schema, every file's size and sha256, the fixture's index and its files
    pytorch       (with a checkpoint) the checkpoint recomputes the fixture's photos
    onnxruntime   every generator file the manifest lists, on the fixture's photos (tiled pipeline)
    server        /v1/protect over a socket (uvicorn), the fixture's photos with their seeds, 8-bit

Every row is held to the parity rule of ridexport.parity against the fixture (PyTorch's outputs,
written at export time): float max |Δ| <= FLOAT_TOL, >= MIN_IDENTICAL identical 8-bit values,
<= MAX_LEVELS levels. The server answers 8-bit PNGs only, so its row has no float column.
The browser rows (WASM with 1 and 2 threads, WebGPU, the widget) are still in tests/test_browser.py,
on the bundled export only (issue 13 is open).
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import ridpixels
from ridexport.parity import FLOAT_TOL, MAX_LEVELS, MIN_IDENTICAL, compare, passes

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


@dataclass
class Fixture:
    folder: Path
    photos: list = field(default_factory=list)

    @classmethod
    def of(cls, export: Path) -> "Fixture":
        folder = export / "fixture"
        index = json.loads((folder / "parity.json").read_text())
        if not index.get("photos"):
            raise ValueError(f"{folder}/parity.json lists no photos")
        return cls(folder, index["photos"])

    def input_rgb(self, case) -> np.ndarray:
        from ridtrain.pixels import load_image

        return load_image(self.folder / case["input_png"]).rgb

    def expected(self, case) -> np.ndarray:
        return np.fromfile(self.folder / case["protected_f32"], dtype="<f4").reshape(1, 3, case["height"], case["width"])


def _row(runtime: str, stats: list[dict], note: str = "") -> Row:
    floats = [s["max_abs"] for s in stats if s.get("max_abs") is not None]
    return Row(runtime, all(_passes(s) for s in stats) and bool(stats), len(stats), max(floats) if floats else None,
               min(s["identical_8bit"] for s in stats), max(s["max_levels"] for s in stats), note)


def _passes(stats: dict) -> bool:
    if stats.get("max_abs") is None:  # 8-bit only
        return stats["identical_8bit"] >= MIN_IDENTICAL and stats["max_levels"] <= MAX_LEVELS
    return passes(stats)


def _compare8(expected8: np.ndarray, got8: np.ndarray) -> dict:
    a, b = expected8.astype(int), got8.astype(int)
    if a.shape != b.shape:
        return {"max_abs": None, "identical_8bit": 0.0, "max_levels": 255}
    return {"max_abs": None, "identical_8bit": float((a == b).mean()), "max_levels": int(np.abs(a - b).max())}


def check_manifest(export: Path, checkpoint=None) -> Row:
    from ridexport.manifest import load_manifest

    manifest = load_manifest(export)
    fixture = Fixture.of(export)
    for case in fixture.photos:
        for key in ("input_png", "protected_f32", "protected_png"):
            if not (fixture.folder / case[key]).is_file():
                raise FileNotFoundError(f"fixture file {case[key]} is missing")
    return Row("manifest", True, len(manifest["files"]), note=f"{len(manifest['files'])} files, sha256 match")


def check_pytorch(export: Path, checkpoint=None) -> Row:
    from ridtrain.generators import load_generator
    from ridtrain.protect import protected_float

    if checkpoint is None:
        return Row("pytorch", True, note="not run: no --checkpoint")
    gen, fixture = load_generator(checkpoint), Fixture.of(export)
    stats = [compare(fixture.expected(c), protected_float(gen, fixture.input_rgb(c), c["eps_levels"], seed=c.get("seed")).numpy())
             for c in fixture.photos]
    return _row("pytorch", stats, "the checkpoint against the fixture")


def check_onnxruntime(export: Path, checkpoint=None) -> Row:
    from ridexport.manifest import load_manifest
    from ridexport.runtime import OnnxProtector

    manifest, fixture = load_manifest(export), Fixture.of(export)
    generators = [name for name, e in manifest["files"].items() if e.get("role", "generator") == "generator"
                  and (e["precision"] == "fp32" or e.get("lossless"))]  # lossy variants are measured, not held to the rule
    stats = []
    for name in generators:
        protector = OnnxProtector(export, name)
        stats += [compare(fixture.expected(c), protector.protected_float(fixture.input_rgb(c), c["eps_levels"], c.get("seed")))
                  for c in fixture.photos]
    return _row("onnxruntime", stats, ", ".join(generators))


def check_server(export: Path, checkpoint=None) -> Row:
    import httpx
    from PIL import Image

    from server_fallback.launch import running
    from server_fallback.settings import Settings

    fixture = Fixture.of(export)
    with running(Settings(model=str(export), rate_limit="100000/minute")) as (url, _):
        stats = []
        for case in fixture.photos:
            data = {"eps": str(case["eps_levels"]), **({"seed": case["seed"]} if case.get("seed") else {})}
            files = {"file": (case["input_png"], (fixture.folder / case["input_png"]).read_bytes(), "image/png")}
            r = httpx.post(url + "/v1/protect", data=data, files=files, timeout=120)
            if r.status_code != 200:
                raise RuntimeError(f"HTTP {r.status_code}: {r.text[:200]}")
            got = np.asarray(Image.open(io.BytesIO(r.content)).convert("RGB"))
            ridpixels.check_bound(fixture.input_rgb(case), got, case["eps_levels"])
            stats.append(_compare8(ridpixels.to_uint8(fixture.expected(case)), got))
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
        table.add_row(r.runtime, "pass" if r.ok else "FAIL", str(r.cases),
                      "-" if r.max_abs is None else f"{r.max_abs:.2e}", "-" if r.identical is None else f"{r.identical:.4%}",
                      "-" if r.max_levels is None else str(r.max_levels), r.note)
    console = console or Console()
    if not console.is_terminal:  # a log or a pipe: wide enough for every column
        console.width = max(console.width, 130)
    console.print(table)
