"""Run an export folder through onnxruntime.

    OnnxProtector   the whole photo pipeline on the exported pieces (shrink tiles -> generator ->
                    apply tiles, ridexport/tiles.py): what `rid protect --backend onnx` and the
                    server run, and what the browser reproduces. Memory stays bounded by the
                    tile size and the working size, whatever the photo's size.
    OnnxGenerator   the generator graph alone at the working size, with the torch call
                    `gen(x, eps) -> delta`: for parity checks and efficacy measurements.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

import ridpixels
from ridexport.manifest import load_manifest
from ridtrain.defender.seeds import code_for


def _session(path: Path, threads: int | None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    # Idle workers must not spin: between runs the CPU belongs to the numpy/torch steps of the
    # pipeline (and, on a server, to the other requests).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class OnnxGenerator:
    """`gen(x, eps) -> delta` for x (N,3,H,W) in [0,1] at the working size, like the torch models."""

    device = torch.device("cpu")

    def __init__(self, folder: str | Path, file: str | None = None, threads: int | None = None):
        manifest = load_manifest(folder)  # refuses a file whose hash does not match
        file = file or manifest["default_file"]
        if file not in manifest["files"] or manifest["files"][file].get("role", "generator") != "generator":
            generators = sorted(k for k, v in manifest["files"].items() if v.get("role", "generator") == "generator")
            raise ValueError(f"{file!r} is not a generator in {folder}/manifest.json; generators: {generators}")
        self._open(Path(folder) / file, manifest["pipeline"]["working_size"], manifest["eps_levels"], threads)
        self.manifest = manifest

    @classmethod
    def unverified(cls, path: str | Path, working: dict, eps_levels: int, threads: int | None = None) -> "OnnxGenerator":
        """A file no manifest lists yet: the exporter's own, while it checks it. working: the
        generator's working_size_rule, as the manifest will record it."""
        self = cls.__new__(cls)
        self._open(Path(path), working, eps_levels, threads)
        self.manifest = None
        return self

    def _open(self, path: Path, working: dict, eps_levels: int, threads: int | None) -> None:
        self.session = _session(path, threads)
        self.folder, self.file = path.parent, path.name
        self.working_size_rule, self.stride = dict(working), working["multiple"]
        self.config = SimpleNamespace(eps=eps_levels)
        # A randomised generator's graph has the code input; its width is the code's length.
        code = [i for i in self.session.get_inputs() if i.name == "code"]
        self.code_dim = int(code[0].shape[1]) if code else 0

    def run(self, x: np.ndarray, eps: float, code: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(protected, delta) as float32 arrays. code: (N or 1, code_dim) for a randomised
        generator; None draws a fresh seed per image."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        feeds = {"image": x, "eps": np.array([eps], dtype=np.float32)}
        if self.code_dim:
            if code is None:
                code = np.stack([code_for(None, self.code_dim) for _ in range(len(x))])
            feeds["code"] = np.ascontiguousarray(np.broadcast_to(code, (len(x), self.code_dim)), dtype=np.float32)
        protected, delta = self.session.run(["protected", "delta"], feeds)
        return protected, delta

    def __call__(self, x: torch.Tensor, eps: float | None = None, code: torch.Tensor | None = None) -> torch.Tensor:
        eps = self.config.eps / 255.0 if eps is None else eps
        code = None if code is None else code.detach().cpu().numpy()
        return torch.from_numpy(self.run(x.detach().cpu().numpy(), eps, code)[1])


class OnnxProtector:
    """uint8 photo -> protected uint8 photo on the exported pieces, as the manifest describes them."""

    def __init__(self, folder: str | Path, file: str | None = None, threads: int | None = None, *, _unverified=None):
        if _unverified is None:
            self.generator = OnnxGenerator(folder, file, threads)
            manifest = self.generator.manifest
        else:  # the exporter, before it writes the manifest: (manifest draft, generator path)
            manifest, path = _unverified
            self.generator = OnnxGenerator.unverified(path, manifest["pipeline"]["working_size"], manifest["eps_levels"], threads)
        pieces = manifest["pipeline"]["pieces"]
        folder = Path(folder)
        self.shrink = _session(folder / pieces["shrink"]["file"], threads)
        self.apply = _session(folder / pieces["apply"]["file"], threads)
        self.tile = pieces["tile"]
        self.working = manifest["pipeline"]["working_size"]
        self.eps_allowed = manifest["eps_levels_allowed"]
        self.manifest, self.config, self.stride = manifest, self.generator.config, self.generator.stride
        self.code_dim = self.generator.code_dim

    @classmethod
    def unverified(cls, folder: str | Path, manifest: dict, generator_file: str, threads: int | None = None) -> "OnnxProtector":
        return cls(folder, threads=threads, _unverified=(manifest, Path(folder) / generator_file))

    def check_eps(self, eps_levels: int | None) -> int:
        eps = self.config.eps if eps_levels is None else eps_levels
        if eps not in self.eps_allowed:
            raise ValueError(f"eps must be one of {self.eps_allowed} (8-bit levels), got {eps!r}")
        return eps

    def protect_array(self, rgb: np.ndarray, eps_levels: int | None = None, seed: bytes | str | None = None) -> np.ndarray:
        """uint8 (H,W,3) -> protected uint8 (H,W,3), tile by tile. seed: as ridtrain.defender.protect's
        (None: a fresh one, real use)."""
        out = np.empty_like(rgb)
        for (r, c), protected in self.protected_tiles(rgb, eps_levels, seed):
            out[r:r + protected.shape[2], c:c + protected.shape[3]] = ridpixels.to_uint8(protected)
        ridpixels.check_bound(rgb, out, self.check_eps(eps_levels))
        return out

    def protected_float(self, rgb: np.ndarray, eps_levels: int | None = None, seed: bytes | str | None = None) -> np.ndarray:
        """The protected photo before rounding, float32 (1,3,H,W): for parity checks."""
        out = np.empty((1, 3, *rgb.shape[:2]), np.float32)
        for (r, c), protected in self.protected_tiles(rgb, eps_levels, seed):
            out[:, :, r:r + protected.shape[2], c:c + protected.shape[3]] = protected
        return out

    def protected_tiles(self, rgb: np.ndarray, eps_levels: int | None = None, seed: bytes | str | None = None):
        """((row, col), protected float32 (1,3,h,w)) for every tile, by the manifest's pipeline.pieces."""
        eps = np.array([self.check_eps(eps_levels) / 255.0], dtype=np.float32)
        h, w = rgb.shape[:2]
        work = ridpixels.working_size(h, w, **self.working)
        full, t = np.array([h, w], np.int64), self.tile
        tiles = lambda: ((np.array([r, c], np.int64), ridpixels.to_float(rgb[r:r + t, c:c + t]))  # noqa: E731
                         for r, c in ridpixels.tile_origins(h, w, t))
        x_work = np.zeros((1, 3, *work), np.float32)
        for origin, tile in tiles():
            part, (r, c) = self.shrink.run(None, {"tile": tile, "origin": origin, "full": full, "work": np.array(work, np.int64)})
            x_work[:, :, r:r + part.shape[2], c:c + part.shape[3]] += part
        code = code_for(seed, self.code_dim)[None] if self.code_dim else None
        delta = self.generator.run(x_work, float(eps[0]), code)[1]
        for origin, tile in tiles():
            (protected,) = self.apply.run(None, {"tile": tile, "delta": delta, "origin": origin, "full": full, "eps": eps})
            yield (int(origin[0]), int(origin[1])), protected


def is_export_folder(path: str | Path) -> bool:
    return (Path(path) / "manifest.json").is_file()
