import json

import pytest
import torch

from ridtrain.config import TrainConfig
from ridtrain.defender.generators import load_generator
from ridtrain.defender.train import regression_loss, train

SMALL = {"channels": [8, 16, 16], "blocks": [0, 1, 1], "up_blocks": [0, 1]}


@pytest.fixture
def cfg(tmp_path, corpus, ldm_paths, pixel_path):
    return TrainConfig(
        arch="rid-s", arch_overrides=SMALL, targets=[str(ldm_paths[0]), str(pixel_path)], data=str(corpus / "heldout"),
        side=48, crop=32, steps=2, batch=2, warmup=1, schedule="constant_with_warmup", lr=1e-3, checkpoint_every=1, output=str(tmp_path / "run"),
    )


def head(path):
    return load_generator(path).head.weight.detach()


def test_training_step_changes_weights_and_writes_checkpoints(cfg, tmp_path):
    final = train(cfg)
    run = tmp_path / "run"
    assert sorted(p.name for p in run.glob("checkpoint-*")) == ["checkpoint-0000001", "checkpoint-0000002"]
    assert head(final).abs().sum() > 0  # the zero-initialised head moved
    assert torch.equal(head(final), head(run / "checkpoint-0000002"))
    assert not torch.equal(head(run / "checkpoint-0000001"), head(final))
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2] and all(r["loss"] > 0 for r in rows)
    assert (run / "training_curve.png").stat().st_size > 1000
    card = json.loads((final / "model_card.json").read_text())
    assert card["trained_against"] == cfg.targets
    assert TrainConfig.load(final / "train_config.yaml") == cfg


def test_resume_continues_from_the_last_checkpoint(cfg, tmp_path):
    train(cfg)
    run = tmp_path / "run"
    saved = head(run / "checkpoint-0000002")
    assert torch.equal(head(train(cfg, resume=True)), saved)  # nothing left: the loaded weights come back
    with open(run / "metrics.jsonl", "a") as log:  # a step logged after the checkpoint, then a crash
        log.write(json.dumps({"step": 3, "loss": 1.0, "sds": 1.0, "reg": 0.0}) + "\n")
    cfg.steps = 3
    final = train(cfg, resume=True)
    rows = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert rows == [1, 2, 3]
    assert not torch.equal(head(final), saved)
    assert (run / "checkpoint-0000003").is_dir()


def test_regulariser_pulls_towards_precomputed_pgd(cfg, tmp_path, pixel_target):
    from ridtrain.attacker.attacks import run_attack

    run_attack(cfg.data, tmp_path / "pgd", [pixel_target], "advdm", 8, side=cfg.side, steps=1)
    cfg.pgd_deltas, cfg.pgd_lambda, cfg.steps = str(tmp_path / "pgd" / "deltas"), 10.0, 1
    train(cfg)
    row = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[0])
    assert row["reg"] > 0 and row["loss"] > row["sds"]


def test_regression_loss_counts_only_images_with_a_delta():
    delta, pgd = torch.zeros(2, 3, 4, 4), torch.ones(2, 3, 4, 4)
    assert regression_loss(delta, pgd, torch.tensor([True, False])) == 48
    assert regression_loss(delta, pgd, torch.tensor([False, False])) == 0


def test_config_overrides_and_unknown_keys(tmp_path):
    path = tmp_path / "cfg.yaml"
    path.write_text("steps: 10\ntargets: [a, b]\n")
    cfg = TrainConfig.load(path, ["steps=3", "lr=0.01", "arch_overrides={channels: [8, 8, 8]}"])
    assert (cfg.steps, cfg.lr, cfg.targets, cfg.arch_overrides) == (3, 0.01, ["a", "b"], {"channels": [8, 8, 8]})
    with pytest.raises(ValueError, match="unknown config keys"):
        TrainConfig.load(path, ["stpes=3"])
    with pytest.raises(ValueError, match="key=value"):
        TrainConfig.load(path, ["steps"])


def test_shipped_configs_load():
    from pathlib import Path

    from ridtrain.diffusion.proxy import ProxyConfig

    configs = sorted(Path(__file__).parents[1].glob("configs/*.yaml"))
    assert len(configs) >= 5
    for path in configs:
        (ProxyConfig if path.name.startswith("proxy-") else TrainConfig).load(path)


def test_augmentations_keep_shape_and_gradient():
    from ridtrain.defender.augment import random_jpeg, random_resize

    x = torch.rand(2, 3, 32, 48, requires_grad=True)
    for f in (random_jpeg, random_resize):
        y = f(x)
        assert y.shape == x.shape
        (g,) = torch.autograd.grad(y.sum(), x)
        assert g.abs().sum() > 0


def test_config_values_are_type_checked(tmp_path):
    for bad in ("steps=abc", "lr=[1]", "flip=3", "pgd_deltas=5", "targets=x"):
        with pytest.raises(ValueError, match="must be"):
            TrainConfig.load(None, [bad])
    assert TrainConfig.load(None, ["lr=1", "t_max=500", "pgd_deltas=runs/pgd"]).lr == 1


def test_two_process_ddp_on_cpu(cfg, tmp_path):
    """`torchrun` starts two processes; accelerate wraps the generator in DDP over gloo. Both ranks
    checkpoint their RNG state and the LR schedule is that of a one-process run."""
    import os
    import subprocess
    import sys

    from diffusers.optimization import get_scheduler

    cfg.steps, cfg.warmup, cfg.schedule, cfg.checkpoint_every = 4, 1, "cosine", 4
    cfg.data = cfg.data.replace("heldout", "train")  # 18 images: batches for both ranks
    cfg.save(tmp_path / "cfg.yaml")
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "rid.cli", "train", "--config", str(tmp_path / "cfg.yaml")]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=420)
    assert done.returncode == 0, done.stderr[-2000:]
    state = tmp_path / "run" / "checkpoint-0000004" / "state"
    assert (state / "random_states_0.pkl").is_file() and (state / "random_states_1.pkl").is_file()
    assert done.stdout.count("saved ") == 1
    lrs = [json.loads(line)["lr"] for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=cfg.lr)
    sched = get_scheduler("cosine", opt, num_warmup_steps=1, num_training_steps=4)
    expected = []
    for _ in range(4):
        opt.step()
        sched.step()
        expected.append(sched.get_last_lr()[0])
    assert lrs == pytest.approx(expected)
    assert head(tmp_path / "run" / "final").abs().sum() > 0


def test_a_fresh_run_refuses_an_earlier_runs_folder(cfg):
    train(cfg)
    with pytest.raises(ValueError, match="--resume"):
        train(cfg)


def test_the_regulariser_pulls_delta_towards_pgd(cfg, tmp_path):
    """With delta files that a generator can learn (a constant +4 levels), a strong lambda pulls
    delta(x) towards them: the regulariser term falls."""
    from safetensors.torch import save_file

    from ridtrain.data import delta_path, find_images, load_working

    for path in find_images(cfg.data):
        save_file({"delta": torch.full_like(load_working(path, cfg.side), 4 / 255)}, delta_path(tmp_path, cfg.data, path))
    cfg.pgd_deltas, cfg.pgd_lambda, cfg.steps, cfg.batch, cfg.lr = str(tmp_path), 1e4, 12, 3, 1e-2
    cfg.grad_clip, cfg.aug_jpeg_prob, cfg.aug_resize_prob = 0.0, 0.0, 0.0
    train(cfg)
    regs = [json.loads(line)["reg"] for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert regs[0] == pytest.approx(3 * 32 * 32 * (4 / 255) ** 2, rel=1e-3)  # delta = 0 at init
    assert sum(regs[-3:]) < 0.5 * sum(regs[:3])


def test_crops_keep_image_and_delta_aligned(corpus, tmp_path):
    from safetensors.torch import save_file

    from ridtrain.data import CropDataset, delta_path, find_images, load_working

    root = corpus / "heldout"
    for path in find_images(root):
        file = delta_path(tmp_path, root, path)
        save_file({"delta": 0.01 * load_working(path, 48)}, file)
    ds = CropDataset(root, side=48, crop=32, pgd_deltas=tmp_path)
    torch.manual_seed(0)
    for i in range(len(ds)):
        for _ in range(4):
            x, delta, has_delta = ds[i]
            assert has_delta and x.shape == delta.shape == (3, 32, 32)
            assert torch.allclose(delta, 0.01 * x, atol=1e-7)


def test_deltas_that_match_no_image_are_an_error(corpus, tmp_path):
    from ridtrain.data import CropDataset

    with pytest.raises(FileNotFoundError, match="no delta matches"):
        CropDataset(corpus / "heldout", pgd_deltas=tmp_path)


def test_a_bad_training_file_is_skipped(corpus, tmp_path, capsys):
    import shutil

    from ridtrain.data import CropDataset

    shutil.copy(corpus / "heldout" / "rocket.jpg", tmp_path / "good.jpg")
    (tmp_path / "bad.jpg").write_text("not an image")
    ds = CropDataset(tmp_path, side=48, crop=32)
    assert all(ds[i][0].shape == (3, 32, 32) for i in range(len(ds)) for _ in range(3))
    assert capsys.readouterr().err.count("skipping") == 1


def test_the_paper_dit_class_trains(cfg, tmp_path):
    cfg.arch, cfg.arch_overrides, cfg.steps = "rid-dit", {"hidden": 32, "depth": 2, "heads": 4}, 2
    final = train(cfg)
    gen = load_generator(final)
    assert type(gen).__name__ == "DiTGenerator"
    assert gen.out.weight.abs().sum() > 0


def test_a_randomised_generator_trains_with_diversity_and_the_subtract_attacks(cfg, tmp_path):
    base = train(cfg)  # a deterministic generator, then grown a code and a tile field from its weights
    cfg.arch_overrides = {**SMALL, "pattern": 16, "code_dim": 16, "tile_field": True}
    cfg.init_from, cfg.output = str(base), str(tmp_path / "randomised")
    cfg.diversity_weight, cfg.aug_subtract_prob, cfg.aug_periodic_mean_prob, cfg.aug_tile_fit_prob = 1.0, 1.0, 1.0, 0.5
    final = load_generator(train(cfg))
    assert final.code_dim == 16 and final.config.tile_field
    assert not torch.equal(final.code_embed[2].weight, torch.zeros_like(final.code_embed[2].weight))  # the FiLM moved
    rows = [json.loads(line) for line in (tmp_path / "randomised" / "metrics.jsonl").read_text().splitlines()]
    assert all(0 <= r["div"] <= 1 for r in rows)


def test_warm_start_keeps_what_fits_and_refuses_what_does_not(tmp_path):
    from ridtrain.defender.generators import build_generator
    from ridtrain.defender.train import warm_start

    base = build_generator("rid-s", **SMALL, pattern=16)
    torch.nn.init.normal_(base.head.weight)
    base.save_pretrained(tmp_path / "base")
    grown = build_generator("rid-s", **SMALL, pattern=16, code_dim=8)
    warm_start(grown, str(tmp_path / "base"))
    assert torch.equal(grown.head.weight, base.head.weight)
    with pytest.raises(ValueError, match="do not fit"):
        warm_start(build_generator("rid-s", channels=[8, 16, 32], blocks=[0, 1, 1], up_blocks=[0, 1]), str(tmp_path / "base"))


def test_seed_diversity_and_the_subtract_attack():
    from ridtrain.defender.generators import build_generator
    from ridtrain.defender.train import augment_subtract_public_model, seed_diversity_loss

    d = torch.randn(4, 3, 8, 8)
    assert torch.allclose(seed_diversity_loss(d, d), torch.ones(())) and torch.allclose(seed_diversity_loss(d, -2 * d), torch.ones(()))
    other = torch.randn(4, 3, 8, 8)
    other -= (other * d).flatten(1).sum(1).view(-1, 1, 1, 1) / d.flatten(1).pow(2).sum(1).view(-1, 1, 1, 1) * d  # orthogonal to d
    assert seed_diversity_loss(d, other) < 1e-10
    gen = build_generator("rid-s", **SMALL, pattern=16)
    torch.nn.init.normal_(gen.tile, std=0.01)  # an image-independent delta: the attack removes it
    x = torch.rand(2, 3, 32, 32) * 0.5 + 0.25
    protected = (x + gen(x, 8 / 255)).clamp(0, 1)
    assert torch.allclose(augment_subtract_public_model(gen, protected, 8 / 255, 1.0), x, atol=1e-6)
    assert torch.equal(augment_subtract_public_model(gen, protected, 8 / 255, 0.0), protected)


def test_the_periodic_mean_attack_as_augmentation():
    from ridtrain.defender.train import augment_subtract_periodic_mean

    tile = torch.randn(2, 3, 16, 16)
    tile -= tile.mean(dim=(2, 3), keepdim=True)  # a repeating delta with no flat part: removed whole
    repeating = tile.repeat(1, 1, 2, 3)
    assert augment_subtract_periodic_mean(repeating, 1.0).abs().max() < 1e-6
    assert torch.equal(augment_subtract_periodic_mean(repeating, 0.0), repeating)
    flat = torch.full((2, 3, 32, 48), 0.01)  # no repeating part: kept
    assert torch.allclose(augment_subtract_periodic_mean(flat, 1.0), flat)
    waves = torch.cos(torch.pi * (0.37 * torch.arange(2)[:, None] + 0.61 * torch.arange(3)))  # one sign per cell, varying
    varying = repeating * waves.repeat_interleave(16, 0).repeat_interleave(16, 1)
    kept = augment_subtract_periodic_mean(varying, 1.0)
    assert (kept - varying).norm() < 0.6 * varying.norm()
    with pytest.raises(ValueError, match="multiples of 16"):
        augment_subtract_periodic_mean(torch.zeros(1, 3, 24, 32), 1.0)


def test_the_tile_fit_attack_as_augmentation():
    from ridtrain.defender.train import augment_subtract_tile_fit

    torch.manual_seed(0)
    basis = torch.randn(2, 3 * 16 * 16, requires_grad=True)
    coef = torch.randn(2, 2, 3, 2)  # (N, rows, cols, K): each cell its own mix of the tiles
    cells = (coef @ basis.detach()).reshape(2, 2, 3, 3, 16, 16)
    mixed = cells.permute(0, 3, 1, 4, 2, 5).reshape(2, 3, 32, 48)
    assert augment_subtract_tile_fit(mixed, basis, 1.0).abs().max() < 1e-4
    assert torch.equal(augment_subtract_tile_fit(mixed, basis, 0.0), mixed)
    other = torch.randn(2, 3, 32, 48)
    kept = augment_subtract_tile_fit(other, basis, 1.0)
    assert (kept - other).norm() < 0.2 * other.norm()  # 2 of 768 directions per cell
    kept.pow(2).sum().backward()
    assert basis.grad is not None and basis.grad.abs().sum() > 0  # training can move the tiles away from the fit


def test_the_tile_fit_augmentation_removes_a_real_generators_tiles():
    """Tied to the generator's own layout: with its head at zero and its tiles small (tanh is
    then linear), its delta is a mix of its tiles in every cell, which the fit removes whole."""
    from ridtrain.defender.generators import PATTERN_GAIN, build_generator
    from ridtrain.defender.train import augment_subtract_tile_fit

    torch.manual_seed(0)
    gen = build_generator("rid-s", **SMALL, pattern=16, code_dim=16, tile_field=True).eval()
    torch.nn.init.normal_(gen.tile, std=1e-3 / PATTERN_GAIN)
    torch.nn.init.normal_(gen.code_tile_bank, std=1e-3 / PATTERN_GAIN)
    with torch.no_grad():
        delta = gen(torch.rand(2, 3, 32, 48), 8 / 255)
        left = augment_subtract_tile_fit(delta, gen.tile_basis(), 1.0, gen.config.pattern)
    assert delta.abs().max() > 0 and left.norm() < 1e-3 * delta.norm()


def test_a_stride_8_generator_trains_against_a_latent_encoder_alone(cfg, tmp_path):
    """TAEF2 as the only target (issue 23): the latent loss and the delta penalty are logged, the
    head starts off zero (the squared shift has no gradient at delta = 0) and moves."""
    from ridtrain.defender.generators import build_generator

    stride8 = {"unshuffle": 8, "channels": [16], "blocks": [1], "up_blocks": []}
    assert build_generator("rid-s", **stride8).stride == 8
    cfg.targets, cfg.latent_targets, cfg.arch_overrides = [], ["taef2"], stride8
    cfg.l2_weight, cfg.head_init_std, cfg.side, cfg.crop, cfg.steps = 1.5, 1e-2, 64, 32, 3
    final = train(cfg)
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert all(r["latent"] < 0 and r["sds"] == 0 and r["delta_sq"] > 0 for r in rows), rows
    assert json.loads((final / "model_card.json").read_text())["trained_against"] == ["taef2"]
    gen = load_generator(final)
    assert gen.stride == 8 and head(final).abs().max() > 0
    cfg.latent_target_seed, cfg.steps, cfg.output = 0, 1, str(tmp_path / "targeted")  # the pull toward a texture's latent
    train(cfg)
    (row,) = [json.loads(line) for line in (tmp_path / "targeted" / "metrics.jsonl").read_text().splitlines()]
    assert row["latent"] > 0  # a distance to the target, not a negated shift
    cfg.latent_targets = []
    with pytest.raises(ValueError, match="no targets"):
        train(cfg)


def test_the_targets_see_crops_at_target_scale_beside_the_encoder(cfg, tmp_path, monkeypatch):
    """TAEF2 and diffusion targets together (issue 23): the encoder reads the crop as it is, the
    diffusion targets at target_scale (proxies trained at a smaller side than the generator's)."""
    from ridtrain.defender import train as train_module

    seen, read, real, real_latent = [], [], train_module.ensemble_sds_loss, train_module.ensemble_latent_loss
    monkeypatch.setattr(train_module, "ensemble_sds_loss", lambda targets, x, **kw: seen.append(tuple(x.shape)) or real(targets, x, **kw))
    monkeypatch.setattr(train_module, "ensemble_latent_loss",
                        lambda encoders, x, x_adv, *a: read.append(tuple(x_adv.shape)) or real_latent(encoders, x, x_adv, *a))
    cfg.latent_targets, cfg.head_init_std, cfg.target_scale, cfg.side, cfg.crop = ["taef2"], 1e-2, 0.5, 64, 32
    cfg.arch_overrides = {"unshuffle": 8, "channels": [16], "blocks": [1], "up_blocks": [], "code_dim": 16, "wave_field": 5}
    cfg.cache_images = True
    train(cfg)
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert seen == [(2, 3, 16, 16)] * 2 and read == [(2, 3, 32, 32)] * 2, (seen, read)
    assert all(r["latent"] < 0 and r["sds"] != 0 for r in rows), rows
