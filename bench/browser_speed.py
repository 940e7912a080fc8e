"""Speed of the web app's protection in headless Chromium (Debian's), served from 127.0.0.1.

    python bench/browser_speed.py [--runs 10]

Prints the median ms per 512² photo (a JPEG through the library: decode, shrink tiles, generator,
apply tiles, PNG encode, all in the worker) for WASM with 1 thread (a page without cross-origin
isolation) and 2 threads (the app's isolated page); WebGPU when the adapter is a real GPU, else
"SwiftShader only"; and the cold start: a fresh browser profile, from navigation to the first
protected photo, with the model and onnxruntime-web's files served from localhost.
"""

from __future__ import annotations

import argparse
import base64
import datetime
import io
import os
import statistics
import tempfile
from pathlib import Path

import httpx
import skimage
from PIL import Image
from playwright.sync_api import sync_playwright

from timing import cpu_name  # bench/ is on sys.path when run as a script
from server_fallback.launch import running
from server_fallback.settings import Settings

REPO = Path(__file__).resolve().parents[1]
ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"]
TIMED = """async ([b64, runs, backend, manifestUrl]) => {
  const { createProtector } = await import('/rid.js');
  const blob = new Blob([Uint8Array.from(atob(b64), (c) => c.charCodeAt(0))]);
  const p = await createProtector({ manifestUrl, backend });
  await p.protect(blob);  // warm-up
  const ms = [];
  for (let i = 0; i < runs; i++) { const t = performance.now(); await p.protect(blob); ms.push(performance.now() - t); }
  p.close();
  return { ms, threads: p.threads, backend: p.backend };
}"""



def photo_b64() -> str:
    im = Image.open(Path(skimage.__file__).parent / "data" / "astronaut.png").convert("RGB").resize((512, 512))
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=92)
    return base64.b64encode(buf.getvalue()).decode()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10)
    args = ap.parse_args()
    data = photo_b64()
    print(f"date {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}; nproc {os.cpu_count()}; {cpu_name()}")
    with running(Settings(web_dist=REPO / "web" / "dist", rate_limit="1000000/minute")) as (url, _), sync_playwright() as pw:
        manifest_url = httpx.get(url + "/v1/models").json()["models"][0]["manifest_url"]
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=ARGS)
        print(f"Chromium {browser.version}, headless; one 512x512 JPEG per run, median of {args.runs} after a warm-up\n")
        print(f"{'backend':<28}{'median ms':>10}{'min ms':>9}")
        for label, path in (("WASM, 1 thread", "/examples/host.html"), ("WASM, 2 threads (isolated)", "/")):
            page = browser.new_page()
            page.goto(url + path)
            r = page.evaluate(TIMED, [data, args.runs, "wasm", manifest_url])
            print(f"{label:<28}"
                  f"{statistics.median(r['ms']):>10.0f}{min(r['ms']):>9.0f}", flush=True)
            page.close()
        gpu = pw.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=ARGS + ["--enable-unsafe-webgpu"])
        page = gpu.new_page()
        page.goto(url + "/")
        adapter = page.evaluate("""async () => { const a = await navigator.gpu?.requestAdapter(); if (!a) return null;
          const i = a.info; return [i.vendor, i.architecture, i.device, i.description].join(' '); }""")
        if adapter is None or "swiftshader" in adapter.lower():
            print(f"{'WebGPU':<28}{'SwiftShader only' if adapter else 'no adapter':>19}  ({adapter})")
        else:
            r = page.evaluate(TIMED, [data, args.runs, "webgpu", manifest_url])
            print(f"{'WebGPU':<28}{statistics.median(r['ms']):>10.0f}{min(r['ms']):>9.0f}")
        gpu.close()
        colds = []
        with tempfile.TemporaryDirectory() as tmp:
            photo = Path(tmp) / "photo.jpg"
            photo.write_bytes(base64.b64decode(data))
            for i in range(3):
                context = pw.chromium.launch_persistent_context(Path(tmp) / f"profile{i}", executable_path="/usr/bin/chromium",
                                                                headless=True, args=ARGS)
                page = context.new_page()
                page.goto(url + "/")
                page.set_input_files("#files", str(photo))  # the app: chosen as soon as the page can take it
                page.wait_for_selector("#photos li.done", timeout=120_000)
                colds.append(float(page.locator("#photos li.done").get_attribute("data-done-at")))
                backend = page.locator("#backend").inner_text()
                context.close()
        print(f"\ncold start (the app in a fresh profile: navigation to the first protected photo; {backend}): "
              f"median {statistics.median(colds):.0f} ms of {len(colds)} ({', '.join(f'{c:.0f}' for c in colds)})")
        browser.close()


if __name__ == "__main__":
    main()
