"""Using a model: `rid protect` (files on the command line) and `rid serve` (the web app and the API)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from rid.cli.base import app, bundled_note, fail
from ridpixels import OUTPUT_FORMATS
from ridtrain.bundled import DEFAULT_MODEL


@app.command(epilog=f"Bundled default model: {bundled_note()}")
def protect(
    inputs: List[Path] = typer.Argument(..., help="Image files or folders (searched recursively)."),
    out: Path = typer.Option(..., "-o", "--out", help="Output folder; names and subfolders are kept."),
    model: str = typer.Option(DEFAULT_MODEL, "--model", help="Bundled model name or a saved generator folder."),
    eps: Optional[int] = typer.Option(None, "--eps", help="Bound in 8-bit levels (4, 8, 12, 16); default: the model's."),
    fmt: str = typer.Option("png", "--format", help=f"{' | '.join(OUTPUT_FORMATS)}: PNG and WebP are lossless; JPEG (quality "
                            f"{OUTPUT_FORMATS['jpeg']['quality']}, written .{OUTPUT_FORMATS['jpeg']['extension']}) is the smaller file, "
                            "for upload forms with size limits, and keeps no transparency."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Redo photos whose output already exists."),
    keep_metadata: bool = typer.Option(False, "--keep-metadata", help="Keep EXIF (orientation reset to 1)."),
    backend: str = typer.Option("torch", "--backend", help="torch (the reference) or onnx (the exported file, onnxruntime)."),
    seed: Optional[str] = typer.Option(None, "--seed", help="32 hex digits: the same seed for every photo, to reproduce "
                                       "bytes in tests. Omit it in real use: each photo then gets a fresh secret seed."),
):
    """Protect photos with the PyTorch reference generator, or its ONNX export."""
    from rid.protect import run_protect

    raise typer.Exit(run_protect(inputs, out, model=model, eps=eps, fmt=fmt, overwrite=overwrite, keep_metadata=keep_metadata,
                                 backend=backend, seed=seed))


@app.command(epilog=f"Bundled default model: {bundled_note()}")
def serve(
    host: str = typer.Option("127.0.0.1", "--host"),
    port: int = typer.Option(8000, "--port"),
    model: str = typer.Option(DEFAULT_MODEL, "--model", help="Bundled model name, saved generator or export folder."),
    workers: int = typer.Option(1, "--workers", help="uvicorn worker processes; each loads the model once."),
    jobs: int = typer.Option(2, "--jobs", help="Photos protected at once per worker."),
    queue: int = typer.Option(8, "--queue", help="Requests that may wait for a job; beyond that, 503."),
    cors_origin: Optional[List[str]] = typer.Option(None, "--cors-origin", help="A site allowed to call the API (the widget's host); repeatable. Closed by default."),
    rate_limit: str = typer.Option("120/minute", "--rate-limit", help="Per client address on /v1/protect."),
    web_dist: Optional[Path] = typer.Option(None, "--web-dist", help="Built web app (default: web/dist)."),
):
    """Serve the web app, the model files and the /v1/protect API (the project's main command)."""
    import os

    import uvicorn

    from ridexport.backends import onnx_folder
    from ridexport.manifest import ManifestError, load_manifest
    from server_fallback.app import web_dist_problem
    from server_fallback.settings import Settings
    from server_fallback.startup import startup_lines

    settings = Settings(model=model, jobs=jobs, queue=queue, cors_origins=cors_origin or [], rate_limit=rate_limit)
    if web_dist is not None:
        settings.web_dist = web_dist
    try:
        folder = onnx_folder(model)
        manifest = load_manifest(folder)
    except (ManifestError, OSError, ValueError) as err:
        fail(f"cannot serve model {model!r}: {err}")
    problem = web_dist_problem(settings.web_dist)
    if problem:
        typer.echo(f"warning: {problem}; serving the API only", err=True)
    for line in startup_lines(host, port, manifest, folder, settings.web_dist):
        typer.echo(line)
    os.environ.update(settings.to_env())  # each worker process builds its app from these
    uvicorn.run("server_fallback.app:create_app", factory=True, host=host, port=port, workers=workers)
