"""`rid export`: a saved generator -> an export folder (ONNX, manifest, parity fixture).

    DIR/model.onnx         the generator, fp32, one file, dynamic N/H/W, eps as an input
    DIR/shrink.onnx        the resizes around it, weight-free, run in tiles so that no graph ever
    DIR/apply.onnx         holds a whole large photo (ridexport/tiles.py)
    DIR/model.w16.onnx     fp32 compute, fp16-stored weights: the browser's default download
    DIR/model.fp16.onnx    optional variants (ridexport/variants.py), shipped only when their
    DIR/model.int8.onnx    efficacy on `targets` is within 5 % of model.onnx's
    DIR/manifest.json      contract, pipeline and its pieces, per-file size/sha256/parity, model card
    DIR/fixture/           inputs and PyTorch outputs for browser parity tests

The manifest is written last, once everything has passed: the export refuses to finish (and
leaves no manifest) when parity with PyTorch fails (the generator alone, or the whole tiled
pipeline on photos) or a variant step fails.
"""

from __future__ import annotations

from pathlib import Path

from ridexport import graph, tiles
from ridexport.manifest import FORMAT, file_entry, write_manifest
from ridexport.parity import check_parity, check_pipeline_parity, parity_inputs, pipeline_inputs, require, write_fixture
from ridexport.runtime import OnnxGenerator, OnnxProtector
from ridtrain.defender.seeds import DOMAIN, RULE, SEED_BYTES

PRECISIONS = ("fp32", "w16", "fp16", "int8")
FILES = {"fp32": "model.onnx", "w16": "model.w16.onnx", "fp16": "model.fp16.onnx", "int8": "model.int8.onnx"}
LICENSE = "Apache-2.0"


def export(checkpoint: str, out: str | Path, precisions=None, opset: int = 18, photos: list[Path] = (),
           targets=(), eval_images=None, side: int = 256, samples: int = 1) -> dict:
    """Export, check and describe a generator; returns the manifest. precisions=None means fp32,
    plus w16 when it is lossless. fp16/int8 variants (and w16 when the weights are not exactly
    fp16) need `targets` (paths or loaded) and `eval_images` (file or folder) for their efficacy gate."""
    from ridtrain.bundled import model_card
    from ridtrain.defender.generators import count_flops, count_params, load_generator, weights_fp16_exact

    auto = precisions is None
    precisions = ("fp32", "w16") if auto else tuple(precisions)
    unknown = set(precisions) - set(PRECISIONS)
    if unknown or "fp32" not in precisions:
        raise ValueError(f"precisions must include fp32 and be among {PRECISIONS}, got {list(precisions)}")
    gen = load_generator(checkpoint)
    lossless_w16 = "w16" in precisions and weights_fp16_exact(gen)
    if auto and not lossless_w16:
        precisions = ("fp32",)
    variants = {p: FILES[p] for p in PRECISIONS if p in precisions and p != "fp32" and not (p == "w16" and lossless_w16)}
    if variants and (not targets or eval_images is None):
        raise ValueError(f"{'/'.join(variants)} ship only after an efficacy check against fp32: pass targets "
                         "(`rid export -t CHECKPOINT`) and evaluation photos (--eval-images or --photos)"
                         + ("; w16 needs none when the weights are exactly fp16 (round_weights_to_fp16)" if "w16" in variants else ""))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "manifest.json").unlink(missing_ok=True)  # no manifest until everything has passed
    for precision, name in FILES.items():  # no stale variant from an earlier export
        if precision not in precisions:
            (out / name).unlink(missing_ok=True)

    path = graph.export_onnx(gen, out / FILES["fp32"], opset=opset)
    graph.check_graph(path)
    files = {FILES["fp32"]: file_entry(path, "fp32")}
    for name, piece in tiles.write_tile_graphs(out).items():
        role = name.removesuffix(".onnx")
        graph.check_graph(piece, outputs=tiles.FOUR_D_OUTPUTS[role])
        files[name] = file_entry(piece, "fp32", role=role)
    manifest = _manifest(gen, checkpoint, opset, files, count_params(gen), count_flops(gen), model_card(checkpoint))

    eps = gen.config.eps / 255.0
    cases = parity_inputs(gen.working_size_rule, photos)
    report = check_parity(gen, OnnxGenerator.unverified(path, gen.working_size_rule, gen.config.eps), cases, eps)
    require(report, FILES["fp32"], gen, cases)
    files[FILES["fp32"]]["parity"] = {"against": "pytorch", "cases": report}
    photo_cases = pipeline_inputs(photos)
    report = check_pipeline_parity(gen, OnnxProtector.unverified(out, manifest, FILES["fp32"]), photo_cases)
    require(report, "the tiled pipeline (shrink.onnx, model.onnx, apply.onnx)", gen, cases)
    manifest["pipeline"]["pieces"]["parity"] = {"against": "pytorch (ridtrain/pixels.py)", "cases": report}
    if lossless_w16:
        _add_lossless_w16(out, manifest, gen, cases, photo_cases)
    if variants:
        _add_variants(out, manifest, variants, cases, gen.working_size_rule, photos, targets, eval_images, side, samples)
    manifest["web_default_file"] = FILES["w16"] if FILES["w16"] in manifest["files"] else FILES["fp32"]
    write_fixture(out / "fixture", gen, gen.stride, gen.config.eps)
    write_manifest(out, manifest)
    return manifest


def _add_lossless_w16(out: Path, manifest: dict, gen, cases: dict, photo_cases: dict) -> None:
    """fp16-exact weights: model.w16.onnx computes what model.onnx does; the fp32 rule proves it."""
    from ridexport.variants import make_w16

    name = FILES["w16"]
    path, lossless = make_w16(out / FILES["fp32"], out / name)
    if not lossless:
        raise ValueError(f"{name}: the generator's weights are exactly fp16 but the exported graph's are not")
    graph.check_graph(path)
    report = check_parity(gen, OnnxGenerator.unverified(path, gen.working_size_rule, gen.config.eps), cases, gen.config.eps / 255.0)
    require(report, name)
    photos = check_pipeline_parity(gen, OnnxProtector.unverified(out, manifest, name), photo_cases)
    require(photos, f"the tiled pipeline with {name}")
    manifest["files"][name] = {**file_entry(path, "w16"), "lossless": True,
                               "parity": {"against": "pytorch", "cases": report, "pipeline": photos}}


def _add_variants(out, manifest, variants, cases, working, photos, targets, eval_images, side, samples) -> None:
    from ridexport.variants import add_variants, calibration_images, load_targets
    from ridtrain.data import find_images

    calibration = calibration_images(list(photos) or find_images(eval_images), working)
    add_variants(out, manifest, variants, cases, calibration, load_targets(targets), eval_images, side, samples)


def _manifest(gen, checkpoint, opset, files, params, flops, card) -> dict:
    from ridtrain.defender.generators import ALLOWED_EPS

    eps = gen.config.eps
    image = {"name": "image", "dtype": "float32", "shape": ["N", 3, "H", "W"], "layout": "NCHW RGB", "range": [0, 1]}
    return {
        "format": FORMAT,
        "name": card.get("name", Path(str(checkpoint)).name),
        "version": "0.1.0",
        "arch": type(gen).__name__,
        "generator_config": {k: v for k, v in gen.config.items() if not k.startswith("_")},
        "parameters": params,
        "flops_512": int(flops),
        "eps_levels": eps,
        "eps_levels_allowed": list(ALLOWED_EPS),
        "opset": opset,
        "contract": {
            "inputs": [image, {"name": "eps", "dtype": "float32", "shape": [1], "range": [0, 16 / 255]}]
            + ([{"name": "code", "dtype": "float32", "shape": ["N", gen.code_dim], "range": [-1, 1]}] if gen.code_dim else []),
            "outputs": [
                {"name": "protected", "dtype": "float32", "shape": ["N", 3, "H", "W"], "range": [0, 1]},
                {"name": "delta", "dtype": "float32", "shape": ["N", 3, "H", "W"], "range": ["-eps", "eps"]},
            ],
            "stride": gen.stride,
        },
        "pipeline": {
            "defined_in": "ridtrain/pixels.py",
            "working_size": gen.working_size_rule,
            "steps": [
                "decode; apply EXIF orientation; 8-bit RGB, alpha kept aside untouched",
                "x = v / 255 (float32)",
                "x_work = bilinear resize of x to working_size, align_corners=False, antialias=True",
                "delta = graph(x_work, eps).delta",
                "delta_full = bilinear resize of delta to the photo size, align_corners=False, no antialias; clamp to [-eps, eps]",
                "out = rint(clamp(x + delta_full, 0, 1) * 255), round half to even",
            ],
            "eps_input": "eps in 8-bit levels / 255; default eps_levels",
            **({"code_input": "code = the manifest's seed rule applied to a fresh 16-byte CSPRNG seed per photo, never stored"}
               if gen.code_dim else {}),
            "pieces": tiles.pipeline_description(),
        },
        "seed": {"bytes": SEED_BYTES, "code_dim": gen.code_dim, "rule": RULE, "domain": DOMAIN.decode()} if gen.code_dim else None,
        "files": files,
        "default_file": "model.onnx",
        "trained_against": card.get("trained_against", []),
        "training_data": str(card.get("data", "unknown")),
        "efficacy": card.get("efficacy"),
        "license": LICENSE,
        "notes": card.get("summary", ""),
        # The card's two plain sentences (what it protects against, what it does not), when it has them:
        # the web app leads with them, and says the card does not say when they are missing.
        **({"plain": card["plain"]} if card.get("plain") else {}),
    }
