import json

import pytest
import torch
from typer.testing import CliRunner

from rid.cli import app
from ridtrain.attacker.evaluate import CONDITIONS, evaluate
from ridtrain.defender.generators import build_generator


@pytest.fixture
def gen():
    g = build_generator("rid-s", channels=(8, 16, 16), blocks=(0, 1, 1), up_blocks=(0, 1))
    torch.manual_seed(0)
    torch.nn.init.normal_(g.head.weight, std=0.5)
    return g.eval()


def test_generator_eval_reports_all_conditions(pixel_target, corpus, gen):
    r = evaluate([pixel_target], corpus / "heldout", gen=gen, side=32, samples=2)
    assert r["images"] == 3 and r["eps_levels"] == 8 and r["seconds_per_image"] > 0
    per = r["targets"][pixel_target.name]
    assert set(per) == set(CONDITIONS)
    assert per["protected"]["denoise_mse"] != per["clean"]["denoise_mse"]
    assert 0 < r["delta"]["linf_levels"] <= 8 and r["delta"]["psnr"] > 30 and r["delta"]["ssim"] < 1


def test_zero_perturbation_equals_clean(pixel_target, corpus):
    r = evaluate([pixel_target], corpus / "heldout", gen=build_generator("rid-s").eval(), side=32, samples=2)
    per = r["targets"][pixel_target.name]
    assert per["protected"] == per["clean"] and r["delta"]["linf_levels"] == 0


def test_folder_eval_matches_generator_eval(pixel_path, pixel_target, corpus, gen, tmp_path):
    gen.save_pretrained(tmp_path / "gen")
    out = tmp_path / "protected"
    runner = CliRunner()
    assert runner.invoke(app, ["protect", str(corpus / "heldout"), "-o", str(out), "--model", str(tmp_path / "gen")]).exit_code == 0
    from_gen = evaluate([pixel_target], corpus / "heldout", gen=gen, side=32, samples=2)
    result = runner.invoke(app, ["eval", str(corpus / "heldout"), "-t", str(pixel_path), "--protected", str(out), "--side", "32", "--samples", "2"])
    assert result.exit_code == 0, result.output
    from_folder = json.loads(result.stdout)
    assert from_folder["targets"] == from_gen["targets"] and from_folder["seconds_per_image"] is None


def test_eval_needs_one_source(pixel_target, corpus):
    with pytest.raises(ValueError, match="exactly one"):
        evaluate([pixel_target], corpus / "heldout")


def test_eval_of_attack_output(pixel_path, pixel_target, corpus, tmp_path):
    from ridtrain.attacker.attacks import run_attack

    run_attack(corpus / "heldout", tmp_path, [pixel_target], "advdm", 8, side=32, steps=2)
    r = evaluate([pixel_target], corpus / "heldout", protected_dir=tmp_path / "images", side=32, samples=2)
    per = r["targets"][pixel_target.name]
    assert per["protected"]["denoise_mse"] > per["clean"]["denoise_mse"]
    assert r["delta"]["linf_levels"] == 2  # two PGD steps of one level


def test_a_protected_image_of_another_size_is_named(pixel_target, corpus, tmp_path):
    from PIL import Image

    for path in (corpus / "heldout").iterdir():
        Image.new("RGB", (8, 8)).save(tmp_path / (path.stem + ".png"))
    with pytest.raises(ValueError, match="protected image is 8x8"):
        evaluate([pixel_target], corpus / "heldout", protected_dir=tmp_path, side=32, samples=1)
