"""`rid check`: the parity suite passes the bundled export and names the runtime that fails on a
tampered or off-by-parity copy."""

import json
import os
import shutil

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from browser_env import require_browser
from rid.check import BROWSER_RUNTIMES, RUNTIMES, run_check
from rid.cli import app
from ridexport.backends import onnx_folder

BUNDLED = onnx_folder("default")


@pytest.fixture
def copy(tmp_path):
    out = tmp_path / "export"
    shutil.copytree(BUNDLED, out)
    return out


def test_the_bundled_export_passes_with_its_checkpoint():
    rows = {r.runtime: r for r in run_check(BUNDLED, "default", ("manifest", "pytorch", "onnxruntime"))}
    assert all(r.ok for r in rows.values()), rows
    assert rows["onnxruntime"].cases == 2 * len(json.loads((BUNDLED / "fixture" / "parity.json").read_text())["photos"])
    assert rows["onnxruntime"].max_abs <= 1e-4 and rows["onnxruntime"].max_levels <= 1


def test_a_tampered_file_fails_the_manifest_and_every_runtime(copy):
    data = bytearray((copy / "model.onnx").read_bytes())
    data[len(data) // 2] ^= 1
    (copy / "model.onnx").write_bytes(bytes(data))
    result = CliRunner().invoke(app, ["check", str(copy), "--only", "manifest,onnxruntime"])
    assert result.exit_code == 1
    assert "parity fails in: manifest, onnxruntime" in result.output and "sha256 does not match" in result.output


def test_an_off_by_parity_fixture_names_the_runtime(copy):
    case = json.loads((copy / "fixture" / "parity.json").read_text())["photos"][0]
    path = copy / "fixture" / case["protected_f32"]
    values = np.fromfile(path, dtype="<f4")
    values[::7] = np.clip(values[::7] + 3 / 255, 0, 1)  # 3 levels off on one value in seven
    values.astype("<f4").tofile(path)
    rows = {r.runtime: r for r in run_check(copy, None, ("manifest", "onnxruntime"))}
    assert rows["manifest"].ok and not rows["onnxruntime"].ok
    assert rows["onnxruntime"].max_levels >= 2 and rows["onnxruntime"].identical < 0.999


def test_a_fixture_that_pytorch_left_unchanged_fails_the_manifest(copy):
    """A generator whose delta rounds to zero (an untrained one) agrees with every runtime by
    returning the photo; the suite says so instead of passing."""
    case = json.loads((copy / "fixture" / "parity.json").read_text())["photos"][1]
    shutil.copyfile(copy / "fixture" / case["input_png"], copy / "fixture" / case["protected_png"])
    (row,) = run_check(copy, None, ("manifest",))
    assert not row.ok and case["name"] in row.note and "unchanged" in row.note


@require_browser()
def test_an_off_by_parity_fixture_fails_the_browser_rows(copy):
    """The browser rows are held to the rule too: PyTorch's 8-bit output of the first photo 3 levels
    off on one value in seven fails WASM."""
    case = json.loads((copy / "fixture" / "parity.json").read_text())["photos"][0]
    path = copy / "fixture" / case["protected_png"]
    values = np.asarray(Image.open(path)).copy()
    values.reshape(-1)[::7] = np.clip(values.reshape(-1)[::7].astype(int) + 3, 0, 255)
    Image.fromarray(values).save(path)
    (row,) = run_check(copy, None, ("wasm-2-threads",))
    assert row.ran and not row.ok and row.max_levels >= 2 and row.identical < 0.999, row


def test_without_a_checkpoint_the_pytorch_row_is_not_run_and_says_so():
    result = CliRunner().invoke(app, ["check", str(BUNDLED), "--only", "manifest,pytorch"])
    assert result.exit_code == 0 and "not run" in result.output and "no --checkpoint" in result.output


def test_unknown_runtimes_are_a_usage_error():
    result = CliRunner().invoke(app, ["check", str(BUNDLED), "--only", "quantum"])
    assert result.exit_code == 2 and "unknown runtime" in result.output


@pytest.fixture(scope="module")
def suite(request):
    """rid check's rows on the given export (the bundled one by default), run once for the module."""
    export = request.config.getoption("--rid-export")
    checkpoint = request.config.getoption("--rid-checkpoint") or (None if export else "default")
    return {r.runtime: r for r in run_check(export or BUNDLED, checkpoint)}


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_the_suite_on_the_given_export(suite, runtime):
    """`pytest tests/test_check.py --rid-export DIR [--rid-checkpoint GEN]`: rid check's rows as
    tests. A browser row that cannot run here is a skip, and under RID_REQUIRE_BROWSER (CI) a failure."""
    row = suite[runtime]
    if not row.ran:
        if runtime in BROWSER_RUNTIMES and os.environ.get("RID_REQUIRE_BROWSER"):
            pytest.fail(row.note)
        pytest.skip(row.note)
    assert row.ok, row
