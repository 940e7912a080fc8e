"""`rid check EXPORT_DIR`: the parity suite for any export folder, one row per runtime.

    manifest      schema, every file's size and sha256, the fixture's index and its files, and
                  that PyTorch changed every fixture photo (else parity would be shown on nothing)
    pytorch       (with a checkpoint) the checkpoint recomputes the fixture's photos
    onnxruntime   every fp32 or lossless generator file, on the fixture's photos (tiled pipeline)
    server        /v1/protect over a socket (uvicorn), the fixture's photos with their seeds, 8-bit
    wasm-1-thread   Chromium, onnxruntime-web WASM on a page that is not cross-origin isolated
    wasm-2-threads  the same on the app's page (isolated: 2 threads)
    webgpu        Chromium's WebGPU on SwiftShader: the generator graph on the fixture's small
                  cases, then its first photo through the whole pipeline
    widget        <rid-protect> on a host page: a fixture photo chosen in the host's form comes
                  back in it protected, within the bound, at its size; from a deterministic
                  generator equal to the fixture, from a randomised one (a fresh seed that no one
                  can give it) changed in at least half as many values as PyTorch changes

The browser rows need Chromium (--chromium), the built web app (--web-dist) and playwright; where
one is missing they are "not run", saying which. Every page comes from one server app serving the
web app and this export over HTTP on 127.0.0.1, so the app and the widget use this export's
manifest, not the bundled one.

Every row is held to the parity rule of ridexport.parity against the fixture (PyTorch's outputs,
written at export time): float max |Δ| <= FLOAT_TOL, >= MIN_IDENTICAL identical 8-bit values,
<= MAX_LEVELS levels. The server and the widget answer 8-bit PNGs only, so their rows have no float column. Every
8-bit output is also held to the bound (ridpixels.check_bound) against its input.
"""

from __future__ import annotations

import io
import json
import shutil
import tempfile
from contextlib import ExitStack
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

import ridpixels
from ridexport.parity import FLOAT_TOL, MAX_LEVELS, MIN_IDENTICAL, compare, compare_8bit, fixture_entries, passes, self_check

RUNTIMES = ("manifest", "pytorch", "onnxruntime", "server", "wasm-1-thread", "wasm-2-threads", "webgpu", "widget")
BROWSER_RUNTIMES = RUNTIMES[4:]


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


class NotRun(Exception):
    """This runtime cannot run here (no checkpoint, no Chromium, ...): the reason is the row's note."""


class Runtimes:
    """What the rows of one check share, started on first use and closed once: the export's
    fixture, the server app over a socket, Chromium."""

    def __init__(self, export: Path, checkpoint=None, web_dist: Path | None = None, chromium: str | None = None):
        from ridexport.browser import CHROMIUM
        from server_fallback.settings import WEB_DIST

        self.export, self.checkpoint = export, checkpoint
        self.web_dist, self.chromium = Path(web_dist or WEB_DIST), chromium or CHROMIUM
        self.fixture = export / "fixture"
        self._stack = ExitStack()
        self._url = self._playwright = None
        self._browsers = {}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._stack.close()

    def photos(self):
        return fixture_entries(self.fixture)

    @cached_property
    def manifest(self) -> dict:
        """manifest.json as it stands, read once (the manifest row is what validates it)."""
        return json.loads((self.export / "manifest.json").read_text())

    def manifest_url(self) -> str:
        return f"/models/{self.manifest['name']}/manifest.json"

    def server(self) -> str:
        from server_fallback.launch import running
        from server_fallback.settings import Settings

        if self._url is None:  # /healthz: a failing self-check shows in the answers at once
            settings = Settings(model=str(self.export), web_dist=self.web_dist, rate_limit="100000/minute")
            self._url, _ = self._stack.enter_context(running(settings, ready_path="/healthz"))
        return self._url

    def page(self, *chromium_args: str):
        """A new page (its own context, closed with the check) of a Chromium started with these args."""
        from ridexport.browser import launch

        if not Path(self.chromium).is_file():
            raise NotRun(f"not run: no Chromium at {self.chromium} (scripts/setup.sh installs it; or --chromium PATH)")
        if not (self.web_dist / "index.html").is_file():
            raise NotRun(f"not run: the web app is not built in {self.web_dist} (scripts/setup.sh builds it)")
        if self._playwright is None:
            try:
                from playwright.sync_api import sync_playwright
            except ImportError:
                raise NotRun("not run: playwright is not installed (pip install -e '.[test]')") from None
            self._playwright = self._stack.enter_context(sync_playwright())
        if chromium_args not in self._browsers:
            self._browsers[chromium_args] = launch(self._playwright, *chromium_args, executable=self.chromium)
            self._stack.callback(self._browsers[chromium_args].close)
        context = self._browsers[chromium_args].new_context()
        self._stack.callback(context.close)
        return context.new_page()


def _row(runtime: str, stats: list[dict], note: str = "") -> Row:
    if not stats:
        return Row(runtime, False, note="nothing to check")
    floats = [s["max_abs"] for s in stats if s["max_abs"] is not None]
    return Row(runtime, all(passes(s) for s in stats), len(stats), max(floats) if floats else None,
               min(s["identical_8bit"] for s in stats), max(s["max_levels"] for s in stats), note)


def _browser_stats(fixture: Path, case: dict, rgb: np.ndarray, expected: np.ndarray, got: dict) -> dict:
    """A page's float output against PyTorch's, and its own 8-bit PNG against the fixture's."""
    ridpixels.check_bound(rgb, got["pixels"][..., :3], case["eps_levels"])
    eight = compare_8bit(pixels_of(fixture / case["protected_png"]), got["pixels"][..., :3])
    return {**eight, "max_abs": float(np.abs(expected - got["floats"]).max()) if got["floats"].shape == expected.shape else float("inf")}


def pixels_of(image: Path | bytes) -> np.ndarray:
    """The (H,W,3) uint8 values of a PNG file or PNG bytes."""
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(image) if isinstance(image, bytes) else image).convert("RGB"))


def _expect_backend(got: dict, backend: str, threads: int | None = None) -> None:
    if got["backend"] != backend or (threads is not None and got["threads"] != threads):
        raise RuntimeError(f"ran on {got['backend']} with {got.get('threads')} thread(s), not {backend}"
                           + (f" with {threads}" if threads else ""))


def check_manifest(rt: Runtimes) -> Row:
    from ridexport.manifest import load_manifest

    manifest = load_manifest(rt.export)
    unchanged = []
    for case, rgb, _ in rt.photos():
        if not (rt.fixture / case["protected_png"]).is_file():
            raise FileNotFoundError(f"fixture file {case['protected_png']} is missing")
        if np.array_equal(pixels_of(rt.fixture / case["protected_png"]), rgb):
            unchanged.append(case["name"])
    if unchanged:  # every runtime would "agree" by returning the photo: parity shown on nothing
        raise ValueError(f"PyTorch left fixture photo(s) {', '.join(unchanged)} unchanged in 8 bits (a delta under half "
                         "a level, as an untrained generator gives), so no row can show parity")
    return Row("manifest", True, len(manifest["files"]), note=f"{len(manifest['files'])} files, sha256 match")


def check_pytorch(rt: Runtimes) -> Row:
    from ridtrain.defender.generators import load_generator
    from ridtrain.defender.protect import protected_float

    if rt.checkpoint is None:
        raise NotRun("not run: no --checkpoint")
    gen = load_generator(rt.checkpoint)
    stats = [compare(expected, protected_float(gen, rgb, case["eps_levels"], seed=case.get("seed")).numpy())
             for case, rgb, expected in rt.photos()]
    return _row("pytorch", stats, "the checkpoint against the fixture")


def check_onnxruntime(rt: Runtimes) -> Row:
    from ridexport.manifest import load_manifest
    from ridexport.runtime import OnnxProtector

    manifest = load_manifest(rt.export)
    generators = [name for name, e in manifest["files"].items() if e.get("role", "generator") == "generator"
                  and (e["precision"] == "fp32" or e.get("lossless"))]  # lossy variants are measured, not held to the rule
    stats = [s for name in generators for s in self_check(OnnxProtector(rt.export, name)).values()]
    return _row("onnxruntime", stats, ", ".join(generators))


def check_server(rt: Runtimes) -> Row:
    import httpx

    url = rt.server()
    stats = []
    for case, rgb, expected in rt.photos():
        data = {"eps": str(case["eps_levels"]), **({"seed": case["seed"]} if case.get("seed") else {})}
        files = {"file": (case["input_png"], (rt.fixture / case["input_png"]).read_bytes(), "image/png")}
        r = httpx.post(url + "/v1/protect", data=data, files=files, timeout=120)
        if r.status_code != 200:
            raise RuntimeError(f"HTTP {r.status_code}: {r.text[:200]}")
        got = pixels_of(r.content)
        ridpixels.check_bound(rgb, got, case["eps_levels"])
        stats.append(compare_8bit(ridpixels.to_uint8(expected), got))
    return _row("server", stats, "8-bit PNGs")


def check_wasm(rt: Runtimes, threads: int) -> Row:
    from ridexport.browser import protect_in_page

    path = "/" if threads > 1 else "/examples/host.html"  # the app's page is cross-origin isolated, the host page is not
    page = rt.page()
    page.goto(rt.server() + path)
    stats = []
    for case, rgb, expected in rt.photos():
        (got,) = protect_in_page(page, rt.manifest_url(), (rt.fixture / case["input_png"]).read_bytes(), [case.get("seed")],
                                 eps=case["eps_levels"])
        _expect_backend(got, "wasm", threads)
        stats.append(_browser_stats(rt.fixture, case, rgb, expected, got))
    return _row(f"wasm-{threads}-thread" + ("s" if threads > 1 else ""), stats, f"{path} ({threads} thread{'s' * (threads > 1)})")


def check_webgpu(rt: Runtimes) -> Row:
    from ridexport.browser import WEBGPU, run_generator_in_page

    small = list(fixture_entries(rt.fixture, "cases"))
    photo_case, photo_rgb, photo_expected = next(iter(rt.photos()))
    page = rt.page(WEBGPU)
    page.goto(rt.server() + "/")
    cases, photo = run_generator_in_page(
        page, rt.manifest_url(), [(ridpixels.to_float(rgb), case["eps_levels"] / 255, case.get("seed")) for case, rgb, _ in small],
        ((rt.fixture / photo_case["input_png"]).read_bytes(), photo_case["eps_levels"], photo_case.get("seed")))
    stats = []
    for (_, _, expected), got in zip(small, cases):
        _expect_backend(got, "webgpu")
        stats.append(compare(expected, got["protected"]))
    _expect_backend(photo, "webgpu")
    stats.append(_browser_stats(rt.fixture, photo_case, photo_rgb, photo_expected, photo))
    seconds = (sum(c["ms"] for c in cases) + photo["ms"]) / 1000
    return _row("webgpu", stats, f"SwiftShader: {len(small)} graph runs + 1 photo in {seconds:.0f} s")


def check_widget(rt: Runtimes) -> Row:
    from ridexport.browser import protect_with_widget

    manifest = rt.manifest
    case, rgb, _ = next(iter(rt.photos()))
    with tempfile.TemporaryDirectory() as tmp:
        chosen = Path(tmp) / "photo.png"
        shutil.copyfile(rt.fixture / case["input_png"], chosen)
        got = protect_with_widget(rt.page(), rt.server() + "/examples/host.html", str(chosen))
    if got["held"] != ["photo.png", "image/png", got["png"]]:
        raise RuntimeError(f"the host form holds {got['held'][:2]}, not the protected photo.png")
    out = pixels_of(got["png"])
    ridpixels.check_bound(rgb, out, manifest["eps_levels"])  # shape and bound
    how = f"host page, {got['backend']}, eps {manifest['eps_levels']}"
    if manifest.get("seed") is None and case["eps_levels"] == manifest["eps_levels"]:
        return _row("widget", [compare_8bit(pixels_of(rt.fixture / case["protected_png"]), out)], how)
    # A fresh seed: no reference to equal, but a perturbation as large as PyTorch's, not a pass-through.
    changed, expected = (out != rgb).mean(), (pixels_of(rt.fixture / case["protected_png"]) != rgb).mean()
    if changed < expected / 2:
        raise RuntimeError(f"the widget changed {changed:.1%} of the values, PyTorch {expected:.1%} (at the fixture's seed)")
    return Row("widget", True, 1, note=f"{how}: a fresh seed, so bound, size and {changed:.0%} changed (PyTorch {expected:.0%})")


CHECKS = {"manifest": check_manifest, "pytorch": check_pytorch, "onnxruntime": check_onnxruntime, "server": check_server,
          "wasm-1-thread": lambda rt: check_wasm(rt, 1), "wasm-2-threads": lambda rt: check_wasm(rt, 2),
          "webgpu": check_webgpu, "widget": check_widget}


def run_check(export: str | Path, checkpoint=None, runtimes=RUNTIMES, web_dist=None, chromium=None) -> list[Row]:
    """One Row per runtime; a runtime that raises is a failed row with the error as its note, one
    that cannot run here (NotRun) a row that is not run."""
    rows = []
    with Runtimes(Path(export), checkpoint, web_dist, chromium) as rt:
        for runtime in runtimes:
            try:
                rows.append(CHECKS[runtime](rt))
            except NotRun as why:
                rows.append(Row(runtime, True, ran=False, note=str(why)))
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
