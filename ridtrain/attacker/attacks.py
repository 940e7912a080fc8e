"""Per-image PGD baselines: AdvDM, ASPL-lite and encoder PGD (L-infinity, eps on the [0,1] scale).

They are the regression targets of RID's regulariser and the anchor for speed and efficacy.
- AdvDM: maximise the targets' denoising loss by signed-gradient ascent on delta.
- ASPL-lite (after Anti-DreamBooth's ASPL): alternate a few fine-tuning steps of a surrogate copy of
  each UNet on the current protected images (what an attacker would do) with PGD steps against it.
- encoder: white-box PGD on latent encoders (TAEF2, FLUX.2's latent space): maximise the squared
  relative latent shift |E(x + delta) - E(x)|² / |E(x)|², PhotoGuard's encoder attack. The ceiling
  that a generator's shift in that latent space is compared with.
"""

from __future__ import annotations

import copy
import os
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import save_file
from tqdm.auto import tqdm

from ridtrain.diffusion.sds import denoise_loss
from ridtrain.diffusion.taef2 import latent_loss


def _project(x, delta, eps):
    delta = delta.clamp(-eps, eps)
    return (x + delta).clamp(0, 1) - x


def pgd_steps(targets, x, delta, eps, steps, step_size, t_range=(0, None), generator=None):
    """`steps` signed-gradient ascent steps of the mean denoising loss; returns the new delta."""
    for _ in range(steps):
        delta = delta.detach().requires_grad_(True)
        loss = sum(denoise_loss(tg, x + delta, t_range=t_range, generator=generator) for tg in targets) / len(targets)
        (grad,) = torch.autograd.grad(loss, delta)
        delta = _project(x, delta.detach() + step_size * grad.sign(), eps)
    return delta.detach()


def advdm(targets, x, eps, steps=50, step_size=1 / 255, t_range=(0, None), generator=None):
    """AdvDM perturbation of images x (N,3,H,W) in [0,1]."""
    return pgd_steps(targets, x, torch.zeros_like(x), eps, steps, step_size, t_range, generator)


def aspl_lite(targets, x, eps, rounds=5, ft_steps=3, pgd_per_round=10, step_size=1 / 255, ft_lr=1e-4, t_range=(0, None), generator=None):
    """ASPL-lite perturbation, after Anti-DreamBooth's ASPL. Each target gets a trainable copy of
    its UNet, the "personalised" model. Each round: (1) a surrogate copy of it is fine-tuned on the
    clean images, (2) PGD attacks that surrogate, (3) the personalised model is fine-tuned on the
    protected images, as an attacker would. The given targets are never changed."""
    models = [_trainable_copy(tg) for tg in targets]
    delta = torch.zeros_like(x)
    for _ in range(rounds):
        surrogates = [_trainable_copy(m) for m in models]
        for s in surrogates:
            _fine_tune(s, x, ft_steps, ft_lr, t_range, generator)
        delta = pgd_steps(surrogates, x, delta, eps, pgd_per_round, step_size, t_range, generator)
        for m in models:
            _fine_tune(m, (x + delta).detach(), ft_steps, ft_lr, t_range, generator)
    return delta


def _trainable_copy(target):
    """A shallow copy of a target with its own deep-copied UNet; VAE and text context are shared."""
    clone = copy.copy(target)
    clone._modules = dict(target._modules, unet=copy.deepcopy(target.unet))
    return clone


def _fine_tune(target, images, steps, lr, t_range, generator):
    target.unet.requires_grad_(True).train()
    opt = torch.optim.AdamW(target.unet.parameters(), lr=lr)
    for _ in range(steps):
        loss = denoise_loss(target, images, t_range=t_range, generator=generator)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    target.unet.requires_grad_(False).eval()


def encoder_pgd(encoders, x, eps, steps=50, step_size=1 / 255, generator=None):
    """Encoder-PGD perturbation of images x (N,3,H,W) in [0,1], H and W multiples of the encoders'
    stride: signed-gradient ascent on the mean over `encoders` of the squared relative latent shift,
    from a uniform random start in the eps ball (at delta = 0 the shift's gradient is 0)."""
    with torch.no_grad():
        clean = [encoder(x) for encoder in encoders]
    start = torch.rand(x.shape, generator=generator, dtype=x.dtype).to(x.device)
    delta = _project(x, (2 * start - 1) * eps, eps)
    for _ in range(steps):
        delta = delta.detach().requires_grad_(True)
        loss = sum(latent_loss(encoder, x + delta, z) for encoder, z in zip(encoders, clean)) / len(encoders)
        (grad,) = torch.autograd.grad(-loss, delta)  # latent_loss is the negated shift: ascend the shift
        delta = _project(x, delta.detach() + step_size * grad.sign(), eps)
    return delta.detach()


METHODS = {"advdm": advdm, "aspl": aspl_lite, "encoder": encoder_pgd}
ENCODER_METHODS = ("encoder",)  # their targets are latent encoders (ridtrain.diffusion.taef2), not diffusers models


# ----------------------------------------------------------------------------- files


def parse_shard(shard: str) -> tuple[int, int]:
    """'K/N' -> (K, N): this run takes every N-th image starting at the K-th (0-based)."""
    try:
        k, n = (int(v) for v in shard.split("/"))
    except ValueError:
        raise ValueError(f"shard must look like K/N, e.g. 0/4, got {shard!r}") from None
    if not 0 <= k < n:
        raise ValueError(f"shard {shard!r}: need 0 <= K < N")
    return k, n


def run_attack(images, out, targets, method="advdm", eps_levels=8, side=512, shard="0/1", overwrite=False, **method_kwargs) -> dict:
    """Protect every image of a folder with a PGD baseline, computed at the training working size.

    Writes out/images/<rel>.png (the full-size protected photo, as `rid protect` would: comparable
    by `rid eval --protected`) and then out/deltas/<rel>.safetensors (key "delta", (3,h,w) float32
    at the working size, with method metadata: the training regulariser's target). An image whose
    delta exists is skipped, so an interrupted run resumes. Returns counts and seconds per image."""
    from ridtrain import pixels
    from ridtrain.data import DATA_MULTIPLE, delta_path, find_images

    k, n = parse_shard(shard)
    files = find_images(images)[k::n]
    attack, eps = METHODS[method], eps_levels / 255.0
    device = next(targets[0].parameters()).device
    counts, seconds = {"done": 0, "skipped": 0, "failed": 0}, 0.0
    for path in tqdm(files, desc=f"{method} {shard}"):
        file = delta_path(Path(out) / "deltas", images, path)
        if file.exists() and not overwrite:
            counts["skipped"] += 1
            continue
        try:
            img = pixels.load_image(path)
        except pixels.ImageError as err:
            print(f"error: {path}: {err}", file=sys.stderr)
            counts["failed"] += 1
            continue
        x = pixels.to_float(img.rgb)  # (1, 3, H, W)
        tic = time.perf_counter()
        delta = attack(targets, pixels.working_image(x, side, DATA_MULTIPLE).to(device), eps, **method_kwargs).cpu()
        elapsed = time.perf_counter() - tic
        seconds += elapsed
        image = Path(out) / "images" / file.relative_to(Path(out) / "deltas").with_suffix("").with_suffix(".png")
        image.parent.mkdir(parents=True, exist_ok=True)
        pixels.save_image(image, pixels.apply_delta(x, delta, eps), img.alpha)
        file.parent.mkdir(parents=True, exist_ok=True)
        meta = {"method": method, "eps": str(eps_levels), "side": str(side), "seconds": f"{elapsed:.3f}",
                **{k: str(v) for k, v in method_kwargs.items()}}
        tmp = file.with_name(file.name + ".tmp")
        save_file({"delta": delta[0].contiguous()}, tmp, metadata=meta)
        os.replace(tmp, file)
        counts["done"] += 1
    counts["seconds_per_image"] = seconds / counts["done"] if counts["done"] else None
    return counts
