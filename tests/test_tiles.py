"""The tiled resize graphs (ridexport/tiles.py) against the canonical pixel pipeline, and a
24-megapixel photo through the exported pieces with bounded tensors."""

import numpy as np
import onnxruntime as ort
import pytest
import torch

import ridpixels
from ridexport import graph, tiles
from ridtrain import pixels

SIZES = [(90, 120), (512, 512), (513, 1025), (1234, 777), (700, 5000), (3000, 2000), (3, 40000), (1, 1)]


@pytest.fixture(scope="module")
def sessions():
    load = lambda model: ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])  # noqa: E731
    return load(tiles.build_shrink()), load(tiles.build_apply())


def shrink_tiled(session, rgb, tile):
    h, w = rgb.shape[:2]
    work = pixels.working_size(h, w)
    x_work = np.zeros((1, 3, *work), np.float32)
    for r, c in ridpixels.tile_origins(h, w, tile):
        feeds = {"tile": pixels.to_float(rgb[r:r + tile, c:c + tile]).numpy(), "origin": np.array([r, c]),
                 "full": np.array([h, w]), "work": np.array(work)}
        part, (pr, pc) = session.run(None, feeds)
        x_work[:, :, pr:pr + part.shape[2], pc:pc + part.shape[3]] += part
    return x_work


@pytest.mark.parametrize("tile", [512, 200])
@pytest.mark.parametrize("h,w", SIZES)
def test_shrink_tiles_add_up_to_the_antialiased_resize(sessions, h, w, tile):
    rgb = np.random.default_rng(h * w).integers(0, 256, (h, w, 3), dtype=np.uint8)
    expected = pixels.working_image(pixels.to_float(rgb)).numpy()
    got = shrink_tiled(sessions[0], rgb, tile)
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() <= 2e-6


@pytest.mark.parametrize("h,w", SIZES)
def test_apply_tiles_equal_the_delta_upsample_and_clamps(sessions, h, w):
    rng = np.random.default_rng(h + w)
    rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    eps = 8 / 255
    delta = ((rng.random((1, 3, *pixels.working_size(h, w)), dtype=np.float32) - 0.5) * 0.08)  # past +-eps: the clamp acts
    x = pixels.to_float(rgb)
    expected = pixels.add_delta(x, torch.from_numpy(delta), eps).numpy()
    got = np.empty_like(expected)
    for r, c in ridpixels.tile_origins(h, w, 512):
        feeds = {"tile": x[:, :, r:r + 512, c:c + 512].numpy(), "delta": delta, "origin": np.array([r, c]),
                 "full": np.array([h, w]), "eps": np.array([eps], np.float32)}
        (out,) = sessions[1].run(None, feeds)
        got[:, :, r:r + out.shape[2], c:c + out.shape[3]] = out
    assert np.abs(got - expected).max() <= 1e-5
    assert np.abs(got - x.numpy()).max() <= eps + 1e-6 and got.min() >= 0 and got.max() <= 1


def test_tile_graphs_pass_the_checks_and_allow_list(tmp_path):
    for name, path in tiles.write_tile_graphs(tmp_path).items():
        graph.check_graph(path, outputs=tiles.FOUR_D_OUTPUTS[name.removesuffix(".onnx")])


def test_a_24_megapixel_photo_goes_through_in_bounded_tensors(perturbed_generator, tmp_path):
    """6000 x 4000: every tensor in or out of a graph stays far below WebGPU's 128 MiB buffer
    limit (the float32 photo alone is 288 MB), and the bytes match the PyTorch pipeline."""
    from ridexport.export import export
    from ridexport.runtime import OnnxProtector
    from ridtrain.defender.generators import load_generator
    from ridtrain.defender.protect import protect_array

    folder = perturbed_generator(0.02)
    export(str(folder), tmp_path)
    protector = OnnxProtector(tmp_path)
    largest = []
    for session in (protector.shrink, protector.apply, protector.generator.session):
        run = session.run

        def recording(names, feeds, *args, _run=run):
            outputs = _run(names, feeds, *args)
            largest.append(max(a.nbytes for a in [*feeds.values(), *outputs]))
            return outputs

        session.run = recording
    yy, xx = np.mgrid[0:4000, 0:6000]
    rgb = np.stack([(xx * 7 + yy * 3) % 256, (xx // 5 + yy // 7) % 256, (xx ^ yy) % 256], axis=-1).astype(np.uint8)
    got = protector.protect_array(rgb).astype(np.int16)
    assert max(largest) <= 16 * 2**20
    expected = protect_array(load_generator(folder), rgb).astype(np.int16)
    assert (got == expected).mean() >= 0.999 and np.abs(got - expected).max() <= 1
    assert np.abs(got - rgb).max() <= 8
