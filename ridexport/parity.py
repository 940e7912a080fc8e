"""Parity between PyTorch and an exported graph, and the fixture that browsers test against.

The 8-bit rule: outputs are compared after ridtrain.pixels.to_uint8 (rint of x*255, half to
even: numpy rint, torch.round and the browser's Uint8ClampedArray agree; Math.round does not).
An export passes when float max |Δ| <= FLOAT_TOL, >= 99.9 % of 8-bit values are identical and
none is off by more than one level.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ridtrain import pixels

FLOAT_TOL = 1e-4
MIN_IDENTICAL = 0.999
MAX_LEVELS = 1
RANDOM_SIZES = ((512, 512), (512, 688), (528, 784))  # square, non-square, not a multiple of 512
# Whole photos through the tiled pipeline: enlarged, one row of two tiles, 3 x 3 tiles, and the
# long-side cap (2048) with several tiles each way.
PHOTO_SIZES = ((90, 120), (200, 530), (1100, 1300), (700, 5000))
FIXTURE_PHOTO_SIZES = ((90, 120), (200, 530))


class ParityError(ValueError):
    pass


def compare(reference: np.ndarray, candidate: np.ndarray) -> dict:
    """Float and 8-bit agreement of two (N,3,H,W) [0,1] images."""
    ref8 = pixels.to_uint8(torch.from_numpy(reference[:1])).astype(int)
    cand8 = pixels.to_uint8(torch.from_numpy(candidate[:1])).astype(int)
    return {
        "max_abs": float(np.abs(reference - candidate).max()),
        "identical_8bit": float((ref8 == cand8).mean()),
        "max_levels": int(np.abs(ref8 - cand8).max()),
    }


def passes(stats: dict) -> bool:
    return stats["max_abs"] <= FLOAT_TOL and stats["identical_8bit"] >= MIN_IDENTICAL and stats["max_levels"] <= MAX_LEVELS


def parity_inputs(working: dict, photos: list[Path] = (), seed: int = 0) -> dict[str, np.ndarray]:
    """Random images at RANDOM_SIZES plus real photos at their working size (working: the
    generator's working_size_rule)."""
    rng = np.random.default_rng(seed)
    cases = {f"random-{h}x{w}": rng.random((1, 3, h, w), dtype=np.float32) for h, w in RANDOM_SIZES}
    for photo in photos:
        x = pixels.working_image(pixels.to_float(pixels.load_image(photo).rgb), **working)
        cases[f"photo-{photo.stem}"] = x.numpy()
    return cases


def pipeline_inputs(photos: list[Path] = (), seed: int = 1) -> dict[str, np.ndarray]:
    """uint8 (H,W,3) photos for the whole pipeline: photo-like images at PHOTO_SIZES, and real photos."""
    rng = np.random.default_rng(seed)
    cases = {f"smooth-{h}x{w}": _smooth_image(rng, h, w) for h, w in PHOTO_SIZES}
    for photo in photos:
        cases[f"photo-{photo.stem}"] = pixels.load_image(photo).rgb
    return cases


def check_pipeline_parity(gen, protector, cases: dict[str, np.ndarray]) -> dict:
    """Per photo stats of an OnnxProtector's float output against the PyTorch pipeline's."""
    from ridtrain.protect import protected_float

    return {name: compare(protected_float(gen, rgb).numpy(), protector.protected_float(rgb)) for name, rgb in cases.items()}


@torch.no_grad()
def torch_protected(gen, x: np.ndarray, eps: float) -> np.ndarray:
    return gen.protect(torch.from_numpy(x), eps).numpy()


def check_parity(gen, onnx_gen, cases: dict[str, np.ndarray], eps: float, reference=None) -> dict:
    """Per case stats of onnx_gen against the PyTorch generator (or `reference` outputs)."""
    report = {}
    for name, x in cases.items():
        expected = reference[name] if reference else torch_protected(gen, x, eps)
        report[name] = compare(expected, onnx_gen.run(x, eps)[0])
    return report


def self_check(protector) -> dict:
    """An OnnxProtector on its own export's fixture photos: per photo, compare()'s stats and
    whether they pass the rule. The server's readiness depends on it."""
    folder = protector.generator.folder / "fixture"
    index = json.loads((folder / "parity.json").read_text())
    report = {}
    for case in index["photos"]:
        rgb = pixels.load_image(folder / case["input_png"]).rgb
        expected = np.fromfile(folder / case["protected_f32"], dtype="<f4").reshape(1, 3, case["height"], case["width"])
        stats = compare(expected, protector.protected_float(rgb, case["eps_levels"]))
        report[case["name"]] = {**stats, "passes": passes(stats)}
    if not report:
        raise ParityError(f"{folder}/parity.json lists no photos to check")
    return report


def require(report: dict, what: str) -> None:
    failed = {k: v for k, v in report.items() if not passes(v)}
    if failed:
        raise ParityError(f"{what} fails parity (float <= {FLOAT_TOL}, >= {MIN_IDENTICAL:.1%} identical 8-bit, <= {MAX_LEVELS} level): {failed}")


def write_fixture(folder: Path, gen, stride: int, eps_levels: int, seed: int = 0) -> Path:
    """fixture/: 8-bit input PNGs and PyTorch outputs as raw little-endian float32 (N,3,H,W) and
    as 8-bit PNGs; parity.json indexes them. "cases" are for the generator graph alone (inputs at
    a working size); "photos" for the whole tiled pipeline (any size; manifest pipeline.pieces)."""
    from ridtrain.protect import protected_float

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)

    def entry(name, rgb, protected):
        pixels.save_image(folder / f"{name}.input.png", rgb)
        protected.astype("<f4").tofile(folder / f"{name}.protected.f32")
        pixels.save_image(folder / f"{name}.protected.png", pixels.to_uint8(torch.from_numpy(protected)))
        return {"name": name, "height": rgb.shape[0], "width": rgb.shape[1], "eps_levels": eps_levels,
                "input_png": f"{name}.input.png", "protected_f32": f"{name}.protected.f32", "protected_png": f"{name}.protected.png"}

    cases = []
    for i, (h, w) in enumerate(((2 * stride, 3 * stride), (4 * stride, 4 * stride))):
        rgb = _smooth_image(rng, h, w)
        cases.append(entry(f"case{i}-{h}x{w}", rgb, torch_protected(gen, pixels.to_float(rgb).numpy(), eps_levels / 255.0)))
    photos = []
    for i, (h, w) in enumerate(FIXTURE_PHOTO_SIZES):
        rgb = _smooth_image(rng, h, w)
        photos.append(entry(f"photo{i}-{h}x{w}", rgb, protected_float(gen, rgb, eps_levels).numpy()))
    index = {"tolerance": {"float_max_abs": FLOAT_TOL, "identical_8bit": MIN_IDENTICAL, "max_levels": MAX_LEVELS},
             "cases": cases, "photos": photos}
    (folder / "parity.json").write_text(json.dumps(index, indent=2) + "\n")
    return folder


def _smooth_image(rng, h: int, w: int) -> np.ndarray:
    """A photo-like uint8 image: a smooth colour field plus mild noise (not pure noise)."""
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    base = np.stack([np.sin(3 * xx + c) * np.cos(2 * yy - c) for c in (0.0, 1.0, 2.0)], axis=-1)
    img = 127.5 + 100 * base + rng.normal(0, 8, (h, w, 3))
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)
