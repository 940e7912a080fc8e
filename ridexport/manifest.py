"""manifest.json: what an export folder holds, how to call it, and the hash of every file.

Loading verifies the manifest against its JSON Schema (manifest.schema.json, published here) and
every file against its sha256; a mismatch is refused, never silently used."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

SCHEMA_PATH = Path(__file__).with_name("manifest.schema.json")
FORMAT = "rid-manifest/1"


class ManifestError(ValueError):
    pass


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def file_entry(path: Path, precision: str, role: str = "generator", backends=("webgpu", "wasm")) -> dict:
    """A file's manifest entry; `role` is generator, shrink or apply (ridexport/tiles.py)."""
    return {"bytes": path.stat().st_size, "sha256": sha256_file(path), "precision": precision, "role": role,
            "backends": list(backends)}


def validate(manifest: dict) -> None:
    import jsonschema

    try:
        jsonschema.validate(manifest, json.loads(SCHEMA_PATH.read_text()))
    except jsonschema.ValidationError as err:
        raise ManifestError(f"manifest does not match {SCHEMA_PATH.name}: {err.message}") from None


def write_manifest(folder: Path, manifest: dict) -> Path:
    validate(manifest)
    path = folder / "manifest.json"
    tmp = path.with_name("manifest.json.tmp")
    tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    tmp.replace(path)
    return path


def load_manifest(folder: str | Path) -> dict:
    """The manifest of an export folder, after checking its schema and every file's size and sha256."""
    folder = Path(folder)
    path = folder / "manifest.json"
    if not path.is_file():
        raise ManifestError(f"{folder}: no manifest.json (make one with `rid export`)")
    manifest = json.loads(path.read_text())
    validate(manifest)
    for name, entry in manifest["files"].items():
        file = folder / name
        if not file.is_file():
            raise ManifestError(f"{file}: listed in the manifest but missing")
        if file.stat().st_size != entry["bytes"] or sha256_file(file) != entry["sha256"]:
            raise ManifestError(f"{file}: sha256 does not match the manifest; refusing to load it")
    return manifest
