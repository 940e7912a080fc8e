"""Which runtime protects: the PyTorch reference (ridtrain.defender.protect) or the model's ONNX
export run by onnxruntime (ridexport.runtime). The server, `rid protect` and the attacker's tools
(the public model, as every visitor downloads it) all choose here."""

from __future__ import annotations

from pathlib import Path

from ridexport.runtime import OnnxProtector, is_export_folder
from ridtrain.bundled import resolve_model_path
from ridtrain.defender.generators import load_generator
from ridtrain.defender.protect import TorchProtector

BACKENDS = ("torch", "onnx")


def onnx_folder(model: str) -> Path:
    """The export folder of a model: the folder itself, or the `onnx/` export beside a bundled or
    saved generator."""
    return Path(model) if is_export_folder(model) else resolve_model_path(model) / "onnx"


def load_backend(model: str, backend: str = "torch", threads: int | None = None):
    """The protector for a backend: the PyTorch module, or its ONNX export's pieces run by
    onnxruntime (with `threads` intra-op threads per session)."""
    if backend == "torch":
        return TorchProtector(load_generator(model))
    if backend == "onnx":
        return OnnxProtector(onnx_folder(model), threads=threads)
    raise ValueError(f"unknown backend {backend!r}; choose one of {BACKENDS}")


def public_protector(model: str):
    """The public model as an attacker gets it: the shipped ONNX export when the model has one
    (what every visitor downloads), else the PyTorch generator. Returns (protector, backend)."""
    try:
        shipped = (onnx_folder(model) / "manifest.json").is_file()
    except FileNotFoundError:
        shipped = False
    backend = "onnx" if shipped else "torch"
    return load_backend(model, backend), backend
