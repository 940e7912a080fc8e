"""Throughput and latency of the server fallback over real HTTP.

    python bench/server_load.py [--requests 48] [--jobs 2] [--threads 0]

Starts `uvicorn server_fallback.app:create_app` (one worker, the bundled model) on 127.0.0.1 and,
for 512² and 2048² JPEG photos, sends --requests POST /v1/protect at 1, 4 and 8 concurrent
clients (after a warm-up). Prints images/s, p50/p95/p99 latency, and the server's peak RSS
(VmHWM) at the end of each size. The queue is made large enough that no request is refused:
this measures speed, not overload (tests/test_server.py checks the 503s).
"""

from __future__ import annotations

import argparse
import datetime
import io
import os
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import skimage
from PIL import Image

from timing import cpu_name  # bench/ is on sys.path when run as a script
from server_fallback.launch import running
from server_fallback.settings import Settings


def peak_rss_mb(pid: int) -> float:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def photo_jpeg(side: int) -> bytes:
    rgb = Image.open(Path(skimage.__file__).parent / "data" / "astronaut.png").convert("RGB").resize((side, side), Image.BICUBIC)
    buf = io.BytesIO()
    rgb.save(buf, format="JPEG", quality=92)
    return buf.getvalue()


def run(url: str, data: bytes, requests: int, clients: int) -> tuple[float, list[float]]:
    def one(_):
        with httpx.Client(timeout=300) as client:
            tic = time.perf_counter()
            r = client.post(url + "/v1/protect", files={"file": ("photo.jpg", data, "image/jpeg")})
            r.raise_for_status()
            return time.perf_counter() - tic

    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(one, range(clients)))  # warm-up
        tic = time.perf_counter()
        latencies = list(pool.map(one, range(requests)))
        return requests / (time.perf_counter() - tic), latencies


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=48, help="timed requests per row")
    ap.add_argument("--jobs", type=int, default=2, help="server job slots (Settings.jobs)")
    ap.add_argument("--threads", type=int, default=0, help="onnxruntime threads per session (0: cores / jobs)")
    ap.add_argument("--port", type=int, default=8765)
    args = ap.parse_args()
    print(f"date {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}; nproc {os.cpu_count()}; {cpu_name()}")
    print(f"one uvicorn worker, jobs {args.jobs}, bundled default model (onnx pieces); {args.requests} timed requests per row\n")
    settings = Settings(jobs=args.jobs, queue=64, threads=args.threads, rate_limit="1000000/minute")
    with running(settings, port=args.port) as (url, proc):
        print(f"{'photo':<12}{'clients':>8}{'images/s':>10}{'p50 s':>8}{'p95 s':>8}{'p99 s':>8}{'peak RSS MB':>13}")
        for side in (512, 2048):
            data = photo_jpeg(side)
            for clients in (1, 4, 8):
                rate, lat = run(url, data, args.requests, clients)
                print(f"{f'{side}x{side}':<12}{clients:>8}{rate:>10.2f}{statistics.median(lat):>8.3f}"
                      f"{percentile(lat, 95):>8.3f}{percentile(lat, 99):>8.3f}{peak_rss_mb(proc.pid):>13.0f}", flush=True)


if __name__ == "__main__":
    main()
