"""The attacker and the judge: `rid attack` (per-photo PGD), `rid eval`, `rid tiny-targets` (small diffusers
models to attack and judge with in tests), `rid personalize`, `rid score`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from rid.cli.base import app, fail, torch_dtype
from ridpixels import OUTPUT_FORMATS
from ridtrain.bundled import DEFAULT_MODEL

# ridtrain.attacker.purify.DOWNLOAD_JPEG, named here without importing torch (test_purify holds the help to PURIFICATIONS)
DOWNLOAD_JPEG = f"jpeg{OUTPUT_FORMATS['jpeg']['quality']}"


@app.command()
def attack(
    images: Path = typer.Argument(..., help="Image file or folder (recursive)."),
    out: Path = typer.Option(..., "-o", "--out", help="Writes OUT/deltas/<name>.safetensors and OUT/images/<name>.png."),
    targets: List[str] = typer.Option(..., "--target", "-t", help="Diffusers checkpoint folder; repeat for an ensemble. "
                                      "With --method encoder: taef2 (the vendored FLUX.2 encoder) or a folder with taef2_encoder.pth."),
    method: str = typer.Option("advdm", "--method", help="advdm, aspl (ASPL-lite) or encoder (PGD on a latent encoder)."),
    eps: int = typer.Option(8, "--eps", help="Bound in 8-bit levels (4, 8, 12, 16)."),
    steps: int = typer.Option(50, "--steps", help="PGD steps (advdm, encoder); per round for aspl."),
    step_size: float = typer.Option(1.0, "--step-size", help="PGD step in 8-bit levels."),
    rounds: int = typer.Option(5, "--rounds", help="aspl: rounds of surrogate fine-tuning + PGD."),
    side: int = typer.Option(512, "--side", help="Working size: shorter side, as in training."),
    shard: str = typer.Option("0/1", "--shard", help="K/N: take every N-th image from the K-th, for parallel runs."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Redo images whose delta exists (default: resume)."),
    seed: int = typer.Option(0, "--seed"),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda, cuda:1, ..."),
    dtype: str = typer.Option("float32", "--dtype", help="Target weights: float32, float16 or bfloat16 (GPUs)."),
):
    """Per-image PGD baselines (AdvDM, ASPL-lite, encoder PGD): protected images plus delta files, resumable."""
    import torch

    from ridtrain.attacker.attacks import ENCODER_METHODS, METHODS, run_attack
    from ridtrain.defender.generators import check_eps
    from ridtrain.diffusion.taef2 import load_encoders
    from ridtrain.diffusion.targets import load_targets

    try:
        check_eps(eps)
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}; choose one of {sorted(METHODS)}")
        kwargs = {"rounds": rounds, "pgd_per_round": steps} if method == "aspl" else {"steps": steps}
        torch.manual_seed(seed)
        if method in ENCODER_METHODS:
            loaded = load_encoders(targets, device)
        else:
            loaded = load_targets(targets, device, torch_dtype(dtype))
        counts = run_attack(images, out, loaded, method, eps, side, shard, overwrite, step_size=step_size / 255, **kwargs)
    except (ValueError, FileNotFoundError, OSError) as err:
        fail(str(err))
    typer.echo(json.dumps(counts))
    raise typer.Exit(1 if counts["failed"] else 0)


@app.command("eval")
def evaluate(
    images: Path = typer.Argument(..., help="Clean images (file or folder)."),
    targets: Optional[List[str]] = typer.Option(None, "--target", "-t", help="Diffusers checkpoint folder; repeat for several."),
    model: Optional[str] = typer.Option(None, "--model", help="Generator to evaluate (bundled name or folder)."),
    protected: Optional[Path] = typer.Option(None, "--protected", help="Or: folder of protected images named like IMAGES."),
    eps: Optional[int] = typer.Option(None, "--eps", help="Bound in 8-bit levels; default the model's (8 for --protected)."),
    side: int = typer.Option(512, "--side", help="Working size the targets see: shorter side."),
    samples: int = typer.Option(4, "--samples", help="Draws of (t, noise) per image and condition."),
    seed: int = typer.Option(0, "--seed"),
    purifications: Optional[List[str]] = typer.Option(
        None, "--purify", help="Also measure after an attacker's purification of clean and protected photos (repeatable): "
        f"jpeg95, {DOWNLOAD_JPEG} (the app's JPEG download), jpeg85, jpeg75, resize0.5, blur1, subtract-public-model, subtract-mean-delta, subtract-periodic-mean, "
        "subtract-tile-fit, subtract-code-search; models an attacker can download: ffdnet (FFDNet, sigma 8), noise+ffdnet "
        "(noise sigma 8, then FFDNet at sigma 12), noisy-upscale (half size, noise sigma 4, waifu2x 2x), from the "
        "'purifiers' extra (ridtrain/attacker/purify.py)."),
    mean_delta_images: Optional[Path] = typer.Option(
        None, "--mean-delta-images", help="subtract-mean-delta: other photos (the first 16, sorted) whose mean delta is subtracted."),
    mean_delta_protected: Optional[Path] = typer.Option(
        None, "--mean-delta-protected", help="With --protected: protected copies of the --mean-delta-images, named like them."),
    attacker_model: Optional[str] = typer.Option(
        None, "--attacker-model", help="subtract-public-model, subtract-tile-fit, subtract-code-search: the public model "
        "the attacker runs or reads (default: --model, else the bundled one)."),
    latents: Optional[List[str]] = typer.Option(
        None, "--latent", help="Also the relative latent shift |E(x')-E(x)|/|E(x)| in this encoder's latent space "
        "(repeatable): taef2 (FLUX.2's, vendored) or a folder with taef2_encoder.pth."),
    latent_side: int = typer.Option(512, "--latent-side", help="The short side photos are encoded at for --latent (the attacker's scale)."),
    json_out: Optional[Path] = typer.Option(None, "--json-out", help="Also write the JSON here."),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda, cuda:1, ... (targets and generator)"),
    dtype: str = typer.Option("float32", "--dtype", help="Target weights: float32, float16 or bfloat16 (GPUs)."),
):
    """Adv-SDS objective and denoising MSE on clean, protected, same-L2 Gaussian and uniform +-eps
    inputs; delta L-inf/L2/PSNR/SSIM; seconds per image. Prints JSON; with --purify, also the
    efficacy kept after each purification, as a table on stderr; with --latent, the latent shift."""
    from ridexport.backends import public_protector
    from ridtrain.attacker.evaluate import evaluate as run_eval
    from ridtrain.attacker.evaluate import kept_table, latent_table, purify_context, resolve_eps
    from ridtrain.defender.generators import check_eps, load_generator
    from ridtrain.diffusion.taef2 import load_encoders
    from ridtrain.diffusion.targets import load_targets

    purifications, targets, latents = purifications or [], targets or [], latents or []
    try:
        if (model is None) == (protected is None):
            raise ValueError("give exactly one of --model or --protected")
        if not targets and not latents:
            raise ValueError("give at least one diffusion target (-t) or latent encoder (--latent)")
        if eps is not None:
            check_eps(eps)
        gen = load_generator(model).to(device) if model else None
        context, notes = purify_context(purifications, images, resolve_eps(gen, eps), side, gen,
                                        attacker_model or model or DEFAULT_MODEL, mean_delta_images, mean_delta_protected,
                                        load_public=public_protector)
        encoders = dict(zip(latents, load_encoders(latents, device)))
        result = run_eval(load_targets(targets, device, torch_dtype(dtype)) if targets else [], images, protected, gen, eps, side,
                          samples, seed, purifications, context, encoders, latent_side)
    except (ValueError, FileNotFoundError, OSError) as err:
        fail(str(err))
    if purifications:
        result["purify_notes"] = notes
        if targets:
            typer.echo(kept_table(result), err=True)
    if latents:
        typer.echo(latent_table(result), err=True)
    text = json.dumps(result, indent=2)
    if json_out:
        json_out.write_text(text + "\n")
    typer.echo(text)


@app.command("tiny-targets")
def tiny_targets(
    out: Path = typer.Argument(..., help="Folder to write the tiny models into."),
    count: int = typer.Option(2, "--count", help="How many latent models (seeds 0..count-1)."),
    pixel: bool = typer.Option(False, "--pixel", help="Also write a pixel-space UNet2DModel target."),
    fit_data: Optional[Path] = typer.Option(None, "--fit-data", help="Fit each UNet briefly to these images."),
    fit_steps: int = typer.Option(200, "--fit-steps", help="Denoising steps for --fit-data."),
):
    """Write tiny diffusers models in the SD folder layout, randomly initialised and optionally with
    briefly fitted UNets (for tests and the placeholder model; no real weights exist here)."""
    import torch

    from ridtrain.data import CropDataset
    from ridtrain.diffusion.tiny import build_tiny_ldm, build_tiny_pixel, fit_unet

    paths = [build_tiny_ldm(out / f"tiny-ldm-{seed}", seed=seed) for seed in range(count)]
    if pixel:
        paths.append(build_tiny_pixel(out / "tiny-pixel-0"))
    for i, path in enumerate(paths):
        if fit_data:
            size = 32 if path.name.startswith("tiny-pixel") else 64
            torch.manual_seed(i)
            crops = CropDataset(fit_data, side=2 * size, crop=size)
            fit_unet(path, torch.stack([crops[k % len(crops)][0] for k in range(8 * len(crops))]), steps=fit_steps, seed=i)
        typer.echo(path)


@app.command()
def personalize(
    photos: Path = typer.Argument(..., help="Folder (or file) of the subject's photos, clean or protected."),
    base: str = typer.Option(..., "--base", help="Diffusers checkpoint folder in the SD layout (e.g. a local stable-diffusion-v1-5)."),
    out: Path = typer.Option(..., "-o", "--out", help="Run folder: weights, checkpoints, samples/, run.json. Rerun to resume."),
    method: str = typer.Option("dreambooth", "--method", help="dreambooth (the whole UNet) or lora (peft adapters)."),
    instance_prompt: str = typer.Option("a photo of sks person", "--instance-prompt"),
    class_prompt: Optional[str] = typer.Option(None, "--class-prompt", help="With --class-data: prior preservation, e.g. 'a photo of person'."),
    class_data: Optional[Path] = typer.Option(None, "--class-data", help="Class images; topped up to --num-class-images from the base model."),
    num_class_images: int = typer.Option(50, "--num-class-images"),
    prior_weight: float = typer.Option(1.0, "--prior-weight"),
    steps: int = typer.Option(800, "--steps"),
    lr: Optional[float] = typer.Option(None, "--lr", help="Default 5e-6 for dreambooth, 1e-4 for lora."),
    batch: int = typer.Option(1, "--batch"),
    resolution: int = typer.Option(512, "--resolution", help="Training and sampling side (a multiple of 8)."),
    lora_rank: int = typer.Option(4, "--lora-rank"),
    seed: int = typer.Option(0, "--seed"),
    mixed_precision: str = typer.Option("no", "--mixed-precision", help="no, fp16 or bf16 (GPUs)."),
    checkpoint_every: int = typer.Option(200, "--checkpoint-every", help="Steps between resumable checkpoints."),
    prompts: Optional[List[str]] = typer.Option(None, "--prompt", help="Sampling prompt, repeatable (default: the instance prompt)."),
    num_samples: int = typer.Option(4, "--num-samples", help="Images per prompt."),
    sample_steps: int = typer.Option(25, "--sample-steps", help="DPM-Solver steps per image."),
    guidance: float = typer.Option(7.5, "--guidance"),
):
    """Fine-tune a diffusion model on a subject's photos (DreamBooth or LoRA) and sample it, as an
    attacker would. Under `accelerate launch -m rid.cli personalize ...` it runs on GPUs."""
    from ridtrain.attacker.personalize import PersonalizeConfig
    from ridtrain.attacker.personalize import personalize as run_personalize

    try:
        cfg = PersonalizeConfig(
            base=base, photos=str(photos), method=method, instance_prompt=instance_prompt, class_prompt=class_prompt,
            class_data=str(class_data) if class_data else None, num_class_images=num_class_images, prior_weight=prior_weight,
            steps=steps, lr=lr if lr is not None else (1e-4 if method == "lora" else 5e-6), batch=batch, resolution=resolution,
            lora_rank=lora_rank, seed=seed, mixed_precision=mixed_precision, checkpoint_every=checkpoint_every,
            prompts=prompts or [instance_prompt], num_samples=num_samples, sample_steps=sample_steps, guidance=guidance)
        cfg.check_values()
        summary = run_personalize(cfg, out)
    except (ValueError, FileNotFoundError, OSError) as err:
        fail(str(err))
    for prompt, folder in summary.get("samples", {}).items():
        typer.echo(f"{folder}: {num_samples} samples of {prompt!r}")


@app.command()
def score(
    samples: Path = typer.Argument(..., help="Folder of generated images (searched recursively)."),
    references: Path = typer.Option(..., "--references", "-r", help="The subject's clean photos."),
    out: Optional[Path] = typer.Option(None, "--json-out", help="Also write the JSON here."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Also draw FDFR, ISM and BRISQUE as a PNG."),
    upsample: int = typer.Option(1, "--upsample", help="Face detector upsampling (2 finds faces down to about 20 px)."),
    name: str = typer.Option("samples", "--name", help="Label of these samples in the plot."),
):
    """Face detection failure rate (FDFR), identity score matching (ISM) against the subject's clean
    photos (dlib), and BRISQUE image quality of a folder of samples. Prints JSON."""
    from ridtrain.attacker.score import ScoreError, plot_scores, score_folder

    try:
        result = score_folder(samples, references, upsample=upsample)
        if plot:
            plot_scores({name: result}, plot)
    except (ScoreError, OSError) as err:
        fail(str(err))
    text = json.dumps(result, indent=2)
    if out:
        out.write_text(text + "\n")
    typer.echo(text)
