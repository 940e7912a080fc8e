"""ridpixels, the torch-free pixel policy: its numpy and stdlib forms agree with each other and
with ridtrain.pixels (torch), and it imports nothing heavy (it must run under Pyodide)."""

import subprocess
import sys
from array import array

import numpy as np
import pytest
import torch

import ridpixels
from ridtrain import pixels


def test_imports_without_numpy_or_torch():
    code = ("import sys; sys.modules['numpy'] = None; sys.modules['torch'] = None; import ridpixels; "
            "assert ridpixels.working_size(90, 120) == (512, 688); assert ridpixels.levels([0.5 / 255]) == bytes([0]); "
            "assert ridpixels.max_level_change(bytes([1, 9]), bytes([3, 2])) == 7")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_8bit_rule_in_numpy_stdlib_and_torch_agree_on_ties_and_edges():
    rng = np.random.default_rng(0)
    x = rng.uniform(-0.1, 1.1, (1, 3, 37, 41)).astype(np.float32)
    ties = (np.arange(256, dtype=np.float32) + np.float32(0.5)) / np.float32(255)  # k + 0.5 after the float32 product
    x.reshape(-1)[:256] = ties
    x.reshape(-1)[256:258] = [np.nextafter(np.float32(0.5 / 255), np.float32(1)), np.nextafter(np.float32(0.5 / 255), np.float32(0))]
    numpy8 = ridpixels.to_uint8(x)
    stdlib8 = np.frombuffer(ridpixels.levels(array("f", x[0].transpose(1, 2, 0).reshape(-1).tolist())), np.uint8).reshape(numpy8.shape)
    torch8 = (torch.from_numpy(x) * 255.0).round().clamp(0, 255).to(torch.uint8)[0].permute(1, 2, 0).numpy()
    assert np.array_equal(numpy8, stdlib8) and np.array_equal(numpy8, torch8)
    assert np.array_equal(pixels.to_uint8(torch.from_numpy(x)), numpy8)


def test_to_float_is_a_float32_division():
    rgb = np.arange(256, dtype=np.uint8).repeat(3).reshape(16, 16, 3)
    x = ridpixels.to_float(rgb)
    assert x.dtype == np.float32 and x.shape == (1, 3, 16, 16)
    assert np.array_equal(x, torch.tensor(rgb).permute(2, 0, 1)[None].float().div(255.0).numpy())
    assert np.array_equal(ridpixels.to_uint8(x), rgb)
    with pytest.raises(ValueError):
        ridpixels.to_float(rgb.astype(np.float32))


def test_tile_plan_covers_the_photo_once_in_row_major_order():
    for h, w, tile in [(1, 1, 512), (512, 512, 512), (513, 1100, 512), (700, 5000, 512), (10, 10, 3)]:
        origins = ridpixels.tile_origins(h, w, tile)
        assert origins == sorted(origins)
        covered = np.zeros((h, w), int)
        for r, c in origins:
            covered[r:r + tile, c:c + tile] += 1
        assert (covered == 1).all()
    with pytest.raises(ValueError):
        ridpixels.tile_origins(10, 10, 0)


def test_working_size_rejects_empty_sizes():
    assert ridpixels.working_size(4000, 6000) == (512, 768)
    with pytest.raises(ValueError):
        ridpixels.working_size(0, 10)


def test_bound_check_numpy_and_bytes():
    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-8, 9, a.shape), 0, 255).astype(np.uint8)
    change = ridpixels.max_level_change(a, b)
    assert change == ridpixels.max_level_change(a.tobytes(), b.tobytes()) <= 8
    assert ridpixels.check_bound(a, b, 8) == change
    b[3, 4, 1] = min(255, int(a[3, 4, 1]) + 9) if a[3, 4, 1] < 200 else int(a[3, 4, 1]) - 9
    with pytest.raises(ridpixels.BoundError, match="9 levels"):
        ridpixels.check_bound(a, b, 8)
    with pytest.raises(ridpixels.BoundError):
        ridpixels.check_bound(a.tobytes(), b.tobytes(), 8)
    with pytest.raises(ValueError):
        ridpixels.max_level_change(a, b[:-1])
