"""The page as a person protecting photos uses it (Chromium through Playwright, the real server app
over HTTP): the files it downloads (compact, exactly the file's bytes, named NAME.protected.EXT, a
smaller JPEG beside the PNG), plain words everywhere, plain errors, the list and compare controls,
and offline use after one visit."""

from __future__ import annotations

import io
import json
import zipfile
import re
import struct
from pathlib import Path

import numpy as np
import pytest
import skimage
from PIL import Image

import ridpixels
from bad_inputs import encode, header_only_jpeg, header_only_png, header_only_webp, photo
from browser_env import PATH_LIKE, REPO, require_browser, run_app, serving

playwright = pytest.importorskip("playwright.sync_api")
pytestmark = require_browser()
IEND = struct.pack(">I", 0) + b"IEND" + struct.pack(">I", 0xAE426082)


@pytest.fixture
def page(browser):
    context = browser.new_context(accept_downloads=True)
    page = context.new_page()
    page.errors = []
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    yield page
    context.close()


def large_photo() -> bytes:
    """A 2560x1600 (4.1 MP) JPEG of real photographs: eight of scikit-image's, side by side."""
    data = Path(skimage.__file__).parent / "data"
    names = ["astronaut.png", "coffee.png", "chelsea.png", "rocket.jpg", "motorcycle_left.png", "hubble_deep_field.jpg",
             "ihc.png", "retina.jpg"]
    canvas = Image.new("RGB", (2560, 1600))
    for i, name in enumerate(names):
        tile = Image.open(data / name).convert("RGB").resize((640, 800), Image.LANCZOS)
        canvas.paste(tile, ((i % 4) * 640, (i // 4) * 800))
    return encode(canvas, "JPEG", quality=92)


def download_row(page, row) -> tuple[str, bytes]:
    with page.expect_download() as download:
        row.locator("a[download]").click()
    return download.value.suggested_filename, Path(download.value.path()).read_bytes()


def latent_offered_jpeg() -> dict:
    """The efficacy report's figures for the app's JPEG download (docs/efficacy/latent.json)."""
    latent = json.loads((REPO / "docs" / "efficacy" / "latent.json").read_text())
    column = f"jpeg{ridpixels.OUTPUT_FORMATS['jpeg']['quality']}"
    rows = next(iter(latent["rows"].values()))
    return {method: {"shift": row["purified"][column], "kept_pct": row["kept_pct"][column], "lossless": row["shift"]}
            for method, row in rows.items() if column in row.get("purified", {})}


def test_a_large_photo_downloads_compact_exact_and_named(server, page, tmp_path):
    """A 4 MP JPEG protected on the page: the PNG download is the file's bytes and nothing after
    (no zero padding), at most 1.15x Pillow's optimised PNG of the same pixels, and named
    NAME.protected.png; the same file chosen again as JPEG gives a smaller NAME.protected.jpg, whose
    protection the efficacy report gives beside the lossless one."""
    rows = run_app(page, server + "/", [("holiday.jpg", large_photo())], tmp_path)
    assert "done" in rows[0].get_attribute("class"), rows[0].inner_text()
    name, png = download_row(page, rows[0])
    assert name == "holiday.protected.png"
    assert png.endswith(IEND) and png.index(b"IEND") == len(png) - 8, "bytes follow the PNG's end"
    assert int(rows[0].get_attribute("data-bytes")) == len(png)
    im = Image.open(io.BytesIO(png))
    assert im.size == (2560, 1600) and im.mode == "RGB"
    pillow = encode(im, "PNG", optimize=True)
    print(f"\n4 MP photo: page PNG {len(png):,} bytes, Pillow optimised {len(pillow):,} ({len(png) / len(pillow):.3f}x)")
    assert len(png) <= 1.15 * len(pillow)
    assert f"({len(png) / 1e6:.1f} MB)" in rows[0].inner_text()  # the size, shown

    page.select_option("#format", "jpeg")
    page.set_input_files("#files", str(tmp_path / "holiday.jpg"))  # the same file, chosen again
    page.wait_for_function("() => document.querySelectorAll('#photos li.done').length === 2", timeout=300_000)
    name, jpeg = download_row(page, page.locator("#photos li").nth(1))
    assert name == "holiday.protected.jpg" and Image.open(io.BytesIO(jpeg)).format == "JPEG"
    print(f"the same photo as JPEG {len(jpeg):,} bytes ({len(jpeg) / len(png):.2f}x the PNG)")
    assert len(jpeg) < len(png)
    offered = latent_offered_jpeg()
    assert {"RID", "encoder-PGD-50"} <= set(offered) and all(np.isfinite(v["shift"]) for v in offered.values()), offered
    print(f"the report: RID's TAEF2 shift {offered['RID']['lossless']:.3f} lossless, {offered['RID']['shift']:.3f} as the JPEG download "
          f"({offered['RID']['kept_pct']:.0f} % kept)")
    assert not page.errors


def test_lossless_webp_in_the_page_keeps_every_value(server, page, tmp_path):
    """The page's WebP is lossless: the same 8-bit values as its PNG (a fixed seed for both)."""
    photo_bytes = encode(photo(96, 128, seed=3), "JPEG")
    got = page.goto(server + "/") and page.evaluate("""async ([b64, url]) => {
      const { createProtector } = await import('/rid.js');
      const p = await createProtector({ manifestUrl: url, backend: 'wasm' });
      const blob = new Blob([Uint8Array.from(atob(b64), (c) => c.charCodeAt(0))]);
      const seed = '00112233445566778899aabbccddeeff';
      const out = {};
      for (const format of ['png', 'webp']) {
        const r = await p.protect(blob, { format, seed, name: 'me.jpg' });
        const u8 = new Uint8Array(await r.blob.arrayBuffer());
        let s = ''; for (const b of u8) s += String.fromCharCode(b);
        out[format] = { b64: btoa(s), type: r.blob.type, name: r.fileName };
      }
      p.close();
      return out;
    }""", [__import__("base64").b64encode(photo_bytes).decode(), (page.evaluate("fetch('/v1/models').then(r => r.json())"))["models"][0]["manifest_url"]])
    import base64

    png, webp = (Image.open(io.BytesIO(base64.b64decode(got[f]["b64"]))) for f in ("png", "webp"))
    assert webp.format == "WEBP" and got["webp"]["type"] == "image/webp" and got["webp"]["name"] == "me.protected.webp"
    assert np.array_equal(np.asarray(png.convert("RGB")), np.asarray(webp.convert("RGB")))


def test_the_formats_and_names_are_the_pixel_policys(server, page):
    """shared/formats.js is ridpixels.OUTPUT_FORMATS, and protectedName is protected_name."""
    page.goto(server + "/")
    names = ["grace_hopper.png", "a.b.JPG", "noext", ".hidden", "dir/x.webp", "c:\\\\photos\\\\me.jpeg"]
    got = page.evaluate("""async (names) => { const m = await import('/rid.js');
      return { formats: m.OUTPUT_FORMATS, names: Object.keys(m.OUTPUT_FORMATS).map((f) => names.map((n) => m.protectedName(n, f))) }; }""", names)
    assert got["formats"] == ridpixels.OUTPUT_FORMATS
    assert got["names"] == [[ridpixels.protected_name(n, f) for n in names] for f in ridpixels.OUTPUT_FORMATS]


# On the page a person reads: a path (browser_env.PATH_LIKE), a script or file of the project, or a
# command line.
SCRIPT = re.compile(r"\b[\w-]+\.(py|sh|mjs|js|json|onnx|yaml|safetensors)\b")
COMMAND = re.compile(r"(^|\s)(rid|python3?|pip|npm|node|curl|bash)\s+[a-z-]+|(^|\s)--[a-z][\w-]+", re.M)
ALL_TEXT = """() => { const parts = [document.body.innerText, document.title];
  for (const el of document.querySelectorAll('*')) {
    if (el.shadowRoot) parts.push(el.shadowRoot.textContent);
    for (const a of ['title', 'alt', 'aria-label', 'placeholder']) if (el.getAttribute(a)) parts.push(el.getAttribute(a));
  }
  for (const o of document.querySelectorAll('option')) parts.push(o.textContent);
  return parts.join('\\n'); }"""


def test_no_path_script_or_command_anywhere_on_the_page(server, page, tmp_path):
    """Every word of the page once it has protected a photo and failed one, Details, the compare
    view and the amplified view's note included: no repository path, script name or command line."""
    rows = run_app(page, server + "/", [("me.jpg", encode(photo(120, 160), "JPEG")), ("bad.png", b"not a photo")], tmp_path)
    assert len(rows) == 2
    page.click("#model-details summary")
    page.locator("rid-compare").evaluate("el => el.shadowRoot.querySelector('.mode').click()")
    text = re.sub(r"https?://\S+", "", page.evaluate(ALL_TEXT))
    for pattern in (PATH_LIKE, SCRIPT, COMMAND):
        assert not [m.group(0) for m in pattern.finditer(text)], (pattern.pattern, text)
    assert page.locator("#research").get_attribute("href") == "/research/"
    research = page.request.get(server + "/research/")
    assert research.status == 200 and "TAEF2" in research.text()  # the research detail lives there


def test_empty_and_renamed_files_get_plain_words(server, page, tmp_path):
    rows = run_app(page, server + "/", [("empty.jpg", b""), ("notes.png", b"Dear diary,\nthis is text.\n")], tmp_path)
    words = [r.locator(".status").inner_text() for r in rows]
    assert words == ["This file is empty.", "This is not a photo we can read (we read JPEG, PNG and WebP)."], words


@pytest.mark.parametrize("fmt", ["png", "jpeg", "webp"])
def test_a_photo_over_the_limit_says_how_large_it_is(server, page, tmp_path, fmt):
    """Judged from the header, before any pixel is decoded: a 10240x10240 header (100 MP)."""
    header = {"png": header_only_png, "jpeg": header_only_jpeg, "webp": header_only_webp}[fmt](10240, 10240)
    rows = run_app(page, server + "/", [(f"huge.{fmt}", header)], tmp_path)
    assert rows[0].locator(".status").inner_text() == "This photo is too large (100 MP; the limit is 64 MP)."


def test_the_list_clears_and_the_same_file_can_be_chosen_again(server, page, tmp_path):
    """The same file chosen twice gives two rows; the zip names the second copy apart; the list clears."""
    run_app(page, server + "/", [("me.png", encode(photo(60, 80), "PNG"))], tmp_path)
    page.set_input_files("#files", str(tmp_path / "me.png"))
    page.wait_for_function("() => document.querySelectorAll('#photos li.done').length === 2", timeout=120_000)
    assert [p.get_attribute("value") for p in page.locator("#photos progress").all()] == ["1", "1"]
    with page.expect_download() as download:
        page.click("#download-all")
    assert sorted(zipfile.ZipFile(download.value.path()).namelist()) == ["me.protected (2).png", "me.protected.png"]
    page.click("#clear")
    assert page.locator("#photos li").count() == 0 and page.locator("#download-all").is_disabled()
    assert page.locator("rid-compare").is_hidden()


def test_compare_says_before_and_after_and_zooms_to_100_percent(server, page, tmp_path):
    run_app(page, server + "/", [("wide.png", encode(photo(300, 1800), "PNG"))], tmp_path)
    view = page.locator("rid-compare")
    # the view draws the pair once both are decoded (a canvas is 300 px wide before that)
    view.evaluate("el => new Promise((done) => { const c = el.shadowRoot.querySelector('canvas.before'); "
                  "const poll = () => (c.width === 1800 ? done() : setTimeout(poll, 50)); poll(); })")
    assert view.locator(".left").inner_text() == "Before" and view.locator(".right").inner_text() == "After (protected)"
    width = "el => el.shadowRoot.querySelector('canvas.before').getBoundingClientRect().width"
    assert view.evaluate(width) < 1800  # fitted to the page
    view.locator(".zoom").check()
    assert view.evaluate(width) == 1800  # one screen pixel per photo pixel
    view.locator(".mode").check()
    assert "mid grey is no change" in view.locator(".hint").inner_text()


def test_webgpu_that_cannot_start_falls_back_to_the_processor(server, page):
    """Headless Chromium without --enable-unsafe-webgpu has no adapter: asking for WebGPU ends on
    WASM, in plain words."""
    page.goto(server + "/")
    page.wait_for_selector("body[data-ready=yes]", timeout=120_000)
    page.select_option("#backend-choice", "webgpu")
    page.wait_for_function("() => document.querySelector('#backend').dataset.backend", timeout=120_000)
    line = page.locator("#backend")
    assert line.get_attribute("data-backend") == "wasm"
    assert "graphics chip could not be used here" in line.inner_text() and "--enable" not in line.inner_text()


def test_offline_after_one_visit(browser, tmp_path):
    """One online visit; then with the server stopped and the browser offline the app reloads,
    protects a photo, and the API docs and the page for researchers render: all from what the
    service worker kept (the server of this test alone is gone, so nothing else can answer)."""
    context = browser.new_context()
    page = context.new_page()
    try:
        with serving() as server:
            page.goto(server + "/")
            page.wait_for_selector("body[data-ready=yes]", timeout=120_000)
            page.wait_for_function("() => navigator.serviceWorker.controller !== null", timeout=120_000)
            page.evaluate("navigator.serviceWorker.ready")
            assert "works without a network" in page.locator("#offline").inner_text()
        context.set_offline(True)
        page.reload()
        rows = run_app(page, None, [("offline.png", encode(photo(40, 50), "PNG"))], tmp_path)
        assert "done" in rows[0].get_attribute("class"), rows[0].inner_text()
        page.goto(server + "/docs")
        page.get_by_text("/v1/protect").first.wait_for(timeout=60_000)
        page.goto(server + "/research/")
        assert "TAEF2" in page.inner_text("body")
    finally:
        context.close()
