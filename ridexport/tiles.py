"""The resizes of the pixel pipeline as two small weight-free ONNX graphs that run in tiles.

A 24 MP photo is 288 MB as float32 RGB, over WebGPU's 128 MiB storage-buffer limit, so no graph
ever sees the whole photo. The photo is cut on a fixed TILE x TILE grid from its top-left corner:

    shrink.onnx   photo tile -> its share of the working-size image (to_working)
                  inputs  tile (1,3,h,w) float32 [0,1]; origin int64 [row, col] of the tile;
                          full int64 [H, W] of the photo; work int64 [Hw, Ww]
                  outputs part (1,3,k,m) float32; part_origin int64 [row, col] in the working image
                  x_work = zeros(1,3,Hw,Ww); for every tile in row-major order:
                  x_work[..., r:r+k, c:c+m] += part   (float32 adds, in that order)
    model.onnx    x_work -> delta at the working size (ridexport/graph.py)
    apply.onnx    photo tile + the whole working-size delta -> the protected tile (delta_to_full,
                  clamp to [-eps, eps], add, clamp to [0, 1])
                  inputs  tile, delta (1,3,Hw,Ww), origin, full, eps (1,) float32
                  outputs protected (1,3,h,w) float32 [0,1]

The weights are computed inside the graphs from the integers, so no runtime re-implements a
resize. They are those of ridtrain.pixels (torch's bilinear, align_corners=False):
- shrink, antialiased: scale = in/out, support s = max(scale, 1); output index i has centre
  c = scale * (i + 0.5) and weight relu(1 - |j + 0.5 - c| / s) on input index j, divided by the
  sum of those weights over the whole axis. A tile multiplies by its slice of the two matrices
  (part = Wr . tile . Wc^T), so tiles add up to the whole-image resize up to float rounding. The
  normalising sum only visits the inputs that can carry weight, so a tile's cost does not grow
  with the photo.
- apply, plain bilinear: scale = in/out; src = max(scale * (j + 0.5) - 0.5, 0); i0 = floor(src),
  i1 = min(i0 + 1, in - 1), weights (1 - l, l) with l = src - i0; columns first, then rows.
Float32 throughout; tests hold both graphs to torch's F.interpolate on whole photos.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

TILE = 512
OPSET = 18
SHRINK_FILE, APPLY_FILE = "shrink.onnx", "apply.onnx"
FOUR_D_OUTPUTS = {"shrink": ("part",), "apply": ("protected",)}  # what shape inference must resolve


class _Builder:
    """Just enough of a graph builder: nodes get unique output names from one counter."""

    def __init__(self):
        from onnx import helper

        self.helper, self.nodes, self.inits, self.count = helper, [], [], 0

    def op(self, op_type: str, *inputs: str, **attrs) -> str:
        self.count += 1
        out = f"{op_type.lower()}_{self.count}"
        self.nodes.append(self.helper.make_node(op_type, list(inputs), [out], **attrs))
        return out

    def const(self, value, dtype=np.float32) -> str:
        from onnx import numpy_helper

        self.count += 1
        name = f"const_{self.count}"
        self.inits.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def rename(self, tensor: str, name: str) -> str:
        """Give a graph output its contract name."""
        for node in self.nodes:
            node.output[:] = [name if o == tensor else o for o in node.output]
        return name

    def model(self, name: str, inputs, outputs):
        import onnx

        graph = self.helper.make_graph(self.nodes, name, inputs, outputs, self.inits)
        model = self.helper.make_model(graph, opset_imports=[self.helper.make_opsetid("", OPSET)],
                                       producer_name="ridexport.tiles")
        model.ir_version = 8
        onnx.checker.check_model(model, full_check=True)
        return model


def _axis(b: _Builder, axis: int, origin: str, full: str, tile_size: str) -> tuple[str, str, str]:
    """(o, n, size) of one axis as float32 scalars: tile start, tile length, photo length."""
    index = b.const(axis, np.int64)
    pick = lambda v: b.op("Cast", b.op("Gather", v, index, axis=0), to=1)  # noqa: E731
    return pick(origin), pick(tile_size), pick(full)


def _shrink_weights(b: _Builder, axis: int, origin: str, full: str, work: str, tile_size: str) -> tuple[str, str]:
    """(weights (k, n) of this tile's n input positions for k output positions, first output index)."""
    o, n, size_in = _axis(b, axis, origin, full, tile_size)
    size_out = b.op("Cast", b.op("Gather", work, b.const(axis, np.int64), axis=0), to=1)
    half, one, zero = b.const(0.5), b.const(1.0), b.const(0.0)
    scale = b.op("Div", size_in, size_out)
    support = b.op("Clip", scale, one)  # max(scale, 1)
    # Output rows whose window can reach this tile, widened by one on each side against float
    # error; rows with no weight here contribute exact zeros.
    first = b.op("Sub", b.op("Div", b.op("Sub", b.op("Add", o, half), support), scale), half)
    last = b.op("Sub", b.op("Div", b.op("Add", b.op("Sub", b.op("Add", o, n), half), support), scale), half)
    lo = b.op("Clip", b.op("Sub", b.op("Floor", first), one), zero, size_out)
    hi = b.op("Clip", b.op("Add", b.op("Floor", last), b.const(2.0)), zero, size_out)
    centres = b.op("Mul", scale, b.op("Add", b.op("Range", lo, hi, one), half))  # (k,)
    # Every input position with weight on those outputs: [j0, j1) holds the tile and the windows,
    # so the cost follows the tile, not the photo's length.
    j0 = b.op("Clip", b.op("Sub", b.op("Floor", b.op("Sub", b.op("Mul", lo, scale), support)), one), zero, size_in)
    j1 = b.op("Clip", b.op("Add", b.op("Floor", b.op("Add", b.op("Mul", hi, scale), support)), b.const(2.0)), zero, size_in)
    inputs = b.op("Add", b.op("Range", j0, j1, one), half)  # (j1 - j0,)
    distance = b.op("Abs", b.op("Sub", b.op("Unsqueeze", inputs, b.const([0], np.int64)),
                                b.op("Unsqueeze", centres, b.const([1], np.int64))))
    tri = b.op("Relu", b.op("Sub", one, b.op("Div", distance, support)))  # (k, j1 - j0)
    norm = b.op("ReduceSum", tri, b.const([1], np.int64), keepdims=1)  # weights outside [j0, j1) are 0
    start = b.op("Cast", b.op("Unsqueeze", b.op("Sub", o, j0), b.const([0], np.int64)), to=7)
    end = b.op("Cast", b.op("Unsqueeze", b.op("Sub", b.op("Add", o, n), j0), b.const([0], np.int64)), to=7)
    mine = b.op("Slice", tri, start, end, b.const([1], np.int64))  # (k, n)
    return b.op("Div", mine, norm), b.op("Cast", b.op("Unsqueeze", lo, b.const([0], np.int64)), to=7)


def build_shrink():
    from onnx import TensorProto, helper

    b = _Builder()
    size = b.op("Slice", b.op("Shape", "tile"), b.const([2], np.int64), b.const([4], np.int64))
    w_rows, row0 = _shrink_weights(b, 0, "origin", "full", "work", size)
    w_cols, col0 = _shrink_weights(b, 1, "origin", "full", "work", size)
    across = b.op("MatMul", "tile", b.op("Transpose", w_cols, perm=[1, 0]))  # (1,3,h,m)
    b.rename(b.op("MatMul", w_rows, across), "part")  # (1,3,k,m)
    b.rename(b.op("Concat", row0, col0, axis=0), "part_origin")
    f32 = TensorProto.FLOAT
    inputs = [helper.make_tensor_value_info("tile", f32, [1, 3, "h", "w"]),
              *(helper.make_tensor_value_info(n, TensorProto.INT64, [2]) for n in ("origin", "full", "work"))]
    outputs = [helper.make_tensor_value_info("part", f32, [1, 3, "k", "m"]),
               helper.make_tensor_value_info("part_origin", TensorProto.INT64, [2])]
    return b.model("rid_shrink", inputs, outputs)


def _expand_taps(b: _Builder, axis: int, origin: str, full: str, tile_size: str, delta_size: str):
    """Plain bilinear taps of the tile's positions into delta: (i0, i1) int64 and weights (w0, w1)."""
    o, n, size_out = _axis(b, axis, origin, full, tile_size)
    size_in = b.op("Cast", b.op("Gather", delta_size, b.const(axis, np.int64), axis=0), to=1)
    half, one = b.const(0.5), b.const(1.0)
    scale = b.op("Div", size_in, size_out)
    positions = b.op("Range", o, b.op("Add", o, n), one)
    src = b.op("Relu", b.op("Sub", b.op("Mul", scale, b.op("Add", positions, half)), half))
    i0 = b.op("Floor", src)
    w1 = b.op("Sub", src, i0)
    i1 = b.op("Clip", b.op("Add", i0, one), b.const(0.0), b.op("Sub", size_in, one))
    return b.op("Cast", i0, to=7), b.op("Cast", i1, to=7), b.op("Sub", one, w1), w1


def build_apply():
    from onnx import TensorProto, helper

    b = _Builder()
    size = b.op("Slice", b.op("Shape", "tile"), b.const([2], np.int64), b.const([4], np.int64))
    delta_size = b.op("Slice", b.op("Shape", "delta"), b.const([2], np.int64), b.const([4], np.int64))
    r0, r1, rw0, rw1 = _expand_taps(b, 0, "origin", "full", size, delta_size)
    c0, c1, cw0, cw1 = _expand_taps(b, 1, "origin", "full", size, delta_size)
    cols = b.op("Add", b.op("Mul", b.op("Gather", "delta", c0, axis=3), cw0),
                b.op("Mul", b.op("Gather", "delta", c1, axis=3), cw1))  # (1,3,Hw,w)
    column = lambda v: b.op("Unsqueeze", v, b.const([1], np.int64))  # noqa: E731  (h,) -> (h,1)
    full_delta = b.op("Add", b.op("Mul", column(rw0), b.op("Gather", cols, r0, axis=2)),
                      b.op("Mul", column(rw1), b.op("Gather", cols, r1, axis=2)))  # (1,3,h,w)
    eps = b.op("Squeeze", "eps", b.const([0], np.int64))
    bounded = b.op("Clip", full_delta, b.op("Neg", eps), eps)
    b.rename(b.op("Clip", b.op("Add", "tile", bounded), b.const(0.0), b.const(1.0)), "protected")
    f32 = TensorProto.FLOAT
    inputs = [helper.make_tensor_value_info("tile", f32, [1, 3, "h", "w"]),
              helper.make_tensor_value_info("delta", f32, [1, 3, "hw", "ww"]),
              *(helper.make_tensor_value_info(n, TensorProto.INT64, [2]) for n in ("origin", "full")),
              helper.make_tensor_value_info("eps", f32, [1])]
    outputs = [helper.make_tensor_value_info("protected", f32, [1, 3, "h", "w"])]
    return b.model("rid_apply", inputs, outputs)


def write_tile_graphs(folder: str | Path) -> dict[str, Path]:
    """shrink.onnx and apply.onnx into `folder` (atomically); returns their paths."""
    import onnx

    paths = {}
    for name, build in ((SHRINK_FILE, build_shrink), (APPLY_FILE, build_apply)):
        path = Path(folder) / name
        tmp = path.with_name(path.name + ".tmp")
        onnx.save_model(build(), str(tmp))
        tmp.replace(path)
        paths[name] = path
    return paths


def pipeline_description(tile: int = TILE) -> dict:
    """How the pieces fit, for the manifest."""
    return {
        "tile": tile,
        "shrink": {"file": SHRINK_FILE, "inputs": ["tile", "origin", "full", "work"], "outputs": ["part", "part_origin"]},
        "generator": {"inputs": ["image", "eps"], "outputs": ["protected", "delta"], "use": "delta"},
        "apply": {"file": APPLY_FILE, "inputs": ["tile", "delta", "origin", "full", "eps"], "outputs": ["protected"]},
        "steps": [
            "rgb = decoded photo, uint8 (H, W, 3); tiles are rgb[r:r+tile, c:c+tile] for r in 0, tile, 2*tile, ... "
            "and c likewise, row-major; a tile as float32 (1,3,h,w) is v / 255",
            "(Hw, Ww) = working_size(H, W); x_work = float32 zeros (1,3,Hw,Ww)",
            "for each tile: part, (pr, pc) = shrink(tile, origin=[r, c], full=[H, W], work=[Hw, Ww]); "
            "x_work[:, :, pr:pr+k, pc:pc+m] += part",
            "delta = generator(image=x_work, eps).delta",
            "for each tile: out[r:r+h, c:c+w] = to_uint8(apply(tile, delta, origin=[r, c], full=[H, W], eps).protected)",
            "to_uint8(x) = rint(float32(x * 255)), half to even, clamped to 0..255 (JS: Uint8ClampedArray of Math.fround(x * 255))",
        ],
    }
