"""`rid personalize`: DreamBooth and LoRA on a tiny SD-layout model, end to end, in a few steps."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from typer.testing import CliRunner

from rid.cli import app
from ridtrain.attacker import personalize as P

STEPS = 4


@pytest.fixture(scope="module")
def photos(tmp_path_factory, corpus):
    """Three photos of 'the subject', one of them not an image (a batch goes on past it)."""
    folder = tmp_path_factory.mktemp("subject")
    for name in ("astronaut.png", "chelsea.png", "coffee.png"):
        shutil.copyfile(corpus / "train" / name, folder / name)
    (folder / "broken.png").write_bytes(b"not a png")
    return folder


def config(base, photos, **overrides):
    values = dict(base=str(base), photos=str(photos), steps=STEPS, lr=1e-3, resolution=32, checkpoint_every=2,
                  num_samples=2, sample_steps=3, prompts=["a photo of sks person", "sks person on a beach"])
    values.update(overrides)
    cfg = P.PersonalizeConfig(**values)
    cfg.check_values()
    return cfg


def test_dreambooth_trains_the_unet_and_samples_every_prompt(ldm_paths, photos, tmp_path):
    out = tmp_path / "db"
    summary = P.personalize(config(ldm_paths[0], photos), out)

    assert summary["photos"] == ["astronaut.png", "chelsea.png", "coffee.png"]  # broken.png skipped
    assert {k: summary["trained"][k] for k in ("steps", "resumed_from_step")} == {"steps": STEPS, "resumed_from_step": 0}
    base = load_file(ldm_paths[0] / "unet" / "diffusion_pytorch_model.safetensors")
    tuned = load_file(out / "unet" / "diffusion_pytorch_model.safetensors")
    assert tuned.keys() == base.keys()
    assert any(not torch.equal(base[k], tuned[k]) for k in base)
    assert not (out / "checkpoints").exists()  # removed once the weights are written
    assert list(summary["samples"].values()) == [str(out / "samples" / f) for f in ("00-a-photo-of-sks-person", "01-sks-person-on-a-beach")]
    for prompt, folder in summary["samples"].items():
        assert sorted(p.name for p in Path(folder).glob("*.png")) == ["000.png", "001.png"], prompt
        assert Image.open(Path(folder) / "000.png").size == (32, 32)
    assert json.loads((out / "run.json").read_text())["method"] == "dreambooth"


def test_lora_trains_only_the_adapter_with_prior_preservation(ldm_paths, photos, tmp_path):
    out, class_dir = tmp_path / "lora", tmp_path / "class"
    class_dir.mkdir()
    shutil.copyfile(photos / "coffee.png", class_dir / "mine.png")  # the user's own class image counts
    cfg = config(ldm_paths[0], photos, method="lora", class_prompt="a photo of person", class_data=str(class_dir),
                 num_class_images=3, prompts=["a photo of sks person"])
    P.personalize(cfg, out)

    generated = class_dir / "generated"
    assert sorted(p.name for p in generated.glob("*.png")) == ["000.png", "001.png"]
    # an interrupted top-up is completed, not cut short: one lost image is drawn again, the same
    first = np.asarray(Image.open(generated / "001.png"))
    (generated / "001.png").unlink()
    P.personalize(cfg, tmp_path / "lora-again")
    assert sorted(p.name for p in generated.glob("*.png")) == ["000.png", "001.png"]
    assert np.array_equal(np.asarray(Image.open(generated / "001.png")), first)
    lora = load_file(out / "lora" / "pytorch_lora_weights.safetensors")
    assert lora and all("lora" in k for k in lora)
    assert not (out / "unet").exists()
    # the samples come from the adapter: the base model's samples with the same seeds differ
    base_pipe = P.pipeline(ldm_paths[0])
    with_lora = P.personalized_pipeline(cfg, out)
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    kwargs = dict(height=32, width=32, num_inference_steps=3, output_type="np")
    assert not np.allclose(base_pipe("a photo of sks person", generator=g(), **kwargs).images,
                           with_lora("a photo of sks person", generator=g(), **kwargs).images)


WEIGHTS = {"dreambooth": "unet/diffusion_pytorch_model.safetensors", "lora": "lora/pytorch_lora_weights.safetensors"}


@pytest.mark.parametrize("method", P.METHODS)
def test_an_interrupted_run_resumes_to_the_same_weights(ldm_paths, photos, tmp_path, monkeypatch, method):
    cfg = config(ldm_paths[0], photos, method=method, num_samples=1, prompts=["sks"])
    P.personalize(cfg, tmp_path / "whole")

    save = P.save_checkpoint

    def save_then_crash(out, step, accelerator):
        save(out, step, accelerator)
        raise KeyboardInterrupt

    monkeypatch.setattr(P, "save_checkpoint", save_then_crash)
    with pytest.raises(KeyboardInterrupt):
        P.personalize(cfg, tmp_path / "cut")
    assert (tmp_path / "cut" / "checkpoints" / "step-2").is_dir()
    assert not (tmp_path / "cut" / WEIGHTS[method]).exists()
    monkeypatch.undo()

    summary = P.personalize(cfg, tmp_path / "cut")
    assert summary["trained"]["resumed_from_step"] == 2
    whole = load_file(tmp_path / "whole" / WEIGHTS[method])
    resumed = load_file(tmp_path / "cut" / WEIGHTS[method])
    assert max((whole[k] - resumed[k]).abs().max().item() for k in whole) < 1e-6

    # sampling resumes too: a deleted sample is written again, the others are kept
    sample = tmp_path / "cut" / "samples" / "00-sks" / "000.png"
    kept = tmp_path / "whole" / "samples" / "00-sks" / "000.png"
    sample.unlink()
    P.personalize(cfg, tmp_path / "cut")
    assert np.array_equal(np.asarray(Image.open(sample)), np.asarray(Image.open(kept)))


def test_prompts_get_their_own_folders_and_new_sampling_settings_redo_them(ldm_paths, photos, tmp_path):
    out = tmp_path / "run"
    summary = P.personalize(config(ldm_paths[0], photos, prompts=["A photo!", "a photo"]), out)
    folders = [Path(f) for f in summary["samples"].values()]
    assert [f.name for f in folders] == ["00-a-photo", "01-a-photo"]
    before = np.asarray(Image.open(folders[0] / "000.png"))

    P.personalize(config(ldm_paths[0], photos, prompts=["A photo!", "a photo"], guidance=1.0, num_samples=1), out)
    assert sorted(p.name for p in folders[0].glob("*.png")) == ["000.png"]
    assert json.loads((folders[0] / "sampling.json").read_text())["guidance"] == 1.0
    assert not np.array_equal(np.asarray(Image.open(folders[0] / "000.png")), before)


def test_a_folder_holding_another_run_is_refused(ldm_paths, photos, tmp_path):
    out = tmp_path / "run"
    P.personalize(config(ldm_paths[0], photos, num_samples=1, prompts=["sks"]), out)
    with pytest.raises(ValueError, match="steps differ"):
        P.personalize(config(ldm_paths[0], photos, steps=STEPS + 1), out)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not empty"):
        P.personalize(config(ldm_paths[0], photos), tmp_path / "other")


@pytest.mark.parametrize("overrides, message", [
    ({"method": "textual-inversion"}, "method must be one of"),
    ({"class_prompt": "a photo of person"}, "both class_prompt and class_data"),
    ({"resolution": 30}, "multiple of 8"),
    ({"steps": 0}, "steps must be at least 1"),
    ({"mixed_precision": "fp8"}, "mixed_precision must be one of"),
])
def test_bad_settings_are_refused(ldm_paths, photos, overrides, message):
    with pytest.raises(ValueError, match=message):
        config(ldm_paths[0], photos, **overrides)


def test_cli_reports_bad_inputs_in_one_line(ldm_paths, photos, tmp_path):
    runner = CliRunner()
    (tmp_path / "empty").mkdir()
    cases = [
        (["personalize", str(tmp_path / "empty"), "--base", str(ldm_paths[0]), "-o", str(tmp_path / "o1")], "no usable photo"),
        (["personalize", str(tmp_path / "missing"), "--base", str(ldm_paths[0]), "-o", str(tmp_path / "o2")], "no such image file"),
        (["personalize", str(photos), "--base", str(tmp_path), "-o", str(tmp_path / "o3")], "not a latent diffusion checkpoint"),
    ]
    (tmp_path / "empty" / "x.jpg").write_bytes(b"")
    for args, message in cases:
        result = runner.invoke(app, args)
        assert result.exit_code == 2, result.output
        assert message in result.output


def test_help_lists_the_personalization_commands():
    result = CliRunner().invoke(app, ["--help"])
    assert "personalize" in result.output and "score" in result.output
