"""Run an exported generator through onnxruntime with the same call as the PyTorch one, so that
ridtrain.protect drives either backend through the one pixel pipeline."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from ridexport.manifest import load_manifest


class OnnxGenerator:
    """`gen(x, eps) -> delta` for x (N,3,H,W) in [0,1] at the working size, like the torch models."""

    device = torch.device("cpu")

    def __init__(self, folder: str | Path, file: str | None = None, threads: int | None = None):
        manifest = load_manifest(folder)  # refuses a file whose hash does not match
        file = file or manifest["default_file"]
        if file not in manifest["files"]:
            raise ValueError(f"{file!r} is not in {folder}/manifest.json; files: {sorted(manifest['files'])}")
        self._open(Path(folder) / file, manifest["contract"]["stride"], manifest["eps_levels"], threads)
        self.manifest = manifest

    @classmethod
    def unverified(cls, path: str | Path, stride: int, eps_levels: int, threads: int | None = None) -> "OnnxGenerator":
        """A file no manifest lists yet: the exporter's own, while it checks it."""
        self = cls.__new__(cls)
        self._open(Path(path), stride, eps_levels, threads)
        self.manifest = None
        return self

    def _open(self, path: Path, stride: int, eps_levels: int, threads: int | None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.folder, self.file, self.stride = path.parent, path.name, stride
        self.config = SimpleNamespace(eps=eps_levels)

    def run(self, x: np.ndarray, eps: float) -> tuple[np.ndarray, np.ndarray]:
        """(protected, delta) as float32 arrays."""
        feeds = {"image": np.ascontiguousarray(x, dtype=np.float32), "eps": np.array([eps], dtype=np.float32)}
        protected, delta = self.session.run(["protected", "delta"], feeds)
        return protected, delta

    def __call__(self, x: torch.Tensor, eps: float | None = None) -> torch.Tensor:
        eps = self.config.eps / 255.0 if eps is None else eps
        return torch.from_numpy(self.run(x.detach().cpu().numpy(), eps)[1])


def is_export_folder(path: str | Path) -> bool:
    return (Path(path) / "manifest.json").is_file()
