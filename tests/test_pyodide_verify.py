"""The app's verify mode: ridpixels, built into a pure-Python wheel and run by Pyodide inside the
page, checks the JavaScript pipeline's working size, tile plan, bound and 8-bit rounding for every
photo; a difference is reported by name; the normal page loads none of it. Debian's Chromium
(Playwright) against the real server app over HTTP on 127.0.0.1, as tests/test_browser.py."""

from __future__ import annotations

import base64
import io
import json
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import ridpixels
from bad_inputs import encode, photo
from browser_env import DIST, REPO, require_browser, run_app

playwright = pytest.importorskip("playwright.sync_api")
BUILT = json.loads((DIST / "build.json").read_text()) if (DIST / "build.json").exists() else {}

pytestmark = require_browser(None if "verify_worker" in BUILT else f"{DIST} is not built with verify mode (scripts/setup.sh)")

CHECKS = ["size", "working_size", "tile_origins", "bound", "levels"]
TILES = (600, 1100)  # tile 512: 2 x 3 tiles, cut short at the bottom and on the right
ALPHA = (150, 110)  # non-square, with a transparency gradient: the RGBA layout
ALTERED = (200, 700)  # two tiles, small enough for five checks in a few seconds


def tiles_png() -> bytes:
    return encode(photo(*TILES, seed=3), "PNG")


def alpha_png() -> bytes:
    h, w = ALPHA
    rgb = np.asarray(photo(h, w, seed=7))
    alpha = np.tile(((np.arange(w) * 255) // (w - 1)).astype(np.uint8), (h, 1))
    return encode(Image.fromarray(np.dstack([rgb, alpha]), "RGBA"), "PNG")


@pytest.fixture(scope="module")
def verified(server, browser, tmp_path_factory):
    """One verify-mode page (one Pyodide boot) that protected both photos: (page, info, results, urls)."""
    context = browser.new_context()
    page = context.new_page()
    urls, errors = [], []
    page.on("request", lambda req: urls.append(req.url))
    page.on("pageerror", lambda e: errors.append(str(e)))
    started = time.monotonic()
    page.goto(server + "/?verify=1")
    page.wait_for_selector("body[data-verify-ready=yes]", timeout=180_000)
    print(f"\nverify mode ready {time.monotonic() - started:.1f} s after navigation")
    rows = run_app(page, None, [("tiles.png", tiles_png()), ("alpha.png", alpha_png())], tmp_path_factory.mktemp("verify"), verify=True)
    info = page.evaluate("async () => (await window.ridVerify.verifier).worker.ready")
    results = page.evaluate("window.ridVerify.results")
    texts = [r.inner_text() for r in rows]
    per_photo = ", ".join(f"{r['name']} {r['ms']:.0f} ms" for r in results)
    print(f"Pyodide {info['pyodide']}: boot {info['boot_ms']:.0f} ms, ready (wheel installed) {info['ready_ms']:.0f} ms; "
          f"verify per photo: {per_photo}")
    yield page, info, results, urls, texts, errors
    context.close()


def test_verify_mode_runs_ridpixels_in_pyodide_and_agrees(server, verified):
    page, info, results, urls, texts, errors = verified
    # The verdicts come from Python: Pyodide's own CPython, ridpixels installed from our wheel.
    assert info["platform"] == "emscripten" and info["python"].startswith("3.14"), info
    assert info["pyodide"] == BUILT["pyodide"] and info["ridpixels"] == ridpixels.__version__
    assert "site-packages/ridpixels/" in info["ridpixels_file"] and info["wheel"] == Path(BUILT["ridpixels_wheel"]).name
    assert [r["name"] for r in sorted(results, key=lambda r: r["name"])] == ["alpha.png", "tiles.png"]
    manifest = page.evaluate("window.rid.protector.manifest")
    spec, tile, eps = manifest["pipeline"]["working_size"], manifest["pipeline"]["pieces"]["tile"], manifest["eps_levels"]
    for r in results:
        h, w = TILES if r["name"] == "tiles.png" else ALPHA
        by = {c["check"]: c for c in r["checks"]}
        assert r["ok"] and list(by) == CHECKS and all(c["ok"] is True for c in r["checks"]), r
        assert by["working_size"]["js"] == by["working_size"]["python"] == list(ridpixels.working_size(h, w, **spec))
        assert by["tile_origins"]["python"] == [list(o) for o in ridpixels.tile_origins(h, w, tile)]
        assert 0 < by["bound"]["python"] <= eps == by["bound"]["js"]
        assert by["levels"]["python"] == h * w * 3
    tiles = next(r for r in results if r["name"] == "tiles.png")
    assert len(next(c for c in tiles["checks"] if c["check"] == "tile_origins")["python"]) == 6  # several tiles
    assert all("Python agrees" in t for t in texts), texts
    assert page.locator("#verify").is_checked() and "Pyodide" in page.locator("#verify-status").inner_text()
    # Everything from this server: Pyodide's files and the wheel too, never a CDN.
    assert urls and all(u.startswith(server + "/") for u in urls), [u for u in urls if not u.startswith(server + "/")]
    assert any(u.endswith(".whl") for u in urls) and any(u.endswith("pyodide.asm.wasm") for u in urls)
    assert not errors, errors


B64 = """const bytesOf = (b64) => Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  const b64of = (u8) => { let s = ''; for (let i = 0; i < u8.length; i += 32768) s += String.fromCharCode(...u8.subarray(i, i + 32768)); return btoa(s); };"""

ALTER_JS = """async ([b64, k]) => {
  %s
  const { bridge, worker } = await window.ridVerify.verifier;
  const p = window.rid.protector;
  const file = new Blob([bytesOf(b64)]);
  const job = window.testJob = bridge.jobOf(await p.protect(file, { float: true, input: true }), p.manifest, file);
  const [hw, ww] = job.plan.working;
  const floats = Float32Array.from(job.floats);
  floats[k] = floats[k] > 0.5 ? floats[k] - 3 / 255 : floats[k] + 3 / 255;
  const jobs = {
    unaltered: job,
    working_size: { ...job, plan: { ...job.plan, working: [hw + 16, ww] } },
    tile_origins: { ...job, plan: { ...job.plan, origins: job.plan.origins.slice(0, -1) } },
    levels: { ...job, floats },
  };
  const verdicts = {};
  for (const [name, j] of Object.entries(jobs)) verdicts[name] = await worker.check(j);
  return { verdicts, png: b64of(new Uint8Array(await job.png.arrayBuffer())) };
}""" % B64

MOVED_JS = """async (png) => {
  %s
  const { worker } = await window.ridVerify.verifier;
  return worker.check({ ...window.testJob, png: bytesOf(png) });
}""" % B64


def test_a_difference_is_reported_by_name(verified):
    """Jobs altered on the way to Python: a working size 16 px off, a tile missing from the plan,
    one float moved by 3 levels, one output value moved to eps + 1 levels from the input. Each is
    a difference naming its check, with both values; the unaltered job passes."""
    page = verified[0]
    data = encode(photo(*ALTERED, seed=5), "PNG")
    original = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    h, w = original.shape[:2]
    eps = page.evaluate("window.rid.protector.manifest.eps_levels")
    y, x, ch = 150, 600, 1  # in the second tile
    k = (ch * h + y) * w + x  # the float's index in (1, 3, H, W)
    out = page.evaluate(ALTER_JS, [base64.b64encode(data).decode(), k])
    verdicts = out["verdicts"]
    protected = np.asarray(Image.open(io.BytesIO(base64.b64decode(out["png"])))).copy()
    moved = int(original[y, x, ch]) + (eps + 1 if original[y, x, ch] + eps + 1 <= 255 else -(eps + 1))
    protected[y, x, ch] = moved
    verdicts["bound"] = page.evaluate(MOVED_JS, base64.b64encode(encode(Image.fromarray(protected), "PNG")).decode())

    def failing(v):
        return {c["check"]: c for c in v["checks"] if c["ok"] is False}

    assert verdicts["unaltered"]["ok"] and not failing(verdicts["unaltered"])
    bad = failing(verdicts["working_size"])
    assert list(bad) == ["working_size"] and bad["working_size"]["js"][0] == bad["working_size"]["python"][0] + 16
    bad = failing(verdicts["tile_origins"])
    assert list(bad) == ["tile_origins"] and (len(bad["tile_origins"]["js"]), len(bad["tile_origins"]["python"])) == (1, 2)
    bad = failing(verdicts["levels"])
    assert list(bad) == ["levels"] and abs(bad["levels"]["js"] - bad["levels"]["python"]) == 3
    assert f"1 of {h * w * 3} values differ; first at y={y} x={x} channel {ch}" in bad["levels"]["detail"]
    bad = failing(verdicts["bound"])  # the moved value no longer rounds from its float either
    assert set(bad) == {"bound", "levels"} and bad["bound"]["python"] == eps + 1 and bad["bound"]["js"] == eps
    assert f"over the bound of {eps}" in bad["bound"]["detail"] and bad["levels"]["js"] == moved
    assert f"1 of {h * w * 3} values differ; first at y={y} x={x} channel {ch}" in bad["levels"]["detail"]
    for v in verdicts.values():
        assert v["ok"] == (not failing(v))


def test_the_server_backend_is_verified_without_floats(verified):
    """A photo protected by the server: no plan, input or floats come back, so the plan is
    pipeline.js's, the verify worker decodes the file itself, and the rounding is not checked."""
    page = verified[0]
    data = encode(photo(120, 90, seed=9), "PNG")
    verdict = page.evaluate("""async (b64) => {
      %s
      const { bridge, worker } = await window.ridVerify.verifier;
      const { createProtector } = await import('/rid.js');
      const p = await createProtector({ manifestUrl: document.querySelector('#model').value,
                                        backend: 'server', serverUrl: location.origin });
      try {
        const file = new Blob([bytesOf(b64)]);
        const r = await p.protect(file, { float: true, input: true });
        return { backend: r.backend, plan: r.plan ?? null, verdict: await worker.check(bridge.jobOf(r, p.manifest, file)) };
      } finally { p.close(); }
    }""" % B64, base64.b64encode(data).decode())
    assert verdict["backend"] == "server" and verdict["plan"] is None
    by = {c["check"]: c for c in verdict["verdict"]["checks"]}
    assert verdict["verdict"]["ok"] and by["levels"]["ok"] is None
    assert all(by[c]["ok"] is True for c in CHECKS if c != "levels"), by
    assert by["working_size"]["python"] == list(ridpixels.working_size(120, 90, **page.evaluate("window.rid.protector.manifest.pipeline.working_size")))


def test_the_normal_page_loads_no_pyodide(server, browser, tmp_path):
    """Without verify mode not one of Pyodide's files, the wheel or the verify bundles is
    requested over a whole protection; the page's total transfer is printed."""
    context = browser.new_context()
    page = context.new_page()
    urls, sizes = [], []

    def finished(req):
        response = req.response()
        length = response.headers.get("content-length") if response else None
        sizes.append(int(length) if length is not None else len(response.body()) if response else 0)

    page.on("request", lambda req: urls.append(req.url))
    page.on("requestfinished", finished)
    try:
        rows = run_app(page, server + "/", [("tiles.png", tiles_png())], tmp_path)
        assert "done" in rows[0].get_attribute("class"), rows[0].inner_text()
        assert rows[0].get_attribute("data-verify") is None and not page.locator("#verify").is_checked()
        assert page.evaluate("window.ridVerify.verifier") is None and not page.evaluate("window.ridVerify.results")
        loaded = [u for u in urls if "pyodide" in u.lower() or ".whl" in u or "rid-verify" in u]
        assert not loaded, loaded
        print(f"\nnormal page: {len(sizes)} requests, {sum(sizes)} bytes over one protection of a {TILES[1]}x{TILES[0]} photo")
    finally:
        context.close()


def test_the_wheel_in_dist_holds_this_ridpixels():
    """The page runs this checkout's ridpixels: the wheel beside Pyodide (named in build.json) is a
    pure-Python wheel without dependencies whose one module is ridpixels/__init__.py as it is."""
    wheel = DIST / BUILT["ridpixels_wheel"]
    assert wheel.name == f"ridpixels-{ridpixels.__version__}-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as z:
        modules = [n for n in z.namelist() if not n.startswith(f"ridpixels-{ridpixels.__version__}.dist-info/")]
        assert modules == ["ridpixels/__init__.py"]
        assert z.read("ridpixels/__init__.py") == (REPO / "ridpixels" / "__init__.py").read_bytes(), "web/dist is stale: npm run build"
        meta = z.read(f"ridpixels-{ridpixels.__version__}.dist-info/METADATA").decode()
        assert "Requires-Dist" not in meta and "Root-Is-Purelib: true" in z.read(f"ridpixels-{ridpixels.__version__}.dist-info/WHEEL").decode()
    for name in BUILT["pyodide_files"]:
        assert (DIST / BUILT["pyodide_dir"] / name).exists(), name
