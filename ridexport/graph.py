"""The exported generator graph and the ONNX operators it may use.

Graph contract (working size; the pixel pipeline around it is ridtrain.pixels):
    inputs   image    float32 (N, 3, H, W) RGB in [0, 1], H and W multiples of the stride (dynamic)
             eps      float32 (1,) the bound on the [0, 1] scale, e.g. 8/255
             code     float32 (N, code_dim) a randomised generator's code (ridtrain/defender/seeds.py); absent
                      when code_dim is 0
    outputs  protected float32 (N, 3, H, W) = clamp(image + delta, 0, 1)
             delta     float32 (N, 3, H, W), |delta| <= eps
"""

from __future__ import annotations

from pathlib import Path

import torch

INPUTS = ("image", "eps")
CODE_INPUT = "code"


def graph_inputs(gen) -> tuple[str, ...]:
    return INPUTS + ((CODE_INPUT,) if gen.code_dim else ())


def code_dim(path: str | Path) -> int:
    """The width of an exported generator's code input; 0 when it has none (deterministic)."""
    import onnx

    for value in onnx.load(str(path), load_external_data=False).graph.input:
        if value.name == CODE_INPUT:
            return value.type.tensor_type.shape.dim[1].dim_value
    return 0


OUTPUTS = ("protected", "delta")

# Every operator our graphs may use has a kernel in onnxruntime-web 1.30's WebGPU execution provider
# (its docs/webgpu-operators.md; the WASM one is the full CPU provider). Notably absent there, and so
# here: GroupNormalization, Max, Min, Round, SpaceToDepth, QuantizeLinear.
WEBGPU_OPS = frozenset(
    {
        "Abs", "Add", "AveragePool", "BatchNormalization", "Cast", "Ceil", "Clip", "Concat", "Conv",
        "ConvTranspose", "Cos", "DepthToSpace", "DequantizeLinear", "Div", "Equal", "Erf", "Exp", "Expand",
        "Flatten", "Floor", "Gather", "Gelu", "Gemm", "Greater", "InstanceNormalization",
        "LayerNormalization", "LeakyRelu", "Less", "MatMul", "MaxPool", "Mul", "Neg", "Pad", "Pow", "Range",
        "Reciprocal", "ReduceMax", "ReduceMean", "ReduceMin", "ReduceSum", "Relu", "Reshape", "Resize",
        "Shape", "Sigmoid", "Slice", "Softmax", "Split", "Sqrt", "Squeeze", "Sub", "Tanh", "Tile",
        "Transpose", "Unsqueeze", "Where",
    }
)
ALLOWED_OPS = WEBGPU_OPS
# The int8 variant's activation QuantizeLinear has no WebGPU kernel: that file is for WASM only.
WASM_ONLY_OPS = frozenset({"QuantizeLinear"})


class ProtectGraph(torch.nn.Module):
    """What gets exported: the generator with its bound as an input, and the clamp inside."""

    def __init__(self, gen):
        super().__init__()
        self.gen = gen

    def forward(self, image: torch.Tensor, eps: torch.Tensor, code: torch.Tensor | None = None):
        delta = self.gen(image, eps, code)
        return (image + delta).clamp(0.0, 1.0), delta


def export_onnx(gen, path: str | Path, opset: int = 18, probe: int = 64) -> Path:
    """Write the fp32 graph as ONE .onnx file (no external-data sidecar) with dynamic N, H, W."""
    import onnx

    gen = gen.eval().float()
    stride = gen.stride
    image = torch.rand(1, 3, probe, probe + stride)
    eps = torch.tensor([gen.config.eps / 255.0])
    n = torch.export.Dim("n", min=1, max=64)
    dims = {
        "image": {0: n, 2: stride * torch.export.Dim("h", min=1, max=4096 // stride),
                  3: stride * torch.export.Dim("w", min=1, max=4096 // stride)},
        "eps": None,
    }
    args = (image, eps)
    if gen.code_dim:  # a batch of 2: with 1, the export would fix N at the code's broadcastable 1
        image = image.expand(2, -1, -1, -1)
        args, dims["code"] = (image, eps, torch.rand(2, gen.code_dim) * 2 - 1), {0: n}
    path = Path(path)
    program = torch.onnx.export(
        ProtectGraph(gen).eval(), args, dynamo=True, opset_version=opset, dynamic_shapes=dims,
        input_names=list(graph_inputs(gen)), output_names=list(OUTPUTS), verbose=False,
    )
    model = program.model_proto
    # The exporter records, per node, its FX node, module path and stack trace: about 100 KB of the
    # 2 MB web file that no runtime reads.
    for node in model.graph.node:
        del node.metadata_props[:]
    tmp = path.with_name(path.name + ".tmp")
    onnx.save_model(model, str(tmp), save_as_external_data=False)
    tmp.replace(path)
    return path


def graph_ops(path: str | Path) -> set[str]:
    import onnx

    return {node.op_type for node in onnx.load(str(path)).graph.node}


def check_graph(path: str | Path, outputs=OUTPUTS, wasm_only: bool = False) -> None:
    """onnx.checker passes, shape inference gives the output shapes, and every op is allowed
    (on WebGPU and WASM; with wasm_only, the WASM-only ones too)."""
    import onnx

    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    shapes = {o.name: o.type.tensor_type.shape for o in inferred.graph.output}
    for name in outputs:
        if name not in shapes or len(shapes[name].dim) != 4:
            raise ValueError(f"{path}: shape inference gives no 4-D shape for {name!r}")
    bad = graph_ops(path) - ALLOWED_OPS - (WASM_ONLY_OPS if wasm_only else set())
    if bad:
        raise ValueError(f"{path}: operators outside the WebGPU+WASM allow-list: {sorted(bad)}")
