"""Batch protection of photo files with the PyTorch reference generator (`rid protect`).

Each photo goes through the canonical pipeline of ridtrain.pixels; the generator runs once per
photo at the working size, and its delta is resized back to the photo's own size, so the output
has exactly the input's (oriented) size and every pixel is within +-eps levels of the input.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

import ridpixels
from ridtrain.generators import check_eps, load_generator
from ridtrain.seeds import code_for, parse_seed
from ridtrain.pixels import (MAX_PIXELS, SAVE_OPTIONS, ImageError, add_delta, encode_image, is_image_path, load_image, to_float,
                             to_uint8, working_image, write_atomic)

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def protect_array(gen, rgb: np.ndarray, eps_levels: int | None = None, seed: bytes | str | None = None) -> np.ndarray:
    """uint8 (H,W,3) -> protected uint8 (H,W,3); eps in 8-bit levels, default the model's. A
    randomised generator gets the code of `seed` (ridtrain/seeds.py); None draws a fresh seed,
    which is what real use must do."""
    out = to_uint8(protected_float(gen, rgb, eps_levels, seed))
    ridpixels.check_bound(rgb, out, check_eps(gen.config.eps if eps_levels is None else eps_levels))
    return out


def protected_float(gen, rgb: np.ndarray, eps_levels: int | None = None, seed: bytes | str | None = None) -> torch.Tensor:
    """uint8 (H,W,3) -> the protected photo before rounding, float32 (1,3,H,W) in [0,1]."""
    eps = check_eps(gen.config.eps if eps_levels is None else eps_levels) / 255.0
    x = to_float(rgb).to(gen.device)  # (1, 3, H, W)
    with torch.inference_mode():
        delta = gen(working_image(x, **gen.working_size_rule), eps, code_tensor(gen, seed))  # (1, 3, hw, ww)
        return add_delta(x, delta, eps).cpu()


def code_tensor(gen, seed: bytes | str | None) -> torch.Tensor | None:
    """The (1, code_dim) code of a seed for a randomised generator (a fresh seed when None);
    None for a deterministic one, which takes no code."""
    if not gen.code_dim:
        return None
    return torch.from_numpy(code_for(seed, gen.code_dim))[None]


class TorchProtector:
    """The PyTorch reference behind the same call as ridexport.runtime.OnnxProtector."""

    def __init__(self, gen):
        self.gen, self.config = gen, gen.config

    def protect_array(self, rgb: np.ndarray, eps_levels: int | None = None, seed: bytes | str | None = None) -> np.ndarray:
        return protect_array(self.gen, rgb, eps_levels, seed)

    def protected_float(self, rgb: np.ndarray, eps_levels: int | None = None, seed: bytes | str | None = None) -> np.ndarray:
        return protected_float(self.gen, rgb, eps_levels, seed).numpy()


@dataclass
class Job:
    src: Path
    dst: Path


def find_jobs(inputs: list[Path], out_dir: Path, fmt: str) -> tuple[list[Job], list[str]]:
    """Jobs for files and folders (recursive, image suffixes, case-insensitive), keeping the path
    relative to the folder given; plus error lines for outputs that two inputs would share."""
    suffix, out_root = "." + fmt, out_dir.resolve()
    jobs, errors, claimed = [], [], {}
    for item in inputs:
        if item.is_dir():
            files = sorted(p for p in item.rglob("*") if is_image_path(p.relative_to(item)) and p.is_file())
            pairs = [(p, p.relative_to(item)) for p in files if not p.resolve().is_relative_to(out_root)]
        else:
            pairs = [(item, Path(item.name))]
        for src, rel in pairs:
            dst = out_dir / rel.with_suffix(suffix)
            if dst in claimed:
                errors.append(f"error: {src}: output {dst} is already taken by {claimed[dst]}")
                continue
            claimed[dst] = src
            jobs.append(Job(src, dst))
    return jobs, errors


def protect_bytes(protector, data: bytes, eps: int | None = None, fmt: str = "png", keep_metadata: bool = False,
                  max_pixels: int = MAX_PIXELS, seed: bytes | str | None = None) -> bytes:
    """An image file's bytes -> the protected image encoded as lossless `fmt`, with a
    TorchProtector or OnnxProtector. The CLI and the server both call this, so the same photo
    and seed give the same bytes (seed None: a fresh one). Raises ImageError."""
    dec = load_image(data, max_pixels)
    out = protector.protect_array(dec.rgb, eps, seed)
    return encode_image(out, dec.alpha, fmt, exif=dec.exif if keep_metadata else None, icc=dec.icc_profile)


def protect_file(protector, job: Job, eps: int | None, fmt: str, keep_metadata: bool, seed=None) -> None:
    """Load, protect and save one photo (written atomically); raises ImageError or OSError."""
    data = protect_bytes(protector, job.src.read_bytes(), eps, fmt, keep_metadata, seed=seed)
    job.dst.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(job.dst, data)


def _usage_error(inputs: list[Path], out_dir: Path, eps: int | None, fmt: str, seed: str | None = None) -> str | None:
    if fmt not in SAVE_OPTIONS:
        return f"unknown format {fmt!r}; choose one of {sorted(SAVE_OPTIONS)}"
    if seed is not None:
        try:
            parse_seed(seed)
        except ValueError as e:
            return str(e)
    if eps is not None:
        try:
            check_eps(eps)
        except ValueError as e:
            return str(e)
    if out_dir.exists() and not out_dir.is_dir():
        return f"output {out_dir} exists and is not a folder"
    missing = [str(p) for p in inputs if not p.exists()]
    return f"no such file or folder: {', '.join(missing)}" if missing else None


BACKENDS = ("torch", "onnx")


def onnx_folder(model: str) -> Path:
    """The export folder of a model: the folder itself, or the `onnx/` export beside a bundled or
    saved generator."""
    from ridexport.runtime import is_export_folder
    from ridtrain.bundled import resolve_model_path

    return Path(model) if is_export_folder(model) else resolve_model_path(model) / "onnx"


def load_backend(model: str, backend: str = "torch", threads: int | None = None):
    """The protector for a backend: the PyTorch module, or its ONNX export's pieces run by
    onnxruntime (with `threads` intra-op threads per session)."""
    if backend == "torch":
        return TorchProtector(load_generator(model))
    if backend == "onnx":
        from ridexport.runtime import OnnxProtector

        return OnnxProtector(onnx_folder(model), threads=threads)
    raise ValueError(f"unknown backend {backend!r}; choose one of {BACKENDS}")


def run_protect(inputs, out_dir, model: str, eps: int | None = None, fmt: str = "png", overwrite: bool = False, keep_metadata: bool = False, backend: str = "torch", seed: str | None = None) -> int:
    """Protect every photo in `inputs` into `out_dir`; returns the exit code (0 ok, 1 some
    photos failed, 2 usage error). One error line per bad photo on stderr; the batch goes on.
    Each photo draws a fresh seed unless `seed` fixes one for all (reproducing, testing)."""
    inputs, out_dir = [Path(p) for p in inputs], Path(out_dir)
    if msg := _usage_error(inputs, out_dir, eps, fmt, seed):
        print(f"error: {msg}", file=sys.stderr)
        return EXIT_USAGE
    try:
        protector = load_backend(model, backend)
    except Exception as e:  # missing folder, bad config.json, unreadable weights: all usage errors here
        print(f"error: cannot load model {model!r}: {e}", file=sys.stderr)
        return EXIT_USAGE
    jobs, errors = find_jobs(inputs, out_dir, fmt)
    for line in errors:
        print(line, file=sys.stderr)
    done, skipped, failed = _run_jobs(protector, jobs, eps, fmt, overwrite, keep_metadata, seed)
    failed += len(errors)
    print(f"{done} protected, {skipped} skipped (already done), {failed} failed -> {out_dir}", file=sys.stderr)
    return EXIT_FAILED if failed else EXIT_OK


def _run_jobs(protector, jobs: list[Job], eps, fmt, overwrite, keep_metadata, seed=None) -> tuple[int, int, int]:
    done = skipped = failed = 0
    columns = (TextColumn("protect"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    console = Console(stderr=True)
    with Progress(*columns, console=console, transient=True, disable=not console.is_terminal) as bar:
        for job in bar.track(jobs):
            if job.dst.exists() and not overwrite:
                skipped += 1
                continue
            try:
                protect_file(protector, job, eps, fmt, keep_metadata, seed)
                done += 1
            except (ImageError, OSError, MemoryError) as e:
                reason = str(e) if isinstance(e, ImageError) else f"{type(e).__name__}: {e}"
                print(f"error: {job.src}: {reason}", file=sys.stderr)  # rich keeps it above the bar
                failed += 1
    return done, skipped, failed
