"""The `rid` Typer app, and what its command modules share. Each command is a thin shell over one
module; the command modules (use, ship, train, judge) register themselves on `app`."""

from __future__ import annotations

import typer

from ridtrain.bundled import DEFAULT_MODEL, model_card

app = typer.Typer(add_completion=False, no_args_is_help=True, help="RID: real-time identity defender toolkit.")


@app.callback()
def main() -> None:
    """RID: protective perturbations for portraits in one forward pass."""


def bundled_note() -> str:
    try:
        return model_card(DEFAULT_MODEL).get("summary", "it has no model card.")
    except FileNotFoundError:
        return "missing from this installation."


def fail(message: str) -> None:
    """A usage error: one line on stderr, exit code 2."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def torch_dtype(name: str):
    from ridtrain.defender.train import DTYPES

    if name not in DTYPES:
        raise ValueError(f"unknown dtype {name!r}; choose one of {sorted(DTYPES)}")
    return DTYPES[name]
