"""Speed of the web app's protection in headless Chromium (Debian's), served from 127.0.0.1.

    python bench/browser_speed.py [--runs 10]

Prints the median ms per 512² photo (a JPEG through the library: decode, shrink tiles, generator,
apply tiles, PNG encode, all in the worker) for WASM with 1 thread (a page without cross-origin
isolation) and 2 threads (the app's isolated page); WebGPU when the adapter is a real GPU, else
"SwiftShader only"; where the time goes (the worker's own timing of each stage, median over the
runs; "other" is the rest: messages, copies, tiles to float); the download's size in each format;
and the cold start: a fresh browser profile, from navigation to the first protected photo, with
the model and onnxruntime-web's files served from localhost.
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
STAGES = ("decode", "shrink", "generator", "apply", "encode")
TIMED = """async ([b64, runs, backend, manifestUrl, formats]) => {
  const { createProtector } = await import('/rid.js');
  const blob = new Blob([Uint8Array.from(atob(b64), (c) => c.charCodeAt(0))]);
  const p = await createProtector({ manifestUrl, backend });
  await p.protect(blob);  // warm-up
  const ms = [], stages = [], bytes = {};
  for (let i = 0; i < runs; i++) {
    const t = performance.now();
    const r = await p.protect(blob);
    ms.push(performance.now() - t);
    stages.push(r.stages ?? null);
    bytes.png = r.blob.size;
  }
  for (const format of formats) bytes[format] = (await p.protect(blob, { format })).blob.size;
  p.close();
  return { ms, stages, bytes, threads: p.threads, backend: p.backend };
}"""


def breakdown(r: dict) -> str:
    """Median ms of each stage over the runs, and of what is left of the whole."""
    if not r["stages"][0]:
        return ""
    med = {s: statistics.median(run[s] for run in r["stages"]) for s in STAGES}
    other = statistics.median(m - sum(run[s] for s in STAGES) for m, run in zip(r["ms"], r["stages"]))
    return "".join(f"{med[s]:>10.0f}" for s in STAGES) + f"{other:>8.0f}"



def photo_b64(size: tuple[int, int] = (512, 512)) -> str:
    im = Image.open(Path(skimage.__file__).parent / "data" / "astronaut.png").convert("RGB").resize(size, Image.LANCZOS)
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
        print(f"Chromium {browser.version}, headless; one 512x512 JPEG per run, median of {args.runs} after a warm-up; "
              "stages: the worker's own ms for each, median\n")
        print(f"{'backend':<28}{'median ms':>10}{'min ms':>9}" + "".join(f"{s:>10}" for s in STAGES) + f"{'other':>8}")
        sizes = None
        for label, path in (("WASM, 1 thread", "/examples/host.html"), ("WASM, 2 threads (isolated)", "/")):
            page = browser.new_page()
            page.goto(url + path)
            if path == "/":  # the app keeps its files for offline use once, on the first visit: not during the timing
                page.wait_for_selector("body[data-ready=yes]", timeout=120_000)
                page.evaluate("navigator.serviceWorker.ready")
            r = page.evaluate(TIMED, [data, args.runs, "wasm", manifest_url, ["jpeg", "webp"]])
            sizes = r["bytes"]
            print(f"{label:<28}"
                  f"{statistics.median(r['ms']):>10.0f}{min(r['ms']):>9.0f}{breakdown(r)}", flush=True)
            if path == "/":  # a larger photo: the shrink, which a photo at the working size skips, and the tiles
                r = page.evaluate(TIMED, [photo_b64((2048, 1536)), max(3, args.runs // 2), "wasm", manifest_url, []])
                print(f"{'  the same, 2048x1536 photo':<28}"
                      f"{statistics.median(r['ms']):>10.0f}{min(r['ms']):>9.0f}{breakdown(r)}", flush=True)
            page.close()
        gpu = pw.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=ARGS + ["--enable-unsafe-webgpu"])
        page = gpu.new_page()
        page.goto(url + "/")
        adapter = page.evaluate("""async () => { const a = await navigator.gpu?.requestAdapter(); if (!a) return null;
          const i = a.info; return [i.vendor, i.architecture, i.device, i.description].join(' '); }""")
        if adapter is None or "swiftshader" in adapter.lower():
            print(f"{'WebGPU':<28}{'SwiftShader only' if adapter else 'no adapter':>19}  ({adapter})")
        else:
            r = page.evaluate(TIMED, [data, args.runs, "webgpu", manifest_url, []])
            print(f"{'WebGPU':<28}{statistics.median(r['ms']):>10.0f}{min(r['ms']):>9.0f}{breakdown(r)}")
        gpu.close()
        print("\ndownload of the 512² photo: " + ", ".join(f"{f} {n:,} bytes" for f, n in sizes.items()))
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
