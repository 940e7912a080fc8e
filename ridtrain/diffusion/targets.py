"""Diffusion models that RID attacks ("targets"), loaded from diffusers checkpoint folders.

A latent target has the layout of stable-diffusion-v1-5 (vae/, unet/, text_encoder/, tokenizer/,
scheduler/); a pixel target has unet/ (a UNet2DModel) and scheduler/ only. A hub id works where the
machine is online. Everything is frozen and in eval mode; gradients can still flow to the input.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn

EMPTY_PROMPT = " "  # the paper conditions the UNet on a blank prompt


class DiffusionTarget(nn.Module):
    """One frozen diffusion model with the three operations Adv-SDS and AdvDM need:
    encode (pixels -> latents, differentiable), add_noise and predict_noise."""

    def __init__(self, unet, alphas_cumprod, vae=None, scaling_factor=1.0, context=None, prediction_type="epsilon", name=""):
        super().__init__()
        self.unet, self.vae, self.name = unet, vae, name
        self.scaling_factor = scaling_factor
        self.prediction_type = prediction_type
        self.register_buffer("alphas_cumprod", alphas_cumprod.float())
        self.register_buffer("context", context)  # (1, L, D) text embedding of EMPTY_PROMPT, or None
        self.requires_grad_(False).eval()

    @property
    def num_timesteps(self) -> int:
        return len(self.alphas_cumprod)

    @property
    def dtype(self):
        return next(self.unet.parameters()).dtype

    def encode(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """x in [0,1] -> z (float32). Latent targets sample the VAE posterior, as in training."""
        x = (2 * x - 1).to(self.dtype)
        if self.vae is None:
            return x.float()
        posterior = self.vae.encode(x).latent_dist
        return posterior.sample(generator=generator).float() * self.scaling_factor

    def add_noise(self, z, t, noise):
        a = self.alphas_cumprod[t].view(-1, 1, 1, 1)
        return a.sqrt() * z + (1 - a).sqrt() * noise

    def predict_noise(self, z_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The UNet's noise estimate n̂ (v-prediction models are converted to it)."""
        kwargs = {}
        if self.context is not None:
            kwargs["encoder_hidden_states"] = self.context.expand(len(z_t), -1, -1)
        out = self.unet(z_t.to(self.dtype), t, **kwargs).sample.float()
        if self.prediction_type == "v_prediction":
            a = self.alphas_cumprod[t].view(-1, 1, 1, 1)
            out = a.sqrt() * out + (1 - a).sqrt() * z_t
        elif self.prediction_type != "epsilon":
            raise ValueError(f"{self.name}: unsupported prediction_type {self.prediction_type!r}")
        return out


def quiet_hub_libraries() -> None:
    """Our own bars say what is happening; diffusers' and transformers' per-file bars only add noise."""
    import diffusers
    import transformers

    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()


def load_target(path: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype | None = None) -> DiffusionTarget:
    """Load a diffusers latent (SD layout) or pixel-space checkpoint folder, or a hub id.

    dtype (e.g. torch.float16) is for GPUs; on CPU keep float32."""
    from diffusers import DDPMScheduler

    quiet_hub_libraries()
    src = str(path)
    local = Path(src)
    if not local.exists() and not _looks_like_hub_id(src):
        raise FileNotFoundError(f"{src}: no such checkpoint folder (and not an org/name hub id)")
    if local.exists() and not (local / "unet").is_dir():
        raise FileNotFoundError(f"{src}: not a diffusers checkpoint folder (no unet/ subfolder)")
    scheduler = DDPMScheduler.from_pretrained(src, subfolder="scheduler")
    is_latent = not local.exists() or (local / "vae").is_dir()
    kwargs = {"torch_dtype": dtype} if dtype is not None else {}
    if is_latent:
        target = _load_latent(src, scheduler, kwargs)
    else:
        from diffusers import UNet2DModel

        unet = UNet2DModel.from_pretrained(src, subfolder="unet", **kwargs)
        target = DiffusionTarget(unet, scheduler.alphas_cumprod, prediction_type=scheduler.config.prediction_type, name=local.name or src)
    return target.to(device)


def _looks_like_hub_id(src: str) -> bool:
    """'org/name' is a hub id; '/abs', './rel', '~/x' or 'a/b/c' are local paths."""
    return src.count("/") == 1 and not src.startswith((".", "/", "~"))


def _load_latent(src: str, scheduler, kwargs) -> DiffusionTarget:
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import AutoTokenizer, CLIPTextModel

    vae = AutoencoderKL.from_pretrained(src, subfolder="vae", **kwargs)
    unet = UNet2DConditionModel.from_pretrained(src, subfolder="unet", **kwargs)
    tokenizer = AutoTokenizer.from_pretrained(src, subfolder="tokenizer")
    text_encoder = CLIPTextModel.from_pretrained(src, subfolder="text_encoder")
    ids = tokenizer(EMPTY_PROMPT, padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt").input_ids
    with torch.no_grad():
        context = text_encoder(ids)[0].to(unet.dtype)
    return DiffusionTarget(
        unet, scheduler.alphas_cumprod, vae=vae, scaling_factor=vae.config.scaling_factor, context=context,
        prediction_type=scheduler.config.prediction_type, name=Path(src).name or src,
    )


def load_targets(paths, device="cpu", dtype=None) -> list[DiffusionTarget]:
    return [load_target(p, device=device, dtype=dtype) for p in paths]
