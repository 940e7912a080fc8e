"""Tiny latent and pixel diffusion models in the folder layout of stable-diffusion-v1-5.

No Stable Diffusion weights exist on our machines, so tests and the placeholder model use these:
real diffusers classes (AutoencoderKL, UNet2DConditionModel, CLIPTextModel, CLIPTokenizer,
DDPMScheduler), randomly initialised from small configs, `save_pretrained` into a folder that
`ridtrain.diffusion.targets.load_target` then reads exactly as it reads a real checkpoint.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

START, END = "<|startoftext|>", "<|endoftext|>"


def _byte_vocab() -> list[str]:
    """The 256 byte-level symbols of GPT-2/CLIP BPE (bytes_to_unicode), so any text tokenizes."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    extra = [b for b in range(256) if b not in keep]
    return [chr(b) for b in keep] + [chr(256 + i) for i in range(len(extra))]


def write_tiny_tokenizer(folder: Path) -> int:
    """A CLIP BPE tokenizer with a byte-level vocabulary and no merges; returns the vocab size."""
    from transformers import CLIPTokenizer

    symbols = _byte_vocab()
    vocab = {s: i for i, s in enumerate(symbols + [s + "</w>" for s in symbols] + [START, END])}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    tok = CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=77)
    tok.save_pretrained(folder)
    return len(vocab)


def build_tiny_ldm(
    path: str | Path,
    seed: int = 0,
    width: int = 32,
    latent_channels: int = 4,
    sample_size: int = 64,
    timesteps: int = 1000,
) -> Path:
    """Write a tiny latent diffusion model (vae/, unet/, text_encoder/, tokenizer/, scheduler/)."""
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from ridtrain.diffusion.targets import quiet_hub_libraries

    quiet_hub_libraries()
    path = Path(path)
    torch.manual_seed(seed)
    vocab_size = write_tiny_tokenizer(path / "tokenizer")
    text_dim = 32
    CLIPTextModel(
        CLIPTextConfig(
            vocab_size=vocab_size, hidden_size=text_dim, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=2, max_position_embeddings=77, bos_token_id=vocab_size - 2,
            eos_token_id=vocab_size - 1, pad_token_id=vocab_size - 1,
        )
    ).save_pretrained(path / "text_encoder")
    AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=latent_channels, sample_size=sample_size,
        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
        block_out_channels=(width, 2 * width), layers_per_block=1, norm_num_groups=8,
    ).save_pretrained(path / "vae")
    UNet2DConditionModel(
        sample_size=sample_size // 2, in_channels=latent_channels, out_channels=latent_channels,
        block_out_channels=(width, 2 * width), layers_per_block=1, norm_num_groups=8,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=text_dim, attention_head_dim=8,
    ).save_pretrained(path / "unet")
    DDPMScheduler(num_train_timesteps=timesteps, beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012).save_pretrained(
        path / "scheduler"
    )
    write_model_index(path, {"vae": "AutoencoderKL", "unet": "UNet2DConditionModel", "text_encoder": "CLIPTextModel"})
    return path


def build_tiny_pixel(path: str | Path, seed: int = 0, width: int = 32, sample_size: int = 32, timesteps: int = 1000) -> Path:
    """Write a tiny pixel-space diffusion model (unet/ with a UNet2DModel, scheduler/)."""
    from diffusers import DDPMScheduler, UNet2DModel

    path = Path(path)
    torch.manual_seed(seed)
    UNet2DModel(
        sample_size=sample_size, in_channels=3, out_channels=3, block_out_channels=(width, 2 * width),
        layers_per_block=1, norm_num_groups=8, down_block_types=("DownBlock2D",) * 2, up_block_types=("UpBlock2D",) * 2,
    ).save_pretrained(path / "unet")
    DDPMScheduler(num_train_timesteps=timesteps).save_pretrained(path / "scheduler")
    write_model_index(path, {"unet": "UNet2DModel"})
    return path


def write_model_index(path: Path, parts: dict[str, str]) -> None:
    lib = {"text_encoder": "transformers"}
    index = {"_class_name": "RIDTinyTarget", "scheduler": ["diffusers", "DDPMScheduler"]}
    index.update({k: [lib.get(k, "diffusers"), v] for k, v in parts.items()})
    (path / "model_index.json").write_text(json.dumps(index, indent=2))


def fit_unet(path: str | Path, images: torch.Tensor, steps: int = 60, batch: int = 16, lr: float = 1e-3, seed: int = 0) -> Path:
    """Briefly train a saved target's UNet on images (N,3,h,w) in [0,1] with its own denoising loss,
    and save it back: a random UNet has no data manifold to push away from, a fitted one does."""
    from ridtrain.diffusion.sds import denoise_loss
    from ridtrain.diffusion.targets import load_target

    torch.manual_seed(seed)
    target = load_target(path)
    target.unet.requires_grad_(True).train()
    opt = torch.optim.AdamW(target.unet.parameters(), lr=lr)
    for _ in range(steps):
        loss = denoise_loss(target, images[torch.randint(0, len(images), (batch,))])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    target.unet.eval().save_pretrained(Path(path) / "unet")
    return Path(path)
