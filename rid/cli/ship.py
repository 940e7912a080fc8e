"""Shipping a model: `rid export` (ONNX, manifest, fixture) and `rid check` (parity in every runtime)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from rid.cli.base import app, fail


@app.command("export")
def export_cmd(
    checkpoint: str = typer.Argument(..., help="Saved generator folder or bundled model name."),
    out: Path = typer.Option(..., "-o", "--out", help="Export folder to write."),
    precision: str = typer.Option("auto", "--precision", help="Comma list of fp32, w16, fp16, int8 (fp32 always); "
                                  "auto = fp32, plus w16 when the weights are exactly fp16."),
    opset: int = typer.Option(18, "--opset"),
    photos: Optional[Path] = typer.Option(None, "--photos", help="Real photos for parity (and int8 calibration)."),
    targets: Optional[List[str]] = typer.Option(None, "--target", "-t", help="Diffusers checkpoint for the fp16/int8 efficacy gate; repeatable."),
    eval_images: Optional[Path] = typer.Option(None, "--eval-images", help="Photos for the efficacy gate (default: --photos)."),
    side: int = typer.Option(256, "--side", help="Efficacy gate: the attacker's working size (small keeps it cheap)."),
    samples: int = typer.Option(1, "--samples", help="Efficacy gate: noise draws per image and target."),
):
    """Export a generator to ONNX with a hashed manifest and a parity fixture. Refuses to finish if
    the ONNX output differs from PyTorch beyond the parity rule. fp16/int8 variants are measured
    against model.onnx and ship only if their efficacy on the targets drops by at most 5 %."""
    from ridexport.export import export
    from ridexport.parity import ParityError
    from ridtrain.data import find_images

    try:
        precisions = None if precision == "auto" else tuple(p.strip() for p in precision.split(","))
        manifest = export(checkpoint, out, precisions, opset, find_images(photos) if photos else [],
                          targets or (), eval_images or photos, side, samples)
    except (ValueError, ParityError, OSError) as err:
        fail(str(err))
    for name, entry in manifest["files"].items():
        typer.echo(f"{out / name}: {entry['bytes']:,} bytes, sha256 {entry['sha256'][:16]}…")
    for name, entry in manifest.get("rejected", {}).items():
        typer.echo(f"{out / name}: not shipped: {entry['reason']}")


@app.command("check")
def check_cmd(
    export_dir: Path = typer.Argument(..., help="Export folder (with manifest.json), e.g. ridtrain/weights/default/onnx."),
    checkpoint: Optional[str] = typer.Option(None, "--checkpoint", help="The saved generator it was exported from: recompute the fixture."),
    only: Optional[str] = typer.Option(None, "--only", help="Comma list of runtimes (default: all): manifest, pytorch, onnxruntime, "
                                       "server, wasm-1-thread, wasm-2-threads, webgpu, widget."),
    web_dist: Optional[Path] = typer.Option(None, "--web-dist", help="The built web app for the browser rows (default: web/dist)."),
    chromium: Optional[str] = typer.Option(None, "--chromium", help="Chromium for the browser rows (default: /usr/bin/chromium)."),
):
    """Hold an export to the parity rule in every runtime; prints a table, one row per runtime,
    and exits 1 naming the runtimes that fail."""
    from rid.check import RUNTIMES, print_table, run_check

    runtimes = RUNTIMES if only is None else tuple(r.strip() for r in only.split(","))
    unknown = set(runtimes) - set(RUNTIMES)
    if unknown:
        fail(f"unknown runtime(s) {sorted(unknown)}; choose among {list(RUNTIMES)}")
    rows = run_check(export_dir, checkpoint, runtimes, web_dist, chromium)
    print_table(rows)
    failed = [r.runtime for r in rows if not r.ok]
    if failed:
        typer.echo(f"error: parity fails in: {', '.join(failed)}", err=True)
        raise typer.Exit(1)
