"""Train a RID generator with Adv-SDS against an ensemble of diffusion targets.

One CPU:          rid train --config cfg.yaml steps=100
Many GPUs/nodes:  accelerate launch -m rid.cli train --config cfg.yaml   (DDP via accelerate)

Output folder: checkpoint-NNNNNNN/ (generator config.json + safetensors, train_config.yaml,
accelerate state for --resume), final/ (the generator), metrics.jsonl, training_curve.png.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from diffusers.optimization import get_scheduler
from torch.utils.data import DataLoader, RandomSampler
from tqdm.auto import tqdm

from ridtrain.cells import cell_mean, tile_fit
from ridtrain.config import TrainConfig
from ridtrain.data import CropDataset
from ridtrain.defender.augment import robustness_augment
from ridtrain.defender.generators import build_generator
from ridtrain.diffusion.sds import ensemble_sds_loss
from ridtrain.diffusion.taef2 import latent_loss, load_encoders, target_texture
from ridtrain.diffusion.targets import load_targets

LOADER_BATCHES = 64  # batches per process in one loader epoch (at least)
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def ensemble_latent_loss(encoders, x, x_adv, target_seed: int | None = None):
    """The mean over latent encoders of their latent loss (ridtrain.diffusion.taef2): the negated
    squared relative shift of the attacked, augmented photo's latent from the clean crop's; or,
    with `target_seed`, its squared distance to the latent of that seed's fixed texture."""
    total = 0.0
    for encoder in encoders:
        with torch.no_grad():
            clean = encoder(x)
            target = None if target_seed is None else encoder(target_texture((1, *x.shape[1:]), target_seed).to(x))  # one, broadcast
        total = total + latent_loss(encoder, x_adv, clean, target)
    return total / len(encoders)


def at_scale(x, scale: float):
    """x resized by `scale` (bilinear, antialiased), as a photo brought to a smaller working side is."""
    if scale == 1.0:
        return x
    return torch.nn.functional.interpolate(x, scale_factor=scale, mode="bilinear", antialias=True, align_corners=False)


def regression_loss(delta, delta_pgd, has_delta):
    """||delta(x) - delta_pgd(x)||² per image (sum over pixels), mean over the images that have one."""
    if not has_delta.any():
        return delta.new_zeros(())
    per_image = (delta - delta_pgd).pow(2).flatten(1).sum(1)
    return per_image[has_delta].mean()


def seed_diversity_loss(delta, delta_other):
    """Mean cos² between the deltas of one image under two independent codes: 0 when they are
    orthogonal. Not cos itself: -1 (delta' = -delta) would let another seed undo a protection."""
    a, b = delta.flatten(1), delta_other.flatten(1)
    cos = (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1)).clamp_min(1e-12)
    return cos.pow(2).mean()


def augment_subtract_public_model(gen, x_protected, eps, prob: float):
    """The attack on a public generator, as augmentation: with probability `prob` per image, the
    attacker runs the model on the protected image with a code of their own and subtracts it.
    Differentiable through both runs, so training learns a delta that this does not undo."""
    if prob <= 0:
        return x_protected
    hit = (torch.rand(len(x_protected), device=x_protected.device) < prob).view(-1, 1, 1, 1)
    if not hit.any():
        return x_protected
    purified = (x_protected - gen(x_protected, eps)).clamp(0, 1)
    return torch.where(hit, purified, x_protected)


def augment_subtract_periodic_mean(delta, prob: float, period: int = 16):
    """The one-photo attack on a repeating tile (purify's subtract-periodic-mean), as augmentation:
    with probability `prob` per image, delta less its own mean period x period cell (less the
    cell's flat mean). Taken on delta itself, not on the photo: the attacker's estimate at its
    best. Differentiable, so training learns a delta whose effect does not sit in that cell."""
    if prob <= 0:
        return delta
    n, c, h, w = delta.shape
    if h % period or w % period:
        raise ValueError(f"aug_periodic_mean_prob needs crops that are multiples of {period}, got {h}x{w}")
    hit = (torch.rand(n, device=delta.device) < prob).view(-1, 1, 1, 1)
    return torch.where(hit, delta - cell_mean(delta, period).repeat(1, 1, h // period, w // period), delta)


def augment_subtract_tile_fit(delta, basis, prob: float, period: int = 16):
    """The attack that reads the public tiles (purify's subtract-tile-fit), as augmentation: with
    probability `prob` per image, delta less, in each period x period cell, its least-squares fit
    by the tiles `basis` (T, 3·period²). On delta itself, as the periodic-mean augmentation is;
    differentiable through the fit and the tiles, so training learns a delta that the public
    tiles do not explain. In float32 whatever the mixed precision: the solve has no bf16 kernel."""
    if prob <= 0:
        return delta
    with torch.autocast(delta.device.type, enabled=False):
        fit = tile_fit(delta.float(), basis.float(), period).to(delta.dtype)
    hit = (torch.rand(len(delta), device=delta.device) < prob).view(-1, 1, 1, 1)
    return torch.where(hit, delta - fit, delta)


def warm_start(gen, folder: str) -> None:
    """Start from a saved generator's weights: every tensor it has must fit (same name, same
    shape); tensors it lacks (a randomised generator's code layers, grown from a deterministic
    one) keep their initialisation."""
    from safetensors.torch import load_file

    files = sorted(Path(folder).glob("*.safetensors"))
    if len(files) != 1:
        raise ValueError(f"init_from: expected one .safetensors file in {folder}, found {len(files)}")
    saved, own = load_file(files[0]), gen.state_dict()
    misfit = [k for k, v in saved.items() if k not in own or own[k].shape != v.shape]
    if misfit:
        raise ValueError(f"init_from {folder}: tensors that do not fit this generator: {misfit}")
    gen.load_state_dict(saved, strict=False)


def checkpoints(output: Path) -> list[Path]:
    return sorted(output.glob("checkpoint-*"))


def save_checkpoint(accelerator, gen, cfg: TrainConfig, step: int) -> Path:
    folder = Path(cfg.output) / f"checkpoint-{step:07d}"
    accelerator.save_state(str(folder / "state"))
    if accelerator.is_main_process:
        save_generator(accelerator.unwrap_model(gen), cfg, folder, step)
        (folder / "trainer_state.json").write_text(json.dumps({"step": step}))
        for old in checkpoints(Path(cfg.output))[: -cfg.keep_checkpoints]:
            shutil.rmtree(old)
    return folder


def save_generator(gen, cfg: TrainConfig, folder: Path, step: int) -> None:
    gen.save_pretrained(folder)
    cfg.save(folder / "train_config.yaml")
    card = {
        "summary": f"{cfg.arch} trained for {step} steps at eps={cfg.eps} against {len(cfg.targets)} diffusion target(s) "
                   f"(Adv-SDS) and {len(cfg.latent_targets)} latent encoder(s).",
        "trained_against": [str(t) for t in [*cfg.targets, *cfg.latent_targets]],
        "data": str(cfg.data),
    }
    (folder / "model_card.json").write_text(json.dumps(card, indent=2))


def resume_state(accelerator, output: Path, resume: bool) -> int:
    """The step to start from. A fresh run refuses a folder that holds an earlier run; --resume
    loads the newest checkpoint (weights, optimiser, scheduler, RNG) and drops metric rows logged
    after it, so the log has each step once."""
    if not resume:
        if (output / "metrics.jsonl").exists() or checkpoints(output):
            raise ValueError(f"{output} holds an earlier run: pass --resume to continue it, or choose another output")
        return 0
    if not checkpoints(output):
        raise ValueError(f"--resume: no checkpoint-* in {output}")
    last = checkpoints(output)[-1]
    accelerator.load_state(str(last / "state"))
    step = json.loads((last / "trainer_state.json").read_text())["step"]
    log = output / "metrics.jsonl"
    if accelerator.is_main_process and log.exists():
        rows = [line for line in log.read_text().splitlines() if line.strip() and json.loads(line)["step"] <= step]
        log.write_text("".join(row + "\n" for row in rows))
    accelerator.print(f"resumed from {last} at step {step}")
    return step


def train(cfg: TrainConfig, resume: bool = False) -> Path:
    accelerator = Accelerator(mixed_precision=cfg.mixed_precision)
    set_seed(cfg.seed, device_specific=True)  # each process draws its own crops, t and noise
    output = Path(cfg.output)

    gen = build_generator(cfg.arch, eps=cfg.eps, working_side=cfg.side, **cfg.arch_overrides)
    if cfg.head_init_std and not cfg.init_from and not resume:
        torch.nn.init.normal_(gen.head.weight, std=cfg.head_init_std)
    if cfg.init_from and not resume:
        warm_start(gen, cfg.init_from)
    if not cfg.targets and not cfg.latent_targets:
        raise ValueError("config names no targets (targets or latent_targets)")
    targets = load_targets(cfg.targets, device=accelerator.device, dtype=DTYPES[cfg.target_dtype])
    encoders = load_encoders(cfg.latent_targets, device=accelerator.device)
    data = CropDataset(cfg.data, cfg.side, cfg.crop, cfg.crop_scale, cfg.flip, cfg.color_jitter, cfg.pgd_deltas,
                       cache=cfg.cache_images)
    # one loader epoch is many shuffled passes over the photos: a corpus smaller than a batch would
    # otherwise give one short batch per epoch, and workers, each holding its decoded images, would
    # restart every step
    n = accelerator.num_processes
    passes = math.ceil(cfg.batch * LOADER_BATCHES * n / len(data))
    loader = DataLoader(data, batch_size=cfg.batch, sampler=RandomSampler(data, num_samples=passes * len(data)), drop_last=True,
                        num_workers=cfg.num_workers, persistent_workers=cfg.num_workers > 0)
    opt = torch.optim.AdamW(gen.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    # a prepared scheduler steps once per process each step, so its horizon is scaled to match
    sched = get_scheduler(cfg.schedule, opt, num_warmup_steps=cfg.warmup * n, num_training_steps=cfg.steps * n)
    gen, opt, loader, sched = accelerator.prepare(gen, opt, loader, sched)

    step = resume_state(accelerator, output, resume)
    accelerator.wait_for_everyone()  # every process has checked the folder before the first write to it
    if accelerator.is_main_process:
        output.mkdir(parents=True, exist_ok=True)
        cfg.save(output / "train_config.yaml")

    eps = cfg.eps / 255.0
    t_range = (cfg.t_min, cfg.t_max)
    bar = tqdm(total=cfg.steps, initial=step, disable=not accelerator.is_local_main_process, desc="train")
    metrics = open(output / "metrics.jsonl", "a") if accelerator.is_main_process else None
    tic = time.perf_counter()
    while step < cfg.steps:
        for x, delta_pgd, has_delta in loader:
            with accelerator.autocast():
                delta = gen(x, eps)  # a randomised generator draws a fresh code per image
                # the attacks stack: a batch image may lose its periodic mean, its tile fit and the public model's delta
                attacked = augment_subtract_periodic_mean(delta, cfg.aug_periodic_mean_prob)
                if cfg.aug_tile_fit_prob:
                    plain = accelerator.unwrap_model(gen)
                    attacked = augment_subtract_tile_fit(attacked, plain.tile_basis(), cfg.aug_tile_fit_prob, plain.config.pattern)
                x_prot = augment_subtract_public_model(gen, (x + attacked).clamp(0, 1), eps, cfg.aug_subtract_prob)
                x_adv = robustness_augment(x_prot, cfg)
                sds = ensemble_sds_loss(targets, at_scale(x_adv, cfg.target_scale), t_range=t_range) if targets else delta.new_zeros(())
                lat = ensemble_latent_loss(encoders, x, x_adv, cfg.latent_target_seed) if encoders else delta.new_zeros(())
                reg = regression_loss(delta, delta_pgd, has_delta)
                div = seed_diversity_loss(delta, gen(x, eps)) if cfg.diversity_weight else delta.new_zeros(())
                size = delta.float().pow(2).mean() / eps**2
                loss = sds + cfg.latent_weight * lat + cfg.pgd_lambda * reg + cfg.diversity_weight * div + cfg.l2_weight * size
            opt.zero_grad(set_to_none=True)
            accelerator.backward(loss)
            if cfg.grad_clip:
                accelerator.clip_grad_norm_(gen.parameters(), cfg.grad_clip)
            opt.step()
            sched.step()
            step += 1

            loss, sds, lat, reg, div, size = (accelerator.reduce(v.detach(), "mean").item() for v in (loss, sds, lat, reg, div, size))
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4g}")
            if metrics:
                now = time.perf_counter()
                row = {"step": step, "loss": loss, "sds": sds, "latent": lat, "reg": reg, "div": div, "delta_sq": size,
                       "lr": sched.get_last_lr()[0], "sec": now - tic}
                tic = now
                metrics.write(json.dumps(row) + "\n")
                metrics.flush()
            if step % cfg.checkpoint_every == 0 or step == cfg.steps:
                save_checkpoint(accelerator, gen, cfg, step)
            if step >= cfg.steps:
                break
    bar.close()
    accelerator.wait_for_everyone()
    final = output / "final"
    if accelerator.is_main_process:
        metrics.close()
        save_generator(accelerator.unwrap_model(gen), cfg, final, step)
        plot_metrics(output / "metrics.jsonl", output / "training_curve.png")
    accelerator.print(f"saved {final}")
    accelerator.end_training()
    return final


def plot_metrics(jsonl: Path, png: Path, window: int = 20) -> None:
    """Two panels: the Adv-SDS value 1/2 w²||n̂ - n||² (it rises as protection strengthens: the
    gradient, not the value, is what training descends) and the PGD regulariser; raw and a
    moving average, since single steps are dominated by the draw of t."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in jsonl.read_text().splitlines() if line.strip()]
    steps = [r["step"] for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, label in zip(axes, ("sds", "reg"), ("Adv-SDS value (higher = stronger)", "||delta - delta_pgd||² (lower = closer)")):
        values = torch.tensor([r[key] for r in rows], dtype=torch.float64)
        smooth = torch.nn.functional.avg_pool1d(values[None, None], min(window, len(values)), stride=1)[0, 0]
        ax.plot(steps, values.tolist(), alpha=0.3, label="per step")
        ax.plot(steps[len(steps) - len(smooth):], smooth.tolist(), label=f"mean of {min(window, len(values))}")
        ax.set_xlabel("step")
        ax.set_ylabel(label)
        ax.legend()
    fig.tight_layout()
    tmp = png.with_name(png.name + ".tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(png)
