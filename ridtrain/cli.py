"""The `rid` command line. Each command is a thin shell over one module."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from ridtrain.generators import DEFAULT_MODEL

app = typer.Typer(add_completion=False, no_args_is_help=True, help="RID: real-time identity defender toolkit.")


def _bundled_note() -> str:
    from ridtrain.generators import model_card

    card = model_card(DEFAULT_MODEL)
    return card.get("summary", "The bundled default model has no model card.")


@app.command(epilog=f"Bundled default model: {_bundled_note()}")
def protect(
    inputs: List[Path] = typer.Argument(..., help="Image files or folders (searched recursively)."),
    out: Path = typer.Option(..., "-o", "--out", help="Output folder; names and subfolders are kept."),
    model: str = typer.Option(DEFAULT_MODEL, "--model", help="Bundled model name or a saved generator folder."),
    eps: Optional[int] = typer.Option(None, "--eps", help="Bound in 8-bit levels (4, 8, 12, 16); default: the model's."),
    fmt: str = typer.Option("png", "--format", help="png or webp (both lossless)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Redo photos whose output already exists."),
    keep_metadata: bool = typer.Option(False, "--keep-metadata", help="Keep EXIF (orientation reset to 1)."),
):
    """Protect photos with the PyTorch reference generator."""
    from ridtrain.protect import run_protect

    raise typer.Exit(run_protect(inputs, out, model=model, eps=eps, fmt=fmt, overwrite=overwrite, keep_metadata=keep_metadata))
