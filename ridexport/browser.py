"""The export in Chromium (Playwright): the web app's library (rid.js) and the <rid-protect>
widget, driven from Python. `rid check`'s browser rows and the browser tests both use it.

Chromium is Debian's (playwright's own download is not used), headless, with ARGS; the pages come
from the server app (server_fallback) serving web/dist and the export over HTTP on 127.0.0.1.
"""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"]
WEBGPU = "--enable-unsafe-webgpu"  # SwiftShader's WebGPU in headless Chromium

_B64OF = """const b64of = (u8) => { let s = ''; for (let i = 0; i < u8.length; i += 32768) s += String.fromCharCode(...u8.subarray(i, i + 32768)); return btoa(s); };
  const bytesOf = (b64) => Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));"""

PROTECT_JS = """async ([b64, backend, eps, manifestUrl, seeds, serverUrl]) => {
  const { createProtector } = await import('/rid.js');
  %s
  const p = await createProtector({ manifestUrl, backend, serverUrl });
  try {
    const out = [];
    for (const seed of seeds) {  // one protection per entry; null: no seed given (a fresh one)
      const r = await p.protect(new Blob([bytesOf(b64)]), seed === null ? { float: true, eps } : { float: true, eps, seed });
      out.push({ backend: r.backend, threads: r.threads, width: r.width, height: r.height, png: b64of(new Uint8Array(await r.blob.arrayBuffer())),
                 floats: r.floats ? b64of(new Uint8Array(r.floats.buffer)) : null, isolated: self.crossOriginIsolated });
    }
    return out;
  } finally { p.close(); }
}""" % _B64OF

GENERATOR_JS = """async ([cases, photo, manifestUrl]) => {
  const { createProtector } = await import('/rid.js');
  %s
  // One protector for both parts: on SwiftShader the shader compiles of a session dominate.
  const p = await createProtector({ manifestUrl, backend: 'webgpu' });
  try {
    const out = { cases: [], photo: null };
    for (const [x, h, w, eps, seed] of cases) {
      const t = performance.now();
      const g = await p.runGenerator(new Float32Array(bytesOf(x).buffer), h, w, eps, seed);
      out.cases.push({ backend: g.backend, ms: performance.now() - t, out: b64of(new Uint8Array(g.protected.buffer)) });
    }
    if (photo) {
      const [b64, eps, seed] = photo;
      const t = performance.now();
      const r = await p.protect(new Blob([bytesOf(b64)]), { float: true, eps, seed });
      out.photo = { backend: r.backend, threads: r.threads, ms: performance.now() - t, width: r.width, height: r.height,
                    png: b64of(new Uint8Array(await r.blob.arrayBuffer())), floats: b64of(new Uint8Array(r.floats.buffer)) };
    }
    return out;
  } finally { p.close(); }
}""" % _B64OF

WIDGET_STATUS = "document.querySelector('rid-protect').shadowRoot.querySelector('.status')"
# The widget says "… protected (backend)" once the form's input holds the protected copies, or shows an error.
WIDGET_DONE = f"() => {{ const s = {WIDGET_STATUS}; return s.classList.contains('error') || / protected \\(/.test(s.textContent); }}"
WIDGET_JS = """async () => {
  %s
  const s = %s;
  if (s.classList.contains('error')) return { error: s.textContent };
  const e = window.ridEvents[0];
  const held = document.querySelector('#photo').files[0];
  return { name: e.name, backend: e.backend, png: b64of(new Uint8Array(await e.blob.arrayBuffer())),
           held: [held.name, held.type, b64of(new Uint8Array(await held.arrayBuffer()))] };
}""" % (_B64OF, WIDGET_STATUS)


def launch(pw, *extra_args: str, executable: str = CHROMIUM):
    """Debian's Chromium, headless, with ARGS (and extra_args, e.g. WEBGPU)."""
    return pw.chromium.launch(executable_path=executable, headless=True, args=ARGS + list(extra_args))


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _decoded(r: dict) -> dict:
    r["png"] = base64.b64decode(r["png"])
    r["pixels"] = np.asarray(Image.open(io.BytesIO(r["png"])))
    if r.get("floats") is not None:
        r["floats"] = np.frombuffer(base64.b64decode(r["floats"]), dtype="<f4").reshape(1, 3, r["height"], r["width"])
    return r


def protect_in_page(page, manifest_url: str, data: bytes, seeds: list[str | None], backend: str = "wasm",
                    eps: int | None = None, server_url: str | None = None) -> list[dict]:
    """One protector on the page as it is, one protection of `data` per seed (None: none given, so
    the worker draws a fresh one). Each result: backend, threads, isolated, width, height, png
    (bytes), pixels (the PNG's values) and floats ((1,3,H,W) float32, or None from the server)."""
    return [_decoded(r) for r in page.evaluate(PROTECT_JS, [_b64(data), backend, eps, manifest_url, seeds, server_url])]


def run_generator_in_page(page, manifest_url: str, cases: list[tuple[np.ndarray, float, str | None]],
                          photo: tuple[bytes, int, str | None] | None = None) -> tuple[list[dict], dict | None]:
    """On WebGPU, with one protector: the generator graph alone (no tiling, no 8-bit) per case
    (x (1,3,H,W) float32 in [0,1], eps in [0,1], seed): its backend, ms and protected (1,3,H,W)
    float32; then, if given, one photo (bytes, eps levels, seed) through the whole pipeline, as
    protect_in_page gives it."""
    args = [[_b64(x.astype("<f4").tobytes()), x.shape[2], x.shape[3], eps, seed] for x, eps, seed in cases]
    r = page.evaluate(GENERATOR_JS, [args, photo and [_b64(photo[0]), photo[1], photo[2]], manifest_url])
    for got, (x, _, _) in zip(r["cases"], cases):
        got["protected"] = np.frombuffer(base64.b64decode(got.pop("out")), dtype="<f4").reshape(x.shape)
    return r["cases"], r["photo"] and _decoded(r["photo"])


def protect_with_widget(page, url: str, photo_path: str, timeout_ms: int = 300_000) -> dict:
    """The host page at `url` (a form with input#photo and <rid-protect for="photo">): the photo
    chosen as a visitor would; the widget's first rid-protected event (name, backend, png bytes)
    and what the form's input holds afterwards (held: name, type, bytes)."""
    page.goto(url)
    page.evaluate("() => { window.ridEvents = []; document.addEventListener('rid-protected', (e) => window.ridEvents.push(e.detail)); }")
    page.set_input_files("#photo", photo_path)
    page.wait_for_function(WIDGET_DONE, timeout=timeout_ms)
    r = page.evaluate(WIDGET_JS)
    if "error" in r:
        raise RuntimeError(f"the widget says: {r['error']}")
    r["png"] = base64.b64decode(r["png"])
    r["held"] = [r["held"][0], r["held"][1], base64.b64decode(r["held"][2])]
    return r
