"""Variants of the fp32 export, their parity against it, and the efficacy gate.

    model.w16.onnx   fp32 graph whose weights are STORED as fp16 (Cast to float32 at load, which
                     onnxruntime folds away): half the download, fp32 speed, and no shader-f16
                     needed on WebGPU. When every weight is exactly representable in fp16 (see
                     ridtrain.defender.generators.round_weights_to_fp16) it computes exactly what model.onnx
                     does, so export.py holds it to the fp32 parity rule against PyTorch instead
                     of the efficacy gate.
    model.fp16.onnx  every float tensor in fp16, inputs and outputs kept float32 (Cast at the edges)
    model.int8.onnx  static QDQ: Conv weights uint8 per channel, Conv inputs uint8 per tensor,
                     calibrated on real photos at the working size. Only Conv is quantised: all-op
                     QDQ on the dynamo export gives a model onnxruntime refuses to load. Both sides
                     are uint8 so that every CPU computes the same numbers (INT8_PROMISE).

Variants do not have to meet the fp32 parity rule; their parity against model.onnx is measured
and reported. A variant ships only if its efficacy (`efficacy`) is within MAX_EFFICACY_DROP of
the fp32 ONNX file's, measured on the same images, targets and random draws; otherwise its file
is deleted and the manifest records why under "rejected".
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ridexport import graph
from ridexport.manifest import file_entry
from ridexport.parity import check_parity
from ridtrain.defender.seeds import code_for

MAX_EFFICACY_DROP = 0.05  # the issue: do not ship a variant whose efficacy drops by more than 5 %
CALIBRATION_IMAGES = 8
FLOAT32 = 1  # onnx.TensorProto.FLOAT
W16_SMALL = 16  # initializers this small are exporter constants, not weights
WASM_ONLY = ("int8",)  # QuantizeLinear has no WebGPU kernel
# Where each file may run in the browser. fp16 computes in fp16: WebGPU only with shader-f16.
BACKENDS = {"fp32": ["webgpu", "wasm"], "w16": ["webgpu", "wasm"], "fp16": ["webgpu-f16", "wasm"], "int8": ["wasm"]}
# Why uint8 weights: onnxruntime's x86 kernels for int8 weights (U8S8, S8S8) multiply with
# VPMADDUBSW on AVX2 and on AVX-512 without VNNI, which saturates its 16-bit pair sums; with VNNI
# they do not saturate. The same int8 file then gave 0.16 levels from model.onnx on an AVX-512 VNNI
# EPYC and 1.6 levels on an AVX2 one. U8U8 sums in 32 bits on every x86-64 CPU, so the integers
# are exact everywhere and the recorded parity holds on any machine. onnxruntime-web's WASM rounds
# differently in places: it stays within WASM_INT8_LEVELS of the x86 result, not always equal.
WASM_INT8_LEVELS = 1
WASM_INT8_MIN_IDENTICAL = 0.99
INT8_PROMISE = {
    "activations": "uint8, per tensor",
    "weights": "uint8, per output channel",
    "same_on_every_cpu": True,
    "promise": "onnxruntime gives the same integers on every x86-64 CPU (AVX2, AVX-512, VNNI), so the parity recorded "
               "against model.onnx holds on any such machine up to float rounding, as for model.onnx itself; in the "
               f"browser (WASM) a protected photo stays within {WASM_INT8_LEVELS} level of that, at least "
               f"{WASM_INT8_MIN_IDENTICAL:.0%} of its values equal",
}


def make_fp16(fp32_path: str | Path, out_path: str | Path) -> Path:
    """fp16 weights and activations, float32 graph inputs/outputs, one file."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16
    from onnxruntime.transformers.onnx_model import OnnxModel

    model = convert_float_to_float16(onnx.load(str(fp32_path)), keep_io_types=True)
    wrapped = OnnxModel(model)
    wrapped.topological_sort()  # the converter appends the input Casts after their consumers
    del wrapped.model.graph.value_info[:]  # stale float32 types of the export; shape inference redoes them
    onnx.save_model(wrapped.model, str(out_path), save_as_external_data=False)
    return Path(out_path)


def make_w16(fp32_path: str | Path, out_path: str | Path) -> tuple[Path, bool]:
    """Float32 initializers stored as float16 and cast back to float32 by a node in front: every
    weight (more than W16_SMALL values), and small constants only when fp16 holds them exactly.
    Returns (path, lossless): lossless when every stored value survived the round trip."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(fp32_path))
    graph_ = model.graph
    casts, kept, lossless = [], [], True
    for init in graph_.initializer:
        w = numpy_helper.to_array(init) if init.data_type == FLOAT32 else None
        exact = w is not None and np.array_equal(w.astype(np.float16).astype(np.float32), w)
        if w is None or (w.size <= W16_SMALL and not exact):
            kept.append(init)
            continue
        lossless &= exact
        half = numpy_helper.from_array(w.astype(np.float16), init.name + "_fp16")
        kept.append(half)
        casts.append(helper.make_node("Cast", [half.name], [init.name], to=FLOAT32, name=init.name + "_cast"))
    del graph_.initializer[:]
    graph_.initializer.extend(kept)
    nodes = casts + list(graph_.node)
    del graph_.node[:]
    graph_.node.extend(nodes)
    onnx.save_model(model, str(out_path), save_as_external_data=False)
    return Path(out_path), lossless


def _calibration_reader(images: list[np.ndarray], eps: float, code_dim: int = 0):
    """Feeds `image` and `eps` (and a fresh random `code`, as real use has) to onnxruntime's
    calibrator, one photo at a time."""
    from onnxruntime.quantization import CalibrationDataReader

    def feeds(x):
        feed = {"image": x.astype(np.float32), "eps": np.array([eps], np.float32)}
        return {**feed, "code": code_for(None, code_dim)[None]} if code_dim else feed

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.feeds = iter([feeds(x) for x in images])

        def get_next(self):
            return next(self.feeds, None)

    return Reader()


def make_int8(fp32_path: str | Path, out_path: str | Path, calibration: list[np.ndarray], eps: float) -> Path:
    """Conv-only static QDQ, uint8 activations and per-channel uint8 weights (INT8_PROMISE),
    calibrated on (1,3,H,W) working-size images."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if not calibration:
        raise ValueError("int8 needs calibration images: pass real photos (--photos or --eval-images)")
    out_path = Path(out_path)
    prepared = out_path.with_name(out_path.name + ".pre.onnx")
    try:
        # ONNX shape inference + basic graph clean-up; the symbolic pass cannot follow the
        # dynamo export's shape arithmetic, and ONNX's own inference is enough for Conv-only QDQ.
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        reader = _calibration_reader(calibration, eps, graph.code_dim(fp32_path))
        quantize_static(str(prepared), str(out_path), reader, quant_format=QuantFormat.QDQ,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QUInt8, per_channel=True,
                        op_types_to_quantize=["Conv"], use_external_data_format=False)
    finally:
        prepared.unlink(missing_ok=True)
    return out_path


def check_variant(path: str | Path, wasm_only: bool = False) -> None:
    """Loads in onnxruntime, passes the graph checks and allow-list, keeps float32 inputs/outputs."""
    import onnx
    import onnxruntime as ort

    ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    graph.check_graph(path, wasm_only=wasm_only)
    model = onnx.load(str(path))
    io = {v.name: v.type.tensor_type.elem_type for v in [*model.graph.input, *model.graph.output]}
    expected = {*graph.INPUTS, *graph.OUTPUTS} | ({graph.CODE_INPUT} & set(io))
    if set(io) != expected or any(t != FLOAT32 for t in io.values()):
        raise ValueError(f"{path}: inputs and outputs must stay {sorted(expected)} in float32, got {io}")


def calibration_images(paths: list[Path], working: dict, limit: int = CALIBRATION_IMAGES) -> list[np.ndarray]:
    """Real photos at the working size that `rid protect` feeds the graph (working: the
    generator's working_size_rule)."""
    from ridtrain import pixels

    return [pixels.working_image(pixels.to_float(pixels.load_image(p).rgb), **working).numpy() for p in paths[:limit]]


def efficacy(gen_like, targets, images, side: int = 256, samples: int = 1) -> dict:
    """`rid eval`'s disruption of each target: protected minus clean denoising MSE (common random
    numbers), and its mean over targets ("value"). Larger is a stronger protection."""
    from ridtrain.attacker.evaluate import evaluate

    if not targets:
        raise ValueError("efficacy needs at least one target (diffusers checkpoint)")
    report = evaluate(targets, images, gen=gen_like, side=side, samples=samples)
    gains = {name: c["protected"]["denoise_mse"] - c["clean"]["denoise_mse"] for name, c in report["targets"].items()}
    return {"measure": "denoise_mse protected - clean, mean over targets", "value": float(np.mean(list(gains.values()))),
            "targets": gains, "images": report["images"], "side": side, "samples_per_image": samples}


def gate(variant: dict, reference: dict, max_drop: float = MAX_EFFICACY_DROP) -> str | None:
    """Why the variant must not ship, or None. Allowed: value >= reference - max_drop * |reference|
    (the same as >= 0.95 * reference when the reference is positive)."""
    floor = reference["value"] - max_drop * abs(reference["value"])
    if variant["value"] >= floor:
        return None
    return f"efficacy {variant['value']:.4g} is below {floor:.4g} ({1 - max_drop:.0%} of the fp32 ONNX file's {reference['value']:.4g})"


def load_targets(targets) -> list:
    """Paths (or hub ids) become loaded targets; loaded targets pass through."""
    from ridtrain.diffusion.targets import load_target

    return [t if hasattr(t, "alphas_cumprod") else load_target(t) for t in targets]


def add_variants(out: Path, manifest: dict, names: dict[str, str], cases: dict, calibration: list[np.ndarray],
                 targets: list, eval_images, side: int, samples: int) -> dict:
    """Make, check and measure each variant in `names` ({precision: file}); ship it into
    manifest["files"] or record it under manifest["rejected"]. Returns the manifest."""
    from ridexport.runtime import OnnxGenerator

    eps = manifest["eps_levels"] / 255.0
    fp32_file = manifest["default_file"]
    working = manifest["pipeline"]["working_size"]
    fp32 = OnnxGenerator.unverified(out / fp32_file, working, manifest["eps_levels"])
    reference_out = {name: fp32.run(x, eps)[0] for name, x in cases.items()}
    reference = manifest["files"][fp32_file]["efficacy"] = efficacy(fp32, targets, eval_images, side, samples)
    for precision, name in names.items():
        path = _make(precision, out / fp32_file, out / name, calibration, eps)
        check_variant(path, wasm_only=precision in WASM_ONLY)
        entry = manifest["files"][name] = file_entry(path, precision, backends=BACKENDS[precision])
        if precision == "int8":
            entry["quantization"] = INT8_PROMISE
        variant = OnnxGenerator.unverified(path, working, manifest["eps_levels"])
        entry["parity"] = {"against": fp32_file, "cases": check_parity(None, variant, cases, eps, reference=reference_out)}
        entry["efficacy"] = {**efficacy(variant, targets, eval_images, side, samples), "against": reference["value"]}
        reason = gate(entry["efficacy"], reference)
        if reason:
            del manifest["files"][name]
            path.unlink()
            manifest.setdefault("rejected", {})[name] = {"precision": precision, "reason": reason,
                                                         "parity": entry["parity"], "efficacy": entry["efficacy"]}
    return manifest


def _make(precision: str, fp32_path: Path, out_path: Path, calibration, eps: float) -> Path:
    if precision == "w16":
        return make_w16(fp32_path, out_path)[0]
    if precision == "fp16":
        return make_fp16(fp32_path, out_path)
    if precision == "int8":
        return make_int8(fp32_path, out_path, calibration, eps)
    raise ValueError(f"unknown variant {precision!r}; choose w16, fp16 or int8")
