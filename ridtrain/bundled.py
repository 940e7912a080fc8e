"""Where saved generators are found: a bundled name (a folder of ridtrain/weights/) or a path.
Imports nothing heavy, so that the CLI can show the model card without loading torch."""

from __future__ import annotations

import json
from pathlib import Path

WEIGHTS_DIR = Path(__file__).parent / "weights"
DEFAULT_MODEL = "default"


def resolve_model_path(name_or_path: str | Path) -> Path:
    """A bundled model name (a folder of ridtrain/weights/) or a path to a saved generator."""
    path = Path(name_or_path)
    if (path / "config.json").is_file():
        return path
    bundled = WEIGHTS_DIR / str(name_or_path)
    if (bundled / "config.json").is_file():
        return bundled
    names = sorted(p.name for p in WEIGHTS_DIR.iterdir() if (p / "config.json").is_file()) if WEIGHTS_DIR.is_dir() else []
    raise FileNotFoundError(f"no generator at {name_or_path!r}: not a folder with config.json, nor a bundled model {names}")


def model_card(name_or_path: str | Path = DEFAULT_MODEL) -> dict:
    """What a saved generator was trained against (model_card.json beside its weights), or {}."""
    card = resolve_model_path(name_or_path) / "model_card.json"
    return json.loads(card.read_text()) if card.is_file() else {}
