import json
import shutil

import numpy as np
import onnx
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from rid.cli import app
from ridexport import graph
from ridexport.backends import onnx_folder
from ridexport.export import export
from ridexport.manifest import ManifestError, load_manifest, sha256_file
from ridexport.parity import ParityError, passes
from ridexport.runtime import OnnxGenerator
from ridtrain.defender.generators import load_generator
from ridtrain.defender.seeds import seed_code


@pytest.fixture(scope="module")
def fresh(perturbed_generator):
    """A small perturbation, so delta is neither 0 nor saturated; randomised, with tiles scaled cell
    by cell (tile_field), as the bundled model is."""
    folder = perturbed_generator(0.02, pattern=16, code_dim=16, tile_field=True)
    return folder, load_generator(folder)


@pytest.fixture(scope="module")
def exported(fresh, corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("export")
    manifest = export(str(fresh[0]), out, photos=sorted((corpus / "heldout").iterdir()))
    return out, manifest


def test_export_folder_is_complete_and_single_file(exported):
    out, manifest = exported
    # no .data sidecar; no w16, since these weights are not exactly fp16
    assert sorted(p.name for p in out.iterdir()) == ["apply.onnx", "fixture", "manifest.json", "model.onnx", "shrink.onnx"]
    assert manifest["web_default_file"] == "model.onnx"
    assert manifest == load_manifest(out)
    assert manifest["files"]["model.onnx"]["sha256"] == sha256_file(out / "model.onnx")
    assert manifest["parameters"] <= 2_000_000 and 2e9 < manifest["flops_512"] < 5e9
    assert [t["name"] for t in manifest["contract"]["inputs"]] == ["image", "eps", "code"]
    assert manifest["seed"] == {"bytes": 16, "code_dim": 16, "rule": "sha256-counter-uint16-v1", "domain": "rid-code-v1"}
    import onnx

    assert not any(node.metadata_props for node in onnx.load(str(out / "model.onnx")).graph.node)  # no debug records in the download


def test_parity_at_three_sizes_and_on_photos(exported, fresh):
    out, manifest = exported
    cases = manifest["files"]["model.onnx"]["parity"]["cases"]
    sizes = {k for k in cases if k.startswith("random-")}
    assert sizes == {"random-512x512", "random-512x688", "random-528x784"} and any(k.startswith("photo-") for k in cases)
    assert all(passes(v) for v in cases.values())
    # and independently of the export's own report
    onnx_gen, gen = OnnxGenerator(out), fresh[1]
    x, code = torch.rand(1, 3, 512, 688), torch.from_numpy(seed_code(bytes(16), 16))[None]
    with torch.no_grad():
        expected = gen.protect(x, 8 / 255, code).numpy()
    got = onnx_gen.run(x.numpy(), 8 / 255, code.numpy())[0]
    assert np.abs(got - expected).max() <= 1e-4
    assert 0 < np.abs(got - x.numpy()).max() < 8 / 255 + 1e-6  # neither zero nor unbounded
    other = onnx_gen.run(x.numpy(), 8 / 255, seed_code(b"\x01" * 16, 16)[None])[0]
    assert np.abs(other - got).max() > 1 / 255  # the code matters


def test_dynamic_batch_height_width_and_eps(exported, fresh):
    onnx_gen, gen = OnnxGenerator(exported[0]), fresh[1]
    for shape in [(2, 3, 16, 32), (1, 3, 80, 48)]:
        x, code = torch.rand(*shape), gen.random_code(shape[0])
        for eps in (4 / 255, 16 / 255):
            protected, delta = onnx_gen.run(x.numpy(), eps, code.numpy())
            assert protected.shape == delta.shape == shape
            with torch.no_grad():
                assert np.abs(delta - gen(x, eps, code).numpy()).max() <= 1e-5


def test_operators_are_allow_listed(exported):
    for name in ("model.onnx", "shrink.onnx", "apply.onnx"):
        ops = graph.graph_ops(exported[0] / name)
        assert ops <= graph.ALLOWED_OPS and "GroupNormalization" not in ops
    graph.check_graph(exported[0] / "model.onnx")


def test_a_disallowed_operator_is_caught(tmp_path):
    from onnx import TensorProto, helper

    node = helper.make_node("GroupNormalization", ["x", "s", "b"], ["protected"], num_groups=1)
    delta = helper.make_node("Identity", ["x"], ["delta"])
    vi = lambda n: helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 3, 4, 4])  # noqa: E731
    g = helper.make_graph([node, delta], "g", [vi("x"), helper.make_tensor_value_info("s", TensorProto.FLOAT, [3]),
                                                helper.make_tensor_value_info("b", TensorProto.FLOAT, [3])], [vi("protected"), vi("delta")])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)]), tmp_path / "bad.onnx")
    with pytest.raises(ValueError, match="GroupNormalization"):
        graph.check_graph(tmp_path / "bad.onnx")


def test_a_tampered_model_is_refused(exported, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(exported[0], copy)
    data = bytearray((copy / "model.onnx").read_bytes())
    data[len(data) // 2] ^= 0x01
    (copy / "model.onnx").write_bytes(bytes(data))
    with pytest.raises(ManifestError, match="sha256"):
        load_manifest(copy)
    with pytest.raises(ManifestError, match="sha256"):
        OnnxGenerator(copy)


def test_a_manifest_off_schema_is_refused(exported, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(exported[0], copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    del manifest["eps_levels"]
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ManifestError, match="eps_levels"):
        load_manifest(copy)


def test_the_cards_plain_sentences_go_into_the_manifest(fresh):
    """The web app leads with the model card's two plain sentences: export copies them into the
    manifest, and a card without them gives a manifest without them (never invented ones)."""
    from ridexport.export import _manifest
    from ridexport.manifest import validate
    from ridtrain.bundled import model_card

    plain = {"protects": "what it protects against", "limits": "what it does not"}
    assert _manifest(fresh[1], fresh[0], 18, {}, 1, 1, {"summary": "s", "plain": plain})["plain"] == plain
    assert "plain" not in _manifest(fresh[1], fresh[0], 18, {}, 1, 1, {"summary": "s"})
    bundled = load_manifest(onnx_folder("default"))
    assert bundled["plain"] == model_card("default")["plain"]  # the bundled manifest says what its card says
    assert "Stable Diffusion" in bundled["plain"]["limits"] and "no assurance" in bundled["plain"]["limits"]
    for bad in [{"protects": "only one"}, {**plain, "extra": "x"}, {"protects": "", "limits": "x"}]:
        with pytest.raises(ManifestError, match="plain|protects|limits|extra|short|non-empty"):
            validate({**bundled, "plain": bad})


def test_failed_parity_refuses_to_finish(fresh, tmp_path, monkeypatch):
    import ridexport.parity as parity

    monkeypatch.setattr(parity, "FLOAT_TOL", -1.0)  # nothing can pass
    with pytest.raises(ParityError, match="fails parity") as refused:
        export(str(fresh[0]), tmp_path)
    assert not (tmp_path / "manifest.json").exists()
    assert "pre-tanh" not in str(refused.value)  # these weights are sane: no blame on them


def test_saturated_weights_are_refused_with_the_reason(perturbed_generator, tmp_path):
    """Head weights of std 1e5 (as a drifted training run leaves them): fp32 rounding alone breaks the
    float rule, and the refusal says so instead of only listing the cases."""
    with pytest.raises(ParityError, match=r"model.onnx fails parity.*pre-tanh output reaches [0-9.e+]+ .*retrain"):
        export(str(perturbed_generator(1e5)), tmp_path)
    assert not (tmp_path / "manifest.json").exists()


def test_fixture_matches_pytorch(exported, fresh):
    folder = exported[0] / "fixture"
    index = json.loads((folder / "parity.json").read_text())
    onnx_gen = OnnxGenerator(exported[0])
    for case in index["cases"]:
        rgb = np.asarray(Image.open(folder / case["input_png"]).convert("RGB"))
        x = torch.from_numpy(rgb.copy()).permute(2, 0, 1)[None].float() / 255
        expected = np.fromfile(folder / case["protected_f32"], dtype="<f4").reshape(1, 3, case["height"], case["width"])
        code = seed_code(bytes.fromhex(case["seed"]), 16)[None]
        with torch.no_grad():
            assert np.abs(fresh[1].protect(x, case["eps_levels"] / 255, torch.from_numpy(code)).numpy() - expected).max() == 0
        assert np.abs(onnx_gen.run(x.numpy(), case["eps_levels"] / 255, code)[0] - expected).max() <= 1e-4
        png = np.asarray(Image.open(folder / case["protected_png"]))
        assert np.array_equal(png, np.rint(expected[0].transpose(1, 2, 0) * 255).astype(np.uint8))


def test_fixture_photos_match_the_tiled_pipeline(exported):
    from ridexport.runtime import OnnxProtector

    folder = exported[0] / "fixture"
    photos = json.loads((folder / "parity.json").read_text())["photos"]
    assert any(p["width"] > 512 for p in photos) and any(p["height"] < 512 for p in photos)  # two tiles; enlarged
    protector = OnnxProtector(exported[0])
    for case in photos:
        rgb = np.asarray(Image.open(folder / case["input_png"]).convert("RGB"))
        expected = np.fromfile(folder / case["protected_f32"], dtype="<f4").reshape(1, 3, case["height"], case["width"])
        assert np.abs(protector.protected_float(rgb, case["eps_levels"], case["seed"]) - expected).max() <= 1e-4
        png = np.asarray(Image.open(folder / case["protected_png"]))
        assert np.array_equal(png, np.rint(expected[0].transpose(1, 2, 0) * 255).astype(np.uint8))


def test_protect_backend_onnx_matches_torch(exported, fresh, corpus, tmp_path):
    runner = CliRunner()
    photos = corpus / "heldout"
    for backend, model in (("torch", fresh[0]), ("onnx", exported[0])):
        result = runner.invoke(app, ["protect", str(photos), "-o", str(tmp_path / backend), "--model", str(model), "--backend", backend,
                                     "--seed", "5eed" * 8])
        assert result.exit_code == 0, result.output
    for png in (tmp_path / "torch").iterdir():
        a = np.asarray(Image.open(png)).astype(int)
        b = np.asarray(Image.open(tmp_path / "onnx" / png.name)).astype(int)
        assert a.shape == b.shape
        assert (a == b).mean() >= 0.999 and np.abs(a - b).max() <= 1


def test_fp16_exact_weights_give_a_lossless_half_size_w16(perturbed_generator, tmp_path):
    from ridexport.runtime import OnnxProtector

    folder = perturbed_generator(0.02, fp16_exact=True)
    manifest = export(str(folder), tmp_path)
    w16, fp32 = manifest["files"]["model.w16.onnx"], manifest["files"]["model.onnx"]
    assert manifest["web_default_file"] == "model.w16.onnx" and w16["lossless"] and w16["backends"] == ["webgpu", "wasm"]
    assert w16["bytes"] < 0.55 * fp32["bytes"]
    x = np.random.default_rng(0).random((1, 3, 64, 80), dtype=np.float32)
    assert np.array_equal(OnnxGenerator(tmp_path, "model.w16.onnx").run(x, 8 / 255)[1], OnnxGenerator(tmp_path).run(x, 8 / 255)[1])
    rgb = np.random.default_rng(1).integers(0, 256, (150, 700, 3), dtype=np.uint8)
    assert np.array_equal(OnnxProtector(tmp_path, "model.w16.onnx").protect_array(rgb), OnnxProtector(tmp_path).protect_array(rgb))


def test_the_bundled_export_is_intact_and_matches_its_generator(corpus):
    from ridexport.backends import load_backend

    onnx_backend = load_backend("default", "onnx")  # verifies every hash in the bundled manifest
    assert "NOT trained against Stable Diffusion" in onnx_backend.manifest["notes"]
    assert onnx_backend.manifest["web_default_file"] == "model.w16.onnx"
    # the web budget of issue 23: the download, and the work per 512² photo
    assert onnx_backend.manifest["files"]["model.w16.onnx"]["bytes"] <= 4_000_000 and onnx_backend.manifest["flops_512"] <= 5e9
    torch_backend = load_backend("default", "torch")
    # the attacker's scale: every runtime reads the working size from the manifest
    assert onnx_backend.manifest["pipeline"]["working_size"] == torch_backend.gen.working_size_rule
    assert torch_backend.gen.config.working_side == 512
    rgb = np.asarray(Image.open(corpus / "heldout" / "rocket.jpg").convert("RGB"))
    a = torch_backend.protect_array(rgb, seed="ab" * 16).astype(int)
    b = onnx_backend.protect_array(rgb, seed="ab" * 16).astype(int)
    assert (a == b).mean() >= 0.999 and np.abs(a - b).max() <= 1
    assert onnx_backend.manifest["seed"]["code_dim"] == torch_backend.gen.code_dim > 0  # the bundled model is randomised
