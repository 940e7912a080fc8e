"""Proxy targets: small latent diffusion models trained from scratch on the sample corpus, in the
classes and folder layout of Stable Diffusion (`rid proxy train`, `rid proxy report`).

No SD weights exist here, so these stand in for them; `ridtrain.diffusion.targets.load_target` reads them
exactly as it reads SD. Two stages, each resumable from its last checkpoint:

    1. AutoencoderKL: reconstruction MSE + kl_weight * KL, on random crops. Skipped when `vae`
       names an already trained one (the SD 1.x models share one VAE; the ensemble may too).
       The latent scaling factor is then set as SD's was: 1 / std of the latents.
    2. UNet2DConditionModel: DDPM noise prediction on the frozen VAE's latents, conditioned by a
       frozen random tiny CLIP text encoder on "a photo of <file name>" or the blank prompt.
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from ridtrain.config import YamlConfig


@dataclass
class ProxyConfig(YamlConfig):
    OPTIONAL: ClassVar[dict] = {"vae": str}

    output: str = "runs/proxies/proxy-a"
    data: str = "runs/corpus/train"
    seed: int = 0
    # architecture
    width: int = 32  # base channels of the VAE and the UNet
    unet_layers: int = 1  # res-blocks per UNet level
    unet_levels: int = 2
    latent_channels: int = 4
    vae: str | None = None  # a trained proxy (or its vae/ folder) whose VAE to reuse, frozen
    # data
    side: int = 256  # photos are brought to this shorter side, then cropped
    crop: int = 64
    crop_scale: list = field(default_factory=lambda: [0.15, 1.0])
    caption_rate: float = 0.5  # share of crops captioned "a photo of <name>"; the rest get " "
    # optimisation
    vae_steps: int = 600
    unet_steps: int = 2000
    batch: int = 8
    vae_lr: float = 5e-4
    unet_lr: float = 5e-4
    kl_weight: float = 1e-6
    checkpoint_every: int = 200


def build_proxy_models(cfg: ProxyConfig, vocab_size: int):
    """Randomly initialised (vae, unet, text_encoder, scheduler) for the config."""
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    w, text_dim = cfg.width, 32
    torch.manual_seed(cfg.seed)
    text = CLIPTextModel(CLIPTextConfig(
        vocab_size=vocab_size, hidden_size=text_dim, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        max_position_embeddings=77, bos_token_id=vocab_size - 2, eos_token_id=vocab_size - 1, pad_token_id=vocab_size - 1))
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=cfg.latent_channels, sample_size=cfg.crop,
        down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
        block_out_channels=(w, 2 * w, 2 * w), layers_per_block=1, norm_num_groups=8)
    levels = cfg.unet_levels
    unet = UNet2DConditionModel(
        sample_size=cfg.crop // 4, in_channels=cfg.latent_channels, out_channels=cfg.latent_channels,
        block_out_channels=tuple(w * min(2 ** i, 4) for i in range(levels)), layers_per_block=cfg.unet_layers,
        norm_num_groups=8, cross_attention_dim=text_dim, attention_head_dim=8,
        down_block_types=("CrossAttnDownBlock2D",) * (levels - 1) + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * (levels - 1))
    scheduler = DDPMScheduler(num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)
    return vae, unet, text, scheduler


class Crops:
    """Random crops of the corpus (ridtrain.data.CropDataset, photos decoded once) with captions."""

    def __init__(self, cfg: ProxyConfig):
        from ridtrain.data import CropDataset

        self.data = CropDataset(cfg.data, side=cfg.side, crop=cfg.crop, crop_scale=tuple(cfg.crop_scale), color_jitter=0.05, cache=True)
        self.names = [f.stem.replace("_", " ") for f in self.data.files]
        self.caption_rate = cfg.caption_rate

    def batch(self, n: int) -> tuple[torch.Tensor, list[str]]:
        idx = torch.randint(0, len(self.data), (n,)).tolist()
        x = torch.stack([self.data[i][0] for i in idx])
        prompts = [f"a photo of {self.names[i]}" if torch.rand(()) < self.caption_rate else " " for i in idx]
        return x, prompts


def _checkpoint(path: Path, step: int, model, opt) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"step": step, "model": model.state_dict(), "opt": opt.state_dict(), "rng": torch.get_rng_state()}, tmp)
    tmp.replace(path)


def _resume(path: Path, model, opt) -> int:
    if not path.is_file():
        return 0
    state = torch.load(path, weights_only=False)
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["opt"])
    torch.set_rng_state(state["rng"])
    print(f"resumed {path.name} at step {state['step']}", file=sys.stderr)
    return state["step"]


def _loop(name: str, steps: int, model, lr: float, loss_fn, out: Path, every: int, log) -> None:
    """One stage: AdamW with cosine decay, checkpoints every `every` steps, metrics to `log`."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    state = out / "state" / f"{name}.pt"
    state.parent.mkdir(parents=True, exist_ok=True)
    start = _resume(state, model, opt)
    model.train()
    tic = time.perf_counter()
    for step in range(start, steps):
        for group in opt.param_groups:
            group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * step / steps))
        loss = loss_fn()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if (step + 1) % 25 == 0 or step + 1 == steps:
            rate = (step + 1 - start) / (time.perf_counter() - tic)
            log({"stage": name, "step": step + 1, "loss": loss.item(), "it_s": round(rate, 3)})
        if (step + 1) % every == 0 or step + 1 == steps:
            _checkpoint(state, step + 1, model, opt)
    model.eval()


def train_proxy(cfg: ProxyConfig, resume: bool = False) -> Path:
    from diffusers import AutoencoderKL

    from ridtrain.diffusion.tiny import write_model_index, write_tiny_tokenizer

    out = Path(cfg.output)
    if out.exists() and any(out.iterdir()) and not resume:
        raise ValueError(f"{out} holds an earlier run: pass --resume to continue it, or choose another output")
    out.mkdir(parents=True, exist_ok=True)
    cfg.save(out / "proxy_config.yaml")
    vocab = write_tiny_tokenizer(out / "tokenizer")
    vae, unet, text, scheduler = build_proxy_models(cfg, vocab)
    from transformers import CLIPTokenizer

    tokenizer = CLIPTokenizer.from_pretrained(out / "tokenizer")
    text.requires_grad_(False).eval()
    crops = Crops(cfg)
    metrics = (out / "metrics.jsonl").open("a")

    def log(row):
        metrics.write(json.dumps(row) + "\n")
        metrics.flush()
        print(json.dumps(row), file=sys.stderr)

    if cfg.vae:
        src = Path(cfg.vae)
        vae = AutoencoderKL.from_pretrained(src / "vae" if (src / "vae").is_dir() else src)
    else:
        def vae_loss():
            x = crops.batch(cfg.batch)[0] * 2 - 1
            posterior = vae.encode(x).latent_dist
            recon = vae.decode(posterior.sample()).sample
            return (recon - x).pow(2).mean() + cfg.kl_weight * posterior.kl().mean()

        _loop("vae", cfg.vae_steps, vae, cfg.vae_lr, vae_loss, out, cfg.checkpoint_every, log)
        vae.register_to_config(scaling_factor=latent_scale(vae, crops))
    vae.requires_grad_(False).eval()
    alphas = scheduler.alphas_cumprod

    def unet_loss():
        x, prompts = crops.batch(cfg.batch)
        with torch.no_grad():
            z = vae.encode(x * 2 - 1).latent_dist.sample() * vae.config.scaling_factor
            ids = tokenizer(prompts, padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
            context = text(ids)[0]
        t = torch.randint(0, len(alphas), (len(z),))
        noise = torch.randn_like(z)
        a = alphas[t].view(-1, 1, 1, 1)
        z_t = a.sqrt() * z + (1 - a).sqrt() * noise
        return (unet(z_t, t, encoder_hidden_states=context).sample - noise).pow(2).mean()

    _loop("unet", cfg.unet_steps, unet, cfg.unet_lr, unet_loss, out, cfg.checkpoint_every, log)
    for name, part in (("vae", vae), ("unet", unet), ("text_encoder", text), ("scheduler", scheduler)):
        part.save_pretrained(out / name)
    write_model_index(out, {"vae": "AutoencoderKL", "unet": "UNet2DConditionModel", "text_encoder": "CLIPTextModel"})
    metrics.close()
    return out


@torch.no_grad()
def latent_scale(vae, crops: Crops, batches: int = 8) -> float:
    """1 / std of the latents over random crops: SD's scaling_factor (0.18215) was chosen this way."""
    z = torch.cat([vae.encode(crops.batch(16)[0] * 2 - 1).latent_dist.sample() for _ in range(batches)])
    return float(1.0 / z.std())


def heldout_crops(heldout: Path, n: int, crop: int = 64, seed: int = 0) -> torch.Tensor:
    """n fixed random crops (N,3,crop,crop) in [0,1] of the held-out photos."""
    from ridtrain.data import CropDataset

    data = CropDataset(heldout, side=256, crop=crop, crop_scale=(0.15, 1.0), flip=False, color_jitter=0.0, cache=True)
    torch.manual_seed(seed)
    return torch.stack([data[i % len(data)][0] for i in range(n)])


@torch.no_grad()
def sample(target_dir: Path, prompts: list[str], seed: int = 0, steps: int = 50, guidance: float = 3.0, size: int = 16) -> torch.Tensor:
    """DDIM samples (N,3,4*size,4*size) in [0,1] from a proxy, classifier-free guidance on the blank prompt."""
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    vae = AutoencoderKL.from_pretrained(target_dir / "vae").eval()
    unet = UNet2DConditionModel.from_pretrained(target_dir / "unet").eval()
    text = CLIPTextModel.from_pretrained(target_dir / "text_encoder").eval()
    tok = CLIPTokenizer.from_pretrained(target_dir / "tokenizer")
    scheduler = DDIMScheduler.from_pretrained(target_dir / "scheduler")
    encode = lambda p: text(tok(p, padding="max_length", max_length=77, return_tensors="pt").input_ids)[0]  # noqa: E731
    cond, uncond = encode(prompts), encode([" "] * len(prompts))
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(len(prompts), vae.config.latent_channels, size, size, generator=g)
    scheduler.set_timesteps(steps)
    for t in scheduler.timesteps:
        e_c, e_u = unet(torch.cat([z, z]), t, encoder_hidden_states=torch.cat([cond, uncond])).sample.chunk(2)
        z = scheduler.step(e_u + guidance * (e_c - e_u), t, z).prev_sample
    return ((vae.decode(z / vae.config.scaling_factor).sample + 1) / 2).clamp(0, 1)


def image_grid(rows: list[torch.Tensor], path: Path, scale: int = 2) -> Path:
    from PIL import Image

    from ridtrain.pixels import save_image, to_uint8

    grid = torch.cat([torch.cat(list(r), dim=-1) for r in rows], dim=-2)[None]  # (1,3,H,W)
    rgb = to_uint8(grid)
    rgb = np.asarray(Image.fromarray(rgb).resize((rgb.shape[1] * scale, rgb.shape[0] * scale), Image.NEAREST))
    save_image(path, rgb)
    return path


PROMPTS = [" ", "a photo of astronaut", "a photo of coffee", "a photo of chelsea", "a photo of camera", "a photo of horse"]


@torch.no_grad()
def report(proxies: list[Path], heldout: Path, out: Path, n: int = 64, samples: int = 4) -> dict:
    """VAE PSNR and denoising MSE on held-out crops per proxy (common random numbers), a sample
    grid (one row per proxy, PROMPTS across) and VAE reconstructions; writes out/proxies.json."""
    from ridtrain.diffusion.sds import denoise_loss
    from ridtrain.diffusion.targets import load_target

    out.mkdir(parents=True, exist_ok=True)
    x = heldout_crops(heldout, n)
    rows, result = [], {"heldout": str(heldout), "crops": n, "noise_draws": samples, "proxies": {}}
    recon_rows = [x[:8]]
    for proxy in map(Path, proxies):
        target = load_target(proxy)
        recon = ((target.vae.decode(target.vae.encode(x * 2 - 1).latent_dist.mode()).sample + 1) / 2).clamp(0, 1)
        psnr = float((10 * torch.log10(1 / (recon - x).pow(2).mean(dim=(1, 2, 3)))).mean())
        g = torch.Generator().manual_seed(0)
        mse = float(torch.stack([denoise_loss(target, x, generator=g) for _ in range(samples)]).mean())
        params = sum(p.numel() for p in target.unet.parameters())
        result["proxies"][proxy.name] = {"vae_psnr_db": psnr, "denoise_mse": mse, "denoise_mse_predicting_zero": 1.0,
                                         "unet_parameters": params, "vae_parameters": sum(p.numel() for p in target.vae.parameters())}
        rows.append(sample(proxy, PROMPTS))
        recon_rows.append(recon[:8])
    result["grid"] = str(image_grid(rows, out / "proxy-samples.png"))
    result["reconstructions"] = str(image_grid(recon_rows, out / "vae-reconstructions.png"))
    (out / "proxies.json").write_text(json.dumps(result, indent=2) + "\n")
    return result
