"""Speed of the exported generator graph against PyTorch and against this CPU's FLOP floor.

    python bench/generator_speed.py [--runs 10] [--dit-runs 3] [--archs rid-s,rid-m,rid-dit]

For each architecture and precision: parameters, GFLOPs at 512², ONNX file size, and the median
seconds per 512² image (one forward of the exported graph, image + eps -> protected, delta) in
PyTorch and onnxruntime (CPU EP), each with 1 and 2 threads, median of --runs after warm-up.
The CPU peak is a 2048³ float32 matmul in this process; floor = FLOPs / peak at that thread
count, and "x floor" = measured / floor. Generators are freshly built with the zero head
perturbed (speed does not depend on the weights); int8 is calibrated on smooth random images.
w16 is fp32 compute with fp16-stored weights (the browser's default download).
rid-dit runs in PyTorch only, with --dit-runs runs (its export is ~1.3 GB and slow).
"""

from __future__ import annotations

import argparse
import datetime
import os
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from ridexport import graph
from ridexport.variants import make_fp16, make_int8, make_w16
from ridtrain.defender.generators import build_generator, count_flops, count_params
from ridtrain.defender.seeds import code_for
from timing import cpu_name, median_seconds  # bench/ is on sys.path when run as a script

SIZE = 512
THREADS = (1, 2)
EPS = 8 / 255


def matmul_peak(threads: int, n: int = 2048, runs: int = 10) -> float:
    """GFLOP/s of an n³ float32 matmul (2n³ FLOPs) in torch."""
    torch.set_num_threads(threads)
    a, b = torch.rand(n, n), torch.rand(n, n)
    return 2 * n**3 / median_seconds(lambda: a @ b, runs) / 1e9


def perturbed(arch: str):
    torch.manual_seed(0)
    gen = build_generator(arch).eval()
    head = gen.head if hasattr(gen, "head") else gen.out
    torch.nn.init.normal_(head.weight, std=0.5)
    return gen


def torch_seconds(gen, threads: int, runs: int) -> float:
    torch.set_num_threads(threads)
    x, protect = torch.rand(1, 3, SIZE, SIZE), graph.ProtectGraph(gen)
    eps = torch.tensor([EPS])
    with torch.inference_mode():
        return median_seconds(lambda: protect(x, eps), runs, warmup=1 if runs < 10 else 2)


def ort_seconds(path: Path, threads: int, runs: int) -> float:
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feeds = {"image": np.random.default_rng(0).random((1, 3, SIZE, SIZE), dtype=np.float32), "eps": np.array([EPS], np.float32)}
    code = [i for i in session.get_inputs() if i.name == "code"]  # a randomised generator's
    if code:
        feeds["code"] = code_for(None, code[0].shape[1])[None]
    return median_seconds(lambda: session.run(None, feeds), runs)


def smooth_images(count: int = 4) -> list[np.ndarray]:
    """Photo-like calibration inputs: low-frequency colour fields plus mild noise, (1,3,512,512)."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE] / SIZE
    out = []
    for _ in range(count):
        f = rng.uniform(1, 6, (3, 2))
        base = np.stack([np.sin(f[c, 0] * xx + c) * np.cos(f[c, 1] * yy - c) for c in range(3)])
        out.append(np.clip(0.5 + 0.4 * base + rng.normal(0, 0.03, base.shape), 0, 1)[None].astype(np.float32))
    return out


def onnx_files(gen, folder: Path) -> dict[str, Path]:
    fp32 = graph.export_onnx(gen, folder / "model.onnx")
    return {"fp32": fp32, "w16": make_w16(fp32, folder / "model.w16.onnx")[0], "fp16": make_fp16(fp32, folder / "model.fp16.onnx"),
            "int8": make_int8(fp32, folder / "model.int8.onnx", smooth_images(), EPS)}


def row(arch, precision, params, flops, size, times: dict, peaks: dict) -> str:
    cells = [f"{arch:<8}", f"{precision:<5}", f"{params:>12,}", f"{flops / 1e9:>7.2f}", f"{size / 1e6:>7.2f}" if size else f"{'-':>7}"]
    for key in ("torch1", "torch2", "ort1", "ort2"):
        sec = times.get(key)
        cells.append(f"{sec:>8.3f}" if sec is not None else f"{'-':>8}")
    for threads in THREADS:
        sec = times.get(f"ort{threads}") or times.get(f"torch{threads}")
        cells.append(f"{sec / (flops / 1e9 / peaks[threads]):>6.1f}" if sec else f"{'-':>6}")
    return " | ".join(cells)


HEADER = " | ".join([f"{'arch':<8}", "prec ", f"{'params':>12}", "GFLOPs", "ONNX MB", "torch 1t", "torch 2t", "  ort 1t", "  ort 2t", "xflr1t", "xflr2t"])


def bench_compact(arch: str, runs: int, peaks: dict) -> list[str]:
    gen = perturbed(arch)
    params, flops = count_params(gen), count_flops(gen, SIZE)
    lines = []
    with tempfile.TemporaryDirectory() as tmp:
        files = onnx_files(gen, Path(tmp))
        for precision, path in files.items():
            times = {f"ort{t}": ort_seconds(path, t, runs) for t in THREADS}
            if precision == "fp32":
                times |= {f"torch{t}": torch_seconds(gen, t, runs) for t in THREADS}
            lines.append(row(arch, precision, params, flops, path.stat().st_size, times, peaks))
            print(lines[-1], flush=True)
    return lines


def bench_dit(runs: int, peaks: dict) -> list[str]:
    gen = perturbed("rid-dit")
    params, flops = count_params(gen), count_flops(gen, SIZE)
    times = {f"torch{t}": torch_seconds(gen, t, runs) for t in THREADS}
    line = row("rid-dit", "fp32", params, flops, None, times, peaks)
    print(line, flush=True)
    return [line]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10, help="timed runs per cell (after warm-up)")
    ap.add_argument("--dit-runs", type=int, default=3, help="timed runs for rid-dit (PyTorch only)")
    ap.add_argument("--archs", default="rid-s,rid-m,rid-dit")
    args = ap.parse_args()
    print(f"date {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}; nproc {os.cpu_count()}; {cpu_name()}")
    print(f"torch {torch.__version__}, onnxruntime {ort.__version__}; {SIZE}x{SIZE}, median of {args.runs} runs after warm-up (rid-dit: {args.dit_runs})")
    peaks = {t: matmul_peak(t) for t in THREADS}
    print("CPU peak (2048³ float32 matmul, torch): " + ", ".join(f"{peaks[t]:.1f} GFLOP/s on {t} thread{'s' * (t > 1)}" for t in THREADS))
    print("seconds per 512² image; xflrNt = time / (FLOPs / peak on N threads), onnxruntime where measured, else torch\n")
    print(HEADER)
    for arch in args.archs.split(","):
        bench_dit(args.dit_runs, peaks) if arch == "rid-dit" else bench_compact(arch, args.runs, peaks)


if __name__ == "__main__":
    main()
