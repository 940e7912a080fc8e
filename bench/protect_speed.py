"""Speed of the PyTorch reference on this CPU.

    python bench/protect_speed.py [--threads 2] [--runs 10]

Prints, for each architecture: parameters, GFLOPs at 512², median seconds of one generator forward
at 512², and for the bundled default model the median seconds of the whole `rid protect` array path
(working-size resize, generator, delta upsample, 8-bit rounding) for 512² and 12 MP photos.
"""

import argparse
import platform
import statistics
import time

import numpy as np
import torch

from ridtrain.generators import build_generator, count_flops, count_params, load_generator
from ridtrain.protect import protect_array


def median_seconds(fn, runs: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        tic = time.perf_counter()
        fn()
        times.append(time.perf_counter() - tic)
    return statistics.median(times)


def cpu_name() -> str:
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=10)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, {cpu_name()}, median of {args.runs} runs after warm-up\n")

    x = torch.rand(1, 3, 512, 512)
    print(f"{'arch':<10}{'params':>12}{'GFLOPs@512²':>14}{'s / 512² forward':>20}")
    for arch in ("rid-s", "rid-m", "rid-dit"):
        gen = build_generator(arch).eval()
        with torch.inference_mode():
            runs = args.runs if arch != "rid-dit" else max(3, args.runs // 3)
            sec = median_seconds(lambda: gen(x), runs, warmup=1)
        print(f"{arch:<10}{count_params(gen):>12,}{count_flops(gen) / 1e9:>14.2f}{sec:>20.3f}")

    gen = load_generator("default")
    rng = np.random.default_rng(0)
    print(f"\n{'rid protect path (default model)':<36}{'s / photo':>12}")
    for h, w in ((512, 512), (3000, 4000)):
        rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        sec = median_seconds(lambda: protect_array(gen, rgb), args.runs)
        print(f"{f'{w}x{h}':<36}{sec:>12.3f}")


if __name__ == "__main__":
    main()
