"""`rid protect`: photo files and folders in, protected photos out, on either backend.

A batch goes on past a bad file (one error line names it); outputs are written to a temporary
name and renamed; photos already done are skipped unless asked to overwrite. Each output keeps its
input's path and stem under the out folder, with the chosen format's extension
(ridpixels.OUTPUT_FORMATS: .png, .jpg, .webp).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from ridexport.backends import load_backend
from ridpixels import OUTPUT_FORMATS
from ridtrain.defender.generators import check_eps
from ridtrain.defender.protect import protect_bytes
from ridtrain.defender.seeds import parse_seed
from ridtrain.pixels import ImageError, is_image_path, write_atomic

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


@dataclass
class Job:
    src: Path
    dst: Path


def find_jobs(inputs: list[Path], out_dir: Path, fmt: str) -> tuple[list[Job], list[str]]:
    """Jobs for files and folders (recursive, image suffixes, case-insensitive), keeping the path
    relative to the folder given; plus error lines for outputs that two inputs would share or that
    would be their own input."""
    suffix, out_root = "." + OUTPUT_FORMATS[fmt]["extension"], out_dir.resolve()
    jobs, errors, claimed = [], [], {}
    for item in inputs:
        if item.is_dir():
            files = sorted(p for p in item.rglob("*") if is_image_path(p.relative_to(item)) and p.is_file())
            pairs = [(p, p.relative_to(item)) for p in files if not p.resolve().is_relative_to(out_root)]
        else:
            pairs = [(item, Path(item.name))]
        for src, rel in pairs:
            dst = out_dir / rel.with_suffix(suffix)
            if dst.resolve() == src.resolve():  # a.png into its own folder: never replace (or skip as done) the original
                errors.append(f"error: {src}: the protected copy would replace the photo itself; choose another output folder")
                continue
            if dst in claimed:
                errors.append(f"error: {src}: output {dst} is already taken by {claimed[dst]}")
                continue
            claimed[dst] = src
            jobs.append(Job(src, dst))
    return jobs, errors


def protect_file(protector, job: Job, eps: int | None, fmt: str, keep_metadata: bool, seed=None) -> None:
    """Load, protect and save one photo (written atomically); raises ImageError or OSError."""
    data = protect_bytes(protector, job.src.read_bytes(), eps, fmt, keep_metadata, seed=seed)
    job.dst.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(job.dst, data)


def _usage_error(inputs: list[Path], out_dir: Path, eps: int | None, fmt: str, seed: str | None = None) -> str | None:
    if fmt not in OUTPUT_FORMATS:
        return f"unknown format {fmt!r}; choose one of {', '.join(OUTPUT_FORMATS)}"
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
