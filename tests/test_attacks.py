import json

import torch
from safetensors.torch import load_file

from ridtrain.attacker.attacks import advdm, aspl_lite, parse_shard, run_attack
from ridtrain.attacker.evaluate import target_losses

EPS = 8 / 255


def test_advdm_beats_gaussian_noise_of_equal_norm(pixel_target, crops):
    x = crops[8:12]
    torch.manual_seed(0)
    delta = advdm([pixel_target], x, EPS, steps=10)
    assert delta.abs().max() <= EPS + 1e-7 and ((x + delta) >= 0).all() and ((x + delta) <= 1).all()
    gauss = torch.randn_like(x)
    gauss *= delta.norm() / gauss.norm()
    clean = target_losses(pixel_target, x, 16, 1)[1]
    adv = target_losses(pixel_target, x + delta, 16, 1)[1]
    noise = target_losses(pixel_target, (x + gauss).clamp(0, 1), 16, 1)[1]
    assert adv - clean > 2 * (noise - clean) and adv - clean > 1e-3


def test_aspl_lite_is_bounded_and_leaves_the_target_alone(pixel_target, crops):
    x = crops[:2]
    before = {k: v.clone() for k, v in pixel_target.unet.state_dict().items()}
    torch.manual_seed(0)
    delta = aspl_lite([pixel_target], x, EPS, rounds=2, ft_steps=2, pgd_per_round=3)
    assert delta.abs().max() <= EPS + 1e-7 and delta.abs().max() > 0
    after = pixel_target.unet.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not any(p.requires_grad for p in pixel_target.parameters())


def test_run_attack_is_sharded_and_resumable(pixel_target, corpus, tmp_path):
    images = corpus / "heldout"
    out = tmp_path / "pgd"
    first = run_attack(images, out, [pixel_target], "advdm", 8, side=32, shard="0/2", steps=2)
    second = run_attack(images, out, [pixel_target], "advdm", 8, side=32, shard="1/2", steps=2)
    assert first["done"] + second["done"] == 3 and first["done"] >= 1 and second["done"] >= 1
    deltas = sorted((out / "deltas").glob("*.safetensors"))
    assert len(deltas) == 3 and len(list((out / "images").glob("*.png"))) == 3
    from PIL import Image

    assert Image.open(out / "images" / "rocket.png").size == Image.open(images / "rocket.jpg").size  # full size
    d = load_file(deltas[0])["delta"]
    assert d.shape[0] == 3 and min(d.shape[1:]) == 32 and d.abs().max() <= EPS + 1e-7
    again = run_attack(images, out, [pixel_target], "advdm", 8, side=32, shard="0/1", steps=2)
    assert again == {"done": 0, "skipped": 3, "failed": 0, "seconds_per_image": None}
    assert first["seconds_per_image"] > 0
    assert not list(out.rglob("*.tmp"))


def test_rid_attack_cli(pixel_path, corpus, tmp_path):
    from typer.testing import CliRunner

    from rid.cli import app

    args = ["attack", str(corpus / "heldout" / "rocket.jpg"), "-o", str(tmp_path), "-t", str(pixel_path), "--side", "32", "--steps", "1"]
    result = CliRunner().invoke(app, args + ["--method", "aspl", "--rounds", "1"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout.strip().splitlines()[-1])["done"] == 1
    bad = CliRunner().invoke(app, args + ["--eps", "7"])
    assert bad.exit_code == 2 and "eps must be one of" in bad.output


def test_parse_shard():
    assert parse_shard("2/4") == (2, 4)
    for bad in ("4/4", "x", "1/0"):
        try:
            parse_shard(bad)
        except ValueError:
            continue
        raise AssertionError(bad)
