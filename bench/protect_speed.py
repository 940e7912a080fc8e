"""Speed of the PyTorch reference on this CPU.

    python bench/protect_speed.py [--threads 2] [--runs 10]

Prints, for each architecture: parameters, GFLOPs at 512², median seconds of one generator forward
at 512². For the bundled default model and both backends (torch: ridtrain/pixels.py on the whole
photo; onnx: the exported pieces, shrink and apply in 512² tiles, as the server and browser run
them): median seconds of the array path (working-size resize, generator, delta upsample, 8-bit
rounding) and of a whole file (JPEG decode, the array path, PNG encode and atomic write) for 512²,
12 MP and 24 MP photos.
"""

import argparse
import tempfile
from pathlib import Path

import numpy as np
import skimage
import torch
from PIL import Image

from rid.protect import Job, protect_file
from ridexport.backends import load_backend
from ridtrain.defender.generators import build_generator, count_flops, count_params
from timing import cpu_name, median_seconds  # bench/ is on sys.path when run as a script


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

    backends = {name: load_backend("default", name) for name in ("torch", "onnx")}
    photo = np.asarray(Image.open(Path(skimage.__file__).parent / "data" / "astronaut.png").convert("RGB"))
    print(f"\n{'default model, photo':<24}{'backend':>8}{'array path s':>14}{'file s (JPEG->PNG)':>20}")
    with tempfile.TemporaryDirectory() as tmp:
        for h, w in ((512, 512), (3000, 4000), (4000, 6000)):
            rgb = np.asarray(Image.fromarray(photo).resize((w, h), Image.BICUBIC))
            src = Path(tmp) / f"{w}x{h}.jpg"
            Image.fromarray(rgb).save(src, quality=92)
            job = Job(src, Path(tmp) / f"{w}x{h}.png")
            runs = args.runs if h * w < 5e6 else max(3, args.runs // 3)
            for name, backend in backends.items():
                array_sec = median_seconds(lambda: backend.protect_array(rgb), runs)
                file_sec = median_seconds(lambda: protect_file(backend, job, None, "png", False), max(3, runs // 3))
                print(f"{f'{w}x{h}':<24}{name:>8}{array_sec:>14.3f}{file_sec:>20.3f}", flush=True)


if __name__ == "__main__":
    main()
