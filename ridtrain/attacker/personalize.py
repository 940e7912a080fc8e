"""Personalization, as an attacker runs it: fine-tune a diffusers latent diffusion model on a few
photos of one subject (DreamBooth on the whole UNet, or LoRA through peft), then sample images of
that subject (`rid personalize`). It is how the paper and Anti-DreamBooth judge a cloak: protected
photos should give a personalized model whose samples no longer show the subject.

    photos --pixel pipeline, shorter side to `resolution`, centre crop--> instance images
    base model (SD layout: vae/ unet/ text_encoder/ tokenizer/ scheduler/)
      --DreamBooth or LoRA, noise-prediction loss (+ prior preservation on class images)-->
    OUT/unet/ (DreamBooth) or OUT/lora/pytorch_lora_weights.safetensors (LoRA)
      --StableDiffusionPipeline, DPM-Solver--> OUT/samples/<NN>-<prompt>/000.png ...

It runs on the CPU for tiny targets and on GPUs for a real checkpoint given by path, under
`accelerate launch -m rid.cli personalize ...` with fp16/bf16 mixed precision (training under
autocast with fp32 trainable weights; sampling and class images wholly in that dtype). A run
resumes: training from the newest checkpoint in OUT/checkpoints/, sampling from the images already
written with the same sampling settings. OUT/config.yaml records the settings; a folder holding a
run with other training settings is refused.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import ClassVar

import torch
import torch.nn.functional as F

from ridtrain.config import YamlConfig

METHODS = ("dreambooth", "lora")
MIXED_PRECISION = ("no", "fp16", "bf16")
CONFIG_FILE, DONE_FILE = "config.yaml", "trained.json"


@dataclass
class PersonalizeConfig(YamlConfig):
    OPTIONAL: ClassVar[dict] = {"class_prompt": str, "class_data": str}

    base: str = ""  # diffusers checkpoint folder in the SD layout
    photos: str = ""  # the subject's photos
    method: str = "dreambooth"
    instance_prompt: str = "a photo of sks person"
    class_prompt: str | None = None  # with class_data: prior preservation, as DreamBooth's paper
    class_data: str | None = None  # class images; topped up to num_class_images from the base model
    num_class_images: int = 50
    prior_weight: float = 1.0
    resolution: int = 512
    steps: int = 800
    lr: float = 5e-6
    batch: int = 1
    lora_rank: int = 4
    seed: int = 0
    mixed_precision: str = "no"
    checkpoint_every: int = 200
    # sampling
    prompts: list = field(default_factory=lambda: ["a photo of sks person"])
    num_samples: int = 4
    sample_steps: int = 25
    guidance: float = 7.5

    def check_values(self) -> None:
        super().check_values()
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        if self.mixed_precision not in MIXED_PRECISION:
            raise ValueError(f"mixed_precision must be one of {MIXED_PRECISION}, got {self.mixed_precision!r}")
        if (self.class_prompt is None) != (self.class_data is None):
            raise ValueError("prior preservation needs both class_prompt and class_data (or neither)")
        if self.resolution % 8:
            raise ValueError(f"resolution must be a multiple of 8, got {self.resolution}")
        for key in ("steps", "batch", "num_samples", "sample_steps", "checkpoint_every", "lora_rank"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be at least 1, got {getattr(self, key)}")
        if not self.prompts or not all(isinstance(p, str) and p.strip() for p in self.prompts):
            raise ValueError("prompts must be a non-empty list of non-empty strings")


# ----------------------------------------------------------------------------- data


def subject_images(folder: str | Path, resolution: int) -> tuple[torch.Tensor, list[str]]:
    """(N,3,r,r) in [0,1]: each photo at the working size for side r, as training and `rid attack`
    see it (its shorter side is r, a multiple of 8), centre-cropped (DreamBooth's transform). A bad
    file is reported and skipped; names of the images used are returned with them."""
    from ridtrain import pixels
    from ridtrain.data import find_images, load_working

    files = find_images(folder)
    images, names = [], []
    for path in files:
        try:
            x = load_working(path, resolution)  # (3, h, w)
        except pixels.ImageError as err:
            print(f"{path}: skipped: {err}", file=sys.stderr)
            continue
        top, left = (x.shape[1] - resolution) // 2, (x.shape[2] - resolution) // 2
        images.append(x[:, top:top + resolution, left:left + resolution])
        names.append(str(path.relative_to(folder) if Path(folder).is_dir() else path.name))
    if not images:
        raise ValueError(f"{folder}: no usable photo ({len(files)} image files found)")
    return torch.stack(images), names


# ----------------------------------------------------------------------------- models


def load_parts(base: str | Path):
    """(tokenizer, text_encoder, vae, unet, noise_scheduler) from a checkpoint folder."""
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import AutoTokenizer, CLIPTextModel

    from ridtrain.diffusion.targets import quiet_hub_libraries

    quiet_hub_libraries()
    base = Path(base)
    missing = [p for p in ("vae", "unet", "text_encoder", "tokenizer", "scheduler") if not (base / p).is_dir()]
    if missing:
        raise FileNotFoundError(f"{base}: not a latent diffusion checkpoint in the SD layout (missing {', '.join(missing)}/)")
    return (AutoTokenizer.from_pretrained(base, subfolder="tokenizer"), CLIPTextModel.from_pretrained(base, subfolder="text_encoder"),
            AutoencoderKL.from_pretrained(base, subfolder="vae"), UNet2DConditionModel.from_pretrained(base, subfolder="unet"),
            DDPMScheduler.from_pretrained(base, subfolder="scheduler"))


@torch.no_grad()
def embed_prompts(tokenizer, text_encoder, prompts: list[str]) -> torch.Tensor:
    ids = tokenizer(prompts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt").input_ids
    return text_encoder(ids.to(text_encoder.device))[0]


def add_lora(unet, rank: int) -> None:
    """LoRA adapters on the attention projections (peft), as diffusers' DreamBooth-LoRA script does;
    only they train."""
    from peft import LoraConfig

    unet.requires_grad_(False)
    unet.add_adapter(LoraConfig(r=rank, lora_alpha=rank, init_lora_weights="gaussian",
                                target_modules=["to_k", "to_q", "to_v", "to_out.0"]))


def pipeline(base: str | Path, unet=None, lora: Path | None = None, dtype=torch.float32, device="cpu"):
    """A StableDiffusionPipeline over the base model's parts (no safety checker), with a
    DPM-Solver scheduler; `unet` replaces the base UNet, `lora` loads adapter weights."""
    import diffusers
    from diffusers import DPMSolverMultistepScheduler, StableDiffusionPipeline

    tokenizer, text_encoder, vae, base_unet, noise_scheduler = load_parts(base)
    # the values that the pipeline would force, with a warning, on an older scheduler config
    scheduler_config = {**noise_scheduler.config, "steps_offset": 1, "clip_sample": False}
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet or base_unet,
                                   scheduler=DPMSolverMultistepScheduler.from_config(scheduler_config),
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    if lora is not None:
        verbosity = diffusers.utils.logging.get_verbosity()
        diffusers.utils.logging.set_verbosity_error()  # it warns that our UNet-only LoRA has no text-encoder keys
        try:
            pipe.load_lora_weights(lora)
        finally:
            diffusers.utils.logging.set_verbosity(verbosity)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device) if dtype == torch.float32 else pipe.to(device, dtype)


def generate(pipe, prompt: str, folder: Path, count: int, seed: int, cfg: PersonalizeConfig, desc: str) -> list[Path]:
    """count images of prompt into folder/000.png...; one generator seed per image, so a resumed
    run writes the images it would have written. Images made with other sampling settings
    (folder/sampling.json), or beyond count, are removed first; the others are kept."""
    from tqdm import tqdm

    from ridtrain import pixels

    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{i:03d}.png" for i in range(count)]
    settings = {"prompt": prompt, "seed": seed, "resolution": cfg.resolution, "sample_steps": cfg.sample_steps,
                "guidance": cfg.guidance, "mixed_precision": cfg.mixed_precision}
    record = folder / "sampling.json"
    stale = not record.is_file() or json.loads(record.read_text()) != settings
    for old in folder.glob("*.png"):
        if stale or old not in paths:
            old.unlink()
    write_json(record, settings)
    for i, path in enumerate(tqdm(paths, desc=desc, leave=False)):
        if path.is_file():
            continue
        g = torch.Generator(pipe.device).manual_seed(seed + i)
        image = pipe(prompt, height=cfg.resolution, width=cfg.resolution, num_inference_steps=cfg.sample_steps,
                     guidance_scale=cfg.guidance, generator=g, output_type="pt").images
        pixels.save_image(path, pixels.to_uint8(image.float().cpu()))
    return paths


def prompt_folder(index: int, prompt: str) -> str:
    """samples/<index>-<slug>: the index keeps prompts apart whose slugs are the same."""
    return f"{index:02d}-" + (re.sub(r"[^a-z0-9]+", "-", prompt.lower()).strip("-")[:80] or "prompt")


def write_json(path: Path, value) -> None:
    from ridtrain.pixels import write_atomic

    write_atomic(path, (json.dumps(value, indent=2) + "\n").encode())


def weight_dtype(cfg: PersonalizeConfig) -> torch.dtype:
    """The dtype of the frozen parts in training, and of the whole pipeline in sampling."""
    return {"fp16": torch.float16, "bf16": torch.bfloat16}.get(cfg.mixed_precision, torch.float32)


# ----------------------------------------------------------------------------- the run


def check_run_folder(out: Path, cfg: PersonalizeConfig) -> None:
    """A folder holds one run: refuse one whose recorded settings differ (but for sampling's)."""
    saved = out / CONFIG_FILE
    if not saved.is_file():
        if out.is_dir() and any(out.iterdir()):
            raise ValueError(f"{out}: not empty and holds no {CONFIG_FILE}; choose an empty or new folder")
        return
    old = PersonalizeConfig.load(saved)
    sampling = {"prompts", "num_samples", "sample_steps", "guidance"}  # generate() redoes stale samples
    changed = sorted(k for k, v in asdict(cfg).items() if k not in sampling and asdict(old)[k] != v)
    if changed:
        raise ValueError(f"{out} holds a run with other settings ({', '.join(changed)} differ); use a new folder")


def personalize(cfg: PersonalizeConfig, out: str | Path) -> dict:
    """Train (or resume) and sample; returns the run summary also written to OUT/run.json."""
    import yaml
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    from ridtrain.pixels import write_atomic

    out = Path(out)
    accelerator = Accelerator(mixed_precision=cfg.mixed_precision, cpu=not torch.cuda.is_available())
    check_run_folder(out, cfg)
    images, names = subject_images(cfg.photos, cfg.resolution)
    accelerator.wait_for_everyone()  # every process has read the folder's config before it is rewritten
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        write_atomic(out / CONFIG_FILE, yaml.safe_dump(asdict(cfg), sort_keys=False).encode())
    set_seed(cfg.seed)
    started = time.perf_counter()
    trained = json.loads((out / DONE_FILE).read_text()) if (out / DONE_FILE).is_file() else None
    if trained is None:
        trained = train(cfg, out, images, accelerator)
    summary = {"method": cfg.method, "base": cfg.base, "photos": names, "trained": trained}
    accelerator.free_memory()
    if accelerator.is_main_process:
        summary["samples"] = sample(cfg, out, accelerator.device)
        summary["seconds_this_call"] = round(time.perf_counter() - started, 1)
        write_json(out / "run.json", summary)
    accelerator.wait_for_everyone()
    return summary


def train(cfg: PersonalizeConfig, out: Path, images: torch.Tensor, accelerator) -> dict:
    from tqdm import tqdm

    tokenizer, text_encoder, vae, unet, noise_scheduler = load_parts(cfg.base)
    frozen_dtype = weight_dtype(cfg)
    for frozen in (vae, text_encoder):
        frozen.requires_grad_(False).eval().to(accelerator.device)
        if frozen_dtype != torch.float32:
            frozen.to(frozen_dtype)
    prompts = [cfg.instance_prompt] + ([cfg.class_prompt] if cfg.class_prompt else [])
    contexts = embed_prompts(tokenizer, text_encoder, prompts).float()
    class_images = class_set(cfg, accelerator) if cfg.class_prompt else None
    if cfg.method == "lora":
        add_lora(unet, cfg.lora_rank)
    unet.train()
    params = [p for p in unet.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=1e-2 if cfg.method == "dreambooth" else 0.0)
    unet, opt = accelerator.prepare(unet, opt)
    start = resume(out, accelerator)
    alphas = noise_scheduler.alphas_cumprod.to(accelerator.device)
    started = time.perf_counter()
    bar = tqdm(range(start, cfg.steps), initial=start, total=cfg.steps, desc=f"{cfg.method} {out.name}",
               disable=not accelerator.is_main_process)
    loss = torch.zeros(())
    for step in bar:
        g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step * 97 + accelerator.process_index)
        x = images[torch.randint(0, len(images), (cfg.batch,), generator=g)]
        context = contexts[:1].expand(cfg.batch, -1, -1)
        if class_images is not None:
            x = torch.cat([x, class_images[torch.randint(0, len(class_images), (cfg.batch,), generator=g)]])
            context = torch.cat([context, contexts[1:].expand(cfg.batch, -1, -1)])
        with accelerator.autocast():
            loss = denoising_loss(unet, vae, noise_scheduler, alphas, x.to(accelerator.device), context, g, cfg)
        accelerator.backward(loss)
        opt.step()
        opt.zero_grad(set_to_none=True)
        bar.set_postfix(loss=f"{loss.item():.4f}")
        if (step + 1) % cfg.checkpoint_every == 0 and step + 1 < cfg.steps:
            save_checkpoint(out, step + 1, accelerator)
    trained = {"steps": cfg.steps, "resumed_from_step": start, "final_loss": round(float(loss.item()), 6),
               "seconds": round(time.perf_counter() - started, 1)}
    if accelerator.is_main_process:
        save_weights(cfg, out, accelerator.unwrap_model(unet))
        write_json(out / DONE_FILE, trained)
        shutil.rmtree(out / "checkpoints", ignore_errors=True)
    accelerator.wait_for_everyone()
    return trained


def denoising_loss(unet, vae, noise_scheduler, alphas, x, context, g, cfg) -> torch.Tensor:
    """The base model's own training loss on x (N,3,r,r); the second half of a prior-preservation
    batch is the class images, weighted by prior_weight."""
    with torch.no_grad():
        z = vae.encode((2 * x - 1).to(vae.dtype)).latent_dist.sample(generator=g).float() * vae.config.scaling_factor
    noise = torch.randn(z.shape, generator=g).to(z.device)
    t = torch.randint(0, len(alphas), (len(z),), generator=g).to(z.device)
    a = alphas[t].view(-1, 1, 1, 1)
    z_t = a.sqrt() * z + (1 - a).sqrt() * noise
    kind = noise_scheduler.config.prediction_type
    if kind not in ("epsilon", "v_prediction"):
        raise ValueError(f"{cfg.base}: unsupported prediction_type {kind!r} (epsilon or v_prediction)")
    target = noise if kind == "epsilon" else a.sqrt() * noise - (1 - a).sqrt() * z
    pred = unet(z_t, t, encoder_hidden_states=context).sample.float()
    if cfg.class_prompt is None:
        return F.mse_loss(pred, target)
    (p_inst, p_prior), (t_inst, t_prior) = pred.chunk(2), target.chunk(2)
    return F.mse_loss(p_inst, t_inst) + cfg.prior_weight * F.mse_loss(p_prior, t_prior)


def class_set(cfg: PersonalizeConfig, accelerator) -> torch.Tensor:
    """The class images for prior preservation: class_data, topped up to num_class_images with
    samples of class_prompt from the base model (written there, so a rerun reuses them)."""
    from ridtrain.data import find_images

    folder = Path(cfg.class_data)
    generated = folder / "generated"
    own = sum(1 for p in find_images(folder) if generated not in p.parents) if folder.is_dir() else 0
    if own < cfg.num_class_images and accelerator.is_main_process:
        pipe = pipeline(cfg.base, dtype=weight_dtype(cfg), device=accelerator.device)
        generate(pipe, cfg.class_prompt, generated, cfg.num_class_images - own, cfg.seed + 10_000, cfg, "class images")
        del pipe
    accelerator.wait_for_everyone()
    return subject_images(folder, cfg.resolution)[0]


def save_checkpoint(out: Path, step: int, accelerator) -> None:
    """accelerate's full state (weights, optimiser, RNG) into checkpoints/step-K, written under a
    temporary name and renamed; older checkpoints are removed."""
    root = out / "checkpoints"
    tmp, final = root / f".step-{step}.tmp", root / f"step-{step}"
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()  # each process writes its own RNG state into tmp
    if accelerator.is_main_process:
        (tmp / "step.json").write_text(json.dumps({"step": step}))
        tmp.rename(final)
        for old in root.glob("step-*"):
            if old != final:
                shutil.rmtree(old)
    accelerator.wait_for_everyone()


def resume(out: Path, accelerator) -> int:
    """Load the newest checkpoint; returns the step to start from (0 when there is none)."""
    done = sorted((p for p in (out / "checkpoints").glob("step-*") if (p / "step.json").is_file()),
                  key=lambda p: int(p.name.split("-")[1]))
    if not done:
        return 0
    accelerator.load_state(str(done[-1]))
    step = json.loads((done[-1] / "step.json").read_text())["step"]
    print(f"resumed from {done[-1]} (step {step})", file=sys.stderr)
    return step


def save_weights(cfg: PersonalizeConfig, out: Path, unet) -> None:
    """DreamBooth: the whole UNet as OUT/unet/; LoRA: the adapter in diffusers' format as OUT/lora/.
    Written under a temporary name, then renamed."""
    tmp = out / f".{cfg.method}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    if cfg.method == "dreambooth":
        unet.save_pretrained(tmp)
        final = out / "unet"
    else:
        from diffusers import StableDiffusionPipeline
        from diffusers.utils import convert_state_dict_to_diffusers
        from peft.utils import get_peft_model_state_dict

        layers = convert_state_dict_to_diffusers(get_peft_model_state_dict(unet))
        StableDiffusionPipeline.save_lora_weights(tmp, unet_lora_layers=layers)
        final = out / "lora"
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)


def personalized_pipeline(cfg: PersonalizeConfig, out: Path, device="cpu"):
    """The pipeline of a finished run: the base model with the fine-tuned UNet or the LoRA."""
    from diffusers import UNet2DConditionModel

    if cfg.method == "dreambooth":
        return pipeline(cfg.base, unet=UNet2DConditionModel.from_pretrained(out / "unet"), dtype=weight_dtype(cfg), device=device)
    return pipeline(cfg.base, lora=out / "lora", dtype=weight_dtype(cfg), device=device)


def sample(cfg: PersonalizeConfig, out: Path, device="cpu") -> dict[str, str]:
    """num_samples images per prompt into OUT/samples/<NN>-<prompt>/; returns prompt -> folder."""
    pipe = personalized_pipeline(cfg, out, device)
    folders = {}
    for k, prompt in enumerate(cfg.prompts):
        folder = out / "samples" / prompt_folder(k, prompt)
        generate(pipe, prompt, folder, cfg.num_samples, cfg.seed + 1000 * k, cfg, f"samples: {prompt}")
        folders[prompt] = str(folder)
    write_json(out / "samples" / "prompts.json", folders)
    return folders
