"""The browser app, library and widget in Debian's Chromium (Playwright), against the Python
reference, served by the real server app over HTTP on 127.0.0.1."""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from bad_inputs import encode, photo, with_orientation
from browser_env import DIST, PATH_LIKE, REPO, require_browser, run_app
from ridexport import browser as rid_browser
from ridexport.backends import load_backend, onnx_folder
from ridexport.parity import FLOAT_TOL, MAX_LEVELS, MIN_IDENTICAL
from ridtrain import pixels
from ridtrain.defender.protect import protected_float
from ridtrain.defender.seeds import DOMAIN, seed_code

playwright = pytest.importorskip("playwright.sync_api")
ARTIFACTS = REPO / "test-artifacts"
FIXTURE = onnx_folder("default") / "fixture"
MANIFEST = json.loads((onnx_folder("default") / "manifest.json").read_text())
MANIFEST_URL = f"/models/{MANIFEST['name']}/manifest.json"
PARITY = json.loads((FIXTURE / "parity.json").read_text())
RANDOMISED = bool(MANIFEST.get("seed"))  # a randomised generator: its graph takes the seed's code
SEED = "0123456789abcdef0f1e2d3c4b5a6978"  # a fixed seed for the real-photo checks (real use never fixes one)

pytestmark = require_browser()

@pytest.fixture
def page(browser):
    context = browser.new_context()
    page = context.new_page()
    page.errors = []
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    yield page
    context.close()


def protect_many_in_page(page, data: bytes, seeds: list[str | None], backend: str = "wasm", eps: int | None = None,
                         server_url: str | None = None) -> list[dict]:
    return rid_browser.protect_in_page(page, MANIFEST_URL, data, seeds, backend, eps, server_url)


def protect_in_page(page, data: bytes, backend: str = "wasm", eps: int | None = None, seed: str | None = None) -> dict:
    return protect_many_in_page(page, data, [seed], backend, eps)[0]


def check_rule(expected_float, got_float, expected8, got8):
    assert np.abs(got_float - expected_float).max() <= FLOAT_TOL
    a, b = expected8.astype(int), got8.astype(int)
    assert a.shape == b.shape and (a == b).mean() >= MIN_IDENTICAL and np.abs(a - b).max() <= MAX_LEVELS


def alpha_png() -> bytes:
    rgb = np.asarray(photo(150, 110, seed=7))
    yy, xx = np.mgrid[0:150, 0:110]
    alpha = ((xx * 255) // 109).astype(np.uint8)  # 0 (fully transparent) to 255 across
    return encode(Image.fromarray(np.dstack([rgb, alpha]), "RGBA"), "PNG")


@pytest.mark.parametrize("name", ["rocket.jpg", "exif-rotated.jpg", "alpha.png", "odd-533x301.png", "working-size-512x640.png"])
def test_wasm_parity_on_real_photos(server, page, corpus, name):
    data = {"rocket.jpg": lambda: (corpus / "heldout" / "rocket.jpg").read_bytes(),
            "exif-rotated.jpg": lambda: with_orientation(6),
            "alpha.png": alpha_png,
            "odd-533x301.png": lambda: encode(Image.open(corpus / "heldout" / "rocket.jpg").convert("RGB").resize((533, 301)), "PNG"),
            # already at its working size: the page skips the (identity) shrink
            "working-size-512x640.png": lambda: encode(Image.open(corpus / "heldout" / "rocket.jpg").convert("RGB").resize((640, 512)), "PNG"),
            }[name]()
    page.goto(server + "/")
    r = protect_in_page(page, data, seed=SEED)
    decoded = pixels.load_image(data)
    expected = protected_float(load_backend("default", "torch").gen, decoded.rgb, seed=SEED).numpy()
    out = np.asarray(Image.open(io.BytesIO(r["png"])))
    check_rule(expected, r["floats"], pixels.to_uint8(torch.from_numpy(expected)), out[..., :3])
    if decoded.alpha is not None:
        assert np.array_equal(out[..., 3], decoded.alpha)  # alpha passed through untouched


def test_js_working_size_is_pythons(server, page):
    page.goto(server + "/")
    rng = np.random.default_rng(0)
    sizes = [[1, 1], [511, 512], [512, 513], [4000, 6000], [7, 30000], [30000, 7]] + rng.integers(1, 9000, (200, 2)).tolist()
    js = page.evaluate("async (sizes) => { const { workingSize } = await import('/rid.js'); return sizes.map(([h, w]) => workingSize(h, w, %s)); }"
                       % json.dumps(MANIFEST["pipeline"]["working_size"]), sizes)
    assert [tuple(v) for v in js] == [pixels.working_size(h, w, **MANIFEST["pipeline"]["working_size"]) for h, w in sizes]


def test_js_pixel_limit_is_pythons(server, page):
    """The decoders' W*H limit, defined once in web/src/shared/pipeline.js for the protecting and
    the verify worker, is ridtrain.pixels.MAX_PIXELS."""
    page.goto(server + "/")
    assert page.evaluate("async () => (await import('/rid.js')).MAX_PIXELS") == pixels.MAX_PIXELS


def test_js_seed_code_is_pythons_bit_for_bit(server, page):
    """The browser's seed rule (web/src/shared/seed.js, crypto.subtle) against ridtrain.defender.seeds:
    the same float32 bits for random seeds, at the manifest's code_dim, an odd one and at the
    SHA-256 block edges (16 values are exactly one digest)."""
    page.goto(server + "/")
    rng = np.random.default_rng(11)
    seeds = [bytes(rng.integers(0, 256, 16, dtype=np.uint8)).hex() for _ in range(50)] + ["00" * 16, "ff" * 16]
    dims = sorted({64, 37, 1, 16, 17, *([MANIFEST["seed"]["code_dim"]] if RANDOMISED else [])})
    js = page.evaluate("""async ([seeds, dims, domain]) => {
      const { seedCode } = await import('/rid.js');
      const out = {};
      for (const dim of dims) out[dim] = await Promise.all(seeds.map(async (s) => Array.from(await seedCode(s, dim, domain))));
      return out;
    }""", [seeds, dims, DOMAIN.decode()])
    for dim in dims:
        got = np.array(js[str(dim)], dtype=np.float64)
        assert got.shape == (len(seeds), dim)
        expected = np.stack([seed_code(bytes.fromhex(s), dim) for s in seeds])
        assert np.array_equal(got.astype(np.float32).view(np.uint32), expected.view(np.uint32)), dim
        assert np.array_equal(got, expected.astype(np.float64))  # JS held exactly float32 values
    # Upper-case hex is the same seed; a malformed one is refused, never ignored.
    assert page.evaluate("async (s) => Array.from(await (await import('/rid.js')).seedCode(s.toUpperCase(), 4))", seeds[0]) == \
        seed_code(bytes.fromhex(seeds[0]), 4).astype(np.float64).tolist()
    for bad in ["abc", "zz" * 16, "00" * 17]:
        error = page.evaluate("async (s) => { try { await (await import('/rid.js')).seedCode(s, 4); return null; } catch (e) { return e.code; } }", bad)
        assert error == "bad_seed", bad


@pytest.mark.skipif(not RANDOMISED, reason="the bundled export is a deterministic generator (manifest.seed is null)")
def test_protections_without_a_seed_differ_and_a_fixed_seed_reproduces(server, page):
    """Without a seed every protection draws its own: two of one photo differ, both within ±eps
    levels of the input. The same given seed twice gives the same bytes."""
    case = PARITY["photos"][0]
    data, eps = (FIXTURE / case["input_png"]).read_bytes(), MANIFEST["eps_levels"]
    original = np.asarray(Image.open(FIXTURE / case["input_png"]).convert("RGB")).astype(int)
    page.goto(server + "/")
    fresh_a, fresh_b, fixed_a, fixed_b = protect_many_in_page(page, data, [None, None, SEED, SEED], eps=eps)
    for r in (fresh_a, fresh_b, fixed_a, fixed_b):
        assert r["backend"] == "wasm" and r["pixels"].shape == original.shape
        assert np.abs(r["pixels"].astype(int) - original).max() <= eps
    assert not np.array_equal(fresh_a["floats"], fresh_b["floats"])
    differ = (fresh_a["pixels"] != fresh_b["pixels"]).mean()
    assert differ > 0.01, f"only {differ:.2%} of the values differ between two fresh seeds"
    assert fixed_a["png"] == fixed_b["png"] and np.array_equal(fixed_a["floats"], fixed_b["floats"])
    assert not np.array_equal(fixed_a["pixels"], fresh_a["pixels"])


@pytest.mark.skipif(not RANDOMISED, reason="the bundled export is a deterministic generator (manifest.seed is null)")
def test_the_server_backend_gets_a_given_seed_and_none_otherwise(server, page):
    """Falling back to the server: a given seed goes in the form's `seed` field (and reproduces the
    fixture), none is sent otherwise (the server draws its own), and never in a URL."""
    case = PARITY["photos"][0]
    data = (FIXTURE / case["input_png"]).read_bytes()
    posts = []

    def record(route):
        posts.append((route.request.url, route.request.post_data_buffer or b""))
        route.continue_()

    page.route("**/v1/protect*", record)
    page.goto(server + "/")
    seeded, fresh = protect_many_in_page(page, data, [case["seed"], None], backend="server", eps=case["eps_levels"], server_url=server)
    assert seeded["backend"] == fresh["backend"] == "server"
    expected8 = np.asarray(Image.open(FIXTURE / case["protected_png"]))
    a, b = expected8.astype(int), seeded["pixels"].astype(int)
    assert (a == b).mean() >= MIN_IDENTICAL and np.abs(a - b).max() <= MAX_LEVELS
    assert not np.array_equal(fresh["pixels"], seeded["pixels"])
    assert [url.split("?")[0] for url, _ in posts] == [server + "/v1/protect"] * 2 and all("?" not in url for url, _ in posts)
    assert b'name="seed"' in posts[0][1] and case["seed"].encode() in posts[0][1]
    assert b'name="seed"' not in posts[1][1]


def test_local_mode_sends_no_photo_anywhere(server, page, tmp_path, corpus):
    requests = []
    page.on("request", lambda req: requests.append((req.method, req.url, req.post_data_buffer)))
    jpeg = (corpus / "heldout" / "rocket.jpg").read_bytes()
    rows = run_app(page, server + "/", [("rocket.jpg", jpeg)], tmp_path)
    assert "done" in rows[0].get_attribute("class")
    assert requests and all(url.startswith(server + "/") for _, url, _ in requests), [u for _, u, _ in requests if not u.startswith(server)]
    assert not [url for _, url, _ in requests if "/v1/protect" in url]
    assert all(body is None or jpeg[:4096] not in body for _, _, body in requests)
    # The fresh seed stays in the worker: no URL carries a seed (a 32-hex-digit token) or a seed field.
    hex32 = re.compile(r"(?<![0-9a-fA-F])[0-9a-fA-F]{32}(?![0-9a-fA-F])")
    assert not [url for _, url, _ in requests if "seed" in url.lower() or hex32.search(url)]
    assert all(body is None or b'name="seed"' not in body for _, _, body in requests)
    line = page.locator("#backend")
    assert (line.get_attribute("data-backend"), line.get_attribute("data-threads")) == ("wasm", "2")
    assert "on this device (WASM, 2 threads); they do not leave it" in line.inner_text()


def test_the_app_protects_a_batch_past_bad_files_and_zips_it(server, page, tmp_path):
    good = encode(photo(90, 120), "PNG")
    jpeg = encode(photo(), "JPEG")
    files = [("notes.jpg", b"this is text, not a photo\n"), ("cut.jpg", jpeg[: len(jpeg) // 2]), ("good.png", good), ("also good.png", good)]
    rows = run_app(page, server + "/", files, tmp_path)
    text = [r.inner_text() for r in rows]
    assert "This is not a photo we can read (we read JPEG, PNG and WebP)." in text[0], text
    assert "This is not a photo we can read: the file is damaged or cut short." in text[1], text
    assert all("done:" in t and "on this device (WASM)" in t for t in text[2:]), text
    assert [r.get_attribute("data-backend") for r in rows[2:]] == ["wasm", "wasm"]
    note = page.locator("#model-note").inner_text()
    assert MANIFEST["plain"]["limits"] in note and "no assurance" in note  # the honest model card, in plain words
    page.click("#model-details summary")
    assert MANIFEST["name"] in page.locator("#model-card").inner_text()
    page.locator("rid-compare").scroll_into_view_if_needed()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "app-after-protecting.png"), full_page=True)
    with page.expect_download() as download:
        page.click("#download-all")
    names = zipfile.ZipFile(download.value.path()).namelist()
    assert sorted(names) == ["also good.protected.png", "good.protected.png"]


# The project's own folders and file types, on the page (PATH_LIKE: browser_env).
REPO_WORDS = re.compile(r"ridtrain|weights/|proxies/|configs/|scripts/|\.onnx\b|\.json\b")
# Every line the loading line showed, in order (it is empty before and after).
RECORD_LOADING = """window.loading = [];
new MutationObserver(() => { const t = document.querySelector('#download')?.textContent;
  if (t && window.loading.at(-1) !== t) window.loading.push(t); }).observe(document, { subtree: true, childList: true, characterData: true });"""


def test_the_first_screen_speaks_plainly_and_loads_cleanly(server, page):
    """What a person sees once the model is ready: the model card's two plain sentences, and no
    repository path or file name (nor in the opened Details); the loading line said the whole
    model's megabytes and is gone; nothing the page asked for (its icons too) failed, and the
    console shows no error."""
    console, failed = [], []
    page.on("console", lambda m: m.type == "error" and console.append(m.text))
    page.on("response", lambda r: r.status >= 400 and failed.append((r.status, r.url)))
    page.add_init_script(RECORD_LOADING)
    page.goto(server + "/")
    page.wait_for_selector("body[data-ready=yes]", timeout=120_000)
    text = re.sub(r"https?://\S+", "", page.inner_text("body"))
    assert not PATH_LIKE.findall(text) and not REPO_WORDS.findall(text), text
    assert MANIFEST["plain"]["protects"] in text and MANIFEST["plain"]["limits"] in text
    pieces = MANIFEST["pipeline"]["pieces"]
    total = sum(MANIFEST["files"][f]["bytes"] for f in (MANIFEST["web_default_file"], pieces["shrink"]["file"], pieces["apply"]["file"]))
    loading = page.evaluate("window.loading")
    assert loading and all(t.startswith("Loading the protection model… ") for t in loading), loading
    assert f"{total / 1e6:.1f} MB" in loading[-1] and page.locator("#download").inner_text() == "", loading
    page.click("#model-details summary")
    details = page.locator("#model-card").inner_text()
    assert MANIFEST["name"] in details and "TAEF2" in details  # what it was tested against, by name
    assert not REPO_WORDS.findall(details), details
    icon = page.evaluate("document.querySelector('link[rel=icon]')?.href")
    for url in [icon, server + "/favicon.ico"]:  # the page's icon, and the one other pages' browsers ask for
        assert url and page.request.get(url).status == 200, url
    page.wait_for_timeout(500)  # the browser asks for the icon after the load
    assert not console and not failed and not page.errors, (console, failed, page.errors)


def test_a_card_without_plain_sentences_is_said_so(server, page):
    """A model whose manifest has no plain sentences (an export from elsewhere): the page says its
    card does not say what it protects against, and claims nothing in their place."""
    def without_plain(route):
        listed = route.fetch().json()
        for m in listed["models"]:
            m["manifest"].pop("plain", None)
        route.fulfill(json=listed)

    page.route("**/v1/models", without_plain)
    page.goto(server + "/")
    page.wait_for_selector("body[data-ready=yes]", timeout=120_000)
    note = page.locator("#model-note").inner_text()
    assert "does not say, in plain words, what it protects against" in note and "under Details" in note, note
    assert MANIFEST["plain"]["protects"] not in note and MANIFEST["plain"]["limits"] not in note


def test_a_tampered_model_is_refused_with_a_visible_error(server, page):
    """Plain words on the page; the technical reason (the hashes) in the console for whoever looks."""
    def flip(route):
        body = bytearray(route.fetch().body())
        body[len(body) // 2] ^= 0x01
        route.fulfill(body=bytes(body), headers={"content-type": "application/octet-stream"})

    warnings = []
    page.on("console", lambda m: m.type == "warning" and warnings.append(m.text))
    page.route("**/*.onnx", flip)
    page.goto(server + "/")
    page.wait_for_function("() => document.querySelector('#backend').textContent.startsWith('Cannot start')", timeout=60_000)
    message = page.locator("#backend").inner_text()
    assert "the model that arrived is not the one its card lists, so it was not used" in message and "sha256" not in message
    assert any("does not match the manifest" in w and "refusing" in w for w in warnings), warnings


def test_the_widget_protects_into_the_host_form_without_isolation(server, page, tmp_path):
    page.goto(server + "/examples/host.html")
    assert page.evaluate("self.crossOriginIsolated") is False
    page.evaluate("""() => { window.events = []; document.addEventListener('rid-protected',
        (e) => window.events.push({ name: e.detail.name, backend: e.detail.backend, size: e.detail.blob.size })); }""")
    (tmp_path / "me.jpg").write_bytes(encode(photo(80, 60), "JPEG"))
    page.set_input_files("#photo", str(tmp_path / "me.jpg"))
    page.wait_for_function("() => window.events.length === 1", timeout=120_000)
    event = page.evaluate("window.events[0]")
    assert event["name"] == "me.png" and event["backend"] == "wasm" and event["size"] > 0
    held = page.evaluate("() => { const f = document.querySelector('#photo').files; return [f.length, f[0].name, f[0].type, f[0].size]; }")
    assert held == [1, "me.png", "image/png", event["size"]]


def test_web_build_is_reproducible_from_the_lock_file():
    lock = json.loads((REPO / "web" / "package-lock.json").read_text())
    assert lock["packages"]["node_modules/onnxruntime-web"]["version"].startswith("1.30.")
    built = json.loads((DIST / "build.json").read_text())
    assert (DIST / built["ort_dir"] / "ort-wasm-simd-threaded.wasm").exists() and (DIST / "assets" / built["worker"]).exists()
    assert shutil.which("node") and subprocess.run(["node", "--version"], capture_output=True).returncode == 0
