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
        import onnxruntime as ort

        self.folder = Path(folder)
        self.manifest = load_manifest(self.folder)  # refuses a file whose hash does not match
        self.file = file or self.manifest["default_file"]
        if self.file not in self.manifest["files"]:
            raise ValueError(f"{self.file!r} is not in {self.folder}/manifest.json; files: {sorted(self.manifest['files'])}")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(self.folder / self.file), options, providers=["CPUExecutionProvider"])
        self.stride = self.manifest["contract"]["stride"]
        self.config = SimpleNamespace(eps=self.manifest["eps_levels"])

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
