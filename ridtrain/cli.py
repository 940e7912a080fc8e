"""The `rid` command line. Each command is a thin shell over one module."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from ridtrain.bundled import DEFAULT_MODEL, model_card

app = typer.Typer(add_completion=False, no_args_is_help=True, help="RID: real-time identity defender toolkit.")


@app.callback()
def main() -> None:
    """RID: protective perturbations for portraits in one forward pass."""


def _bundled_note() -> str:
    try:
        return model_card(DEFAULT_MODEL).get("summary", "it has no model card.")
    except FileNotFoundError:
        return "missing from this installation."


@app.command(epilog=f"Bundled default model: {_bundled_note()}")
def protect(
    inputs: List[Path] = typer.Argument(..., help="Image files or folders (searched recursively)."),
    out: Path = typer.Option(..., "-o", "--out", help="Output folder; names and subfolders are kept."),
    model: str = typer.Option(DEFAULT_MODEL, "--model", help="Bundled model name or a saved generator folder."),
    eps: Optional[int] = typer.Option(None, "--eps", help="Bound in 8-bit levels (4, 8, 12, 16); default: the model's."),
    fmt: str = typer.Option("png", "--format", help="png or webp (both lossless)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Redo photos whose output already exists."),
    keep_metadata: bool = typer.Option(False, "--keep-metadata", help="Keep EXIF (orientation reset to 1)."),
    backend: str = typer.Option("torch", "--backend", help="torch (the reference) or onnx (the exported file, onnxruntime)."),
    seed: Optional[str] = typer.Option(None, "--seed", help="32 hex digits: the same seed for every photo, to reproduce "
                                       "bytes in tests. Omit it in real use: each photo then gets a fresh secret seed."),
):
    """Protect photos with the PyTorch reference generator, or its ONNX export."""
    from ridtrain.protect import run_protect

    raise typer.Exit(run_protect(inputs, out, model=model, eps=eps, fmt=fmt, overwrite=overwrite, keep_metadata=keep_metadata,
                                 backend=backend, seed=seed))


@app.command(epilog=f"Bundled default model: {_bundled_note()}")
def serve(
    host: str = typer.Option("127.0.0.1", "--host"),
    port: int = typer.Option(8000, "--port"),
    model: str = typer.Option(DEFAULT_MODEL, "--model", help="Bundled model name, saved generator or export folder."),
    workers: int = typer.Option(1, "--workers", help="uvicorn worker processes; each loads the model once."),
    jobs: int = typer.Option(2, "--jobs", help="Photos protected at once per worker."),
    queue: int = typer.Option(8, "--queue", help="Requests that may wait for a job; beyond that, 503."),
    cors_origin: Optional[List[str]] = typer.Option(None, "--cors-origin", help="A site allowed to call the API (the widget's host); repeatable. Closed by default."),
    rate_limit: str = typer.Option("120/minute", "--rate-limit", help="Per client address on /v1/protect."),
    web_dist: Optional[Path] = typer.Option(None, "--web-dist", help="Built web app (default: web/dist)."),
):
    """Serve the web app, the model files and the /v1/protect API (the project's main command)."""
    import os

    import uvicorn

    from ridexport.manifest import ManifestError, load_manifest
    from ridtrain.protect import onnx_folder
    from server_fallback.app import web_dist_problem
    from server_fallback.settings import Settings

    settings = Settings(model=model, jobs=jobs, queue=queue, cors_origins=cors_origin or [], rate_limit=rate_limit)
    if web_dist is not None:
        settings.web_dist = web_dist
    try:
        load_manifest(onnx_folder(model))
    except (ManifestError, OSError, ValueError) as err:
        _fail(f"cannot serve model {model!r}: {err}")
    problem = web_dist_problem(settings.web_dist)
    if problem:
        typer.echo(f"warning: {problem}; serving the API only", err=True)
    os.environ.update(settings.to_env())  # each worker process builds its app from these
    uvicorn.run("server_fallback.app:create_app", factory=True, host=host, port=port, workers=workers)


@app.command("export")
def export_cmd(
    checkpoint: str = typer.Argument(..., help="Saved generator folder or bundled model name."),
    out: Path = typer.Option(..., "-o", "--out", help="Export folder to write."),
    precision: str = typer.Option("auto", "--precision", help="Comma list of fp32, w16, fp16, int8 (fp32 always); "
                                  "auto = fp32, plus w16 when the weights are exactly fp16."),
    opset: int = typer.Option(18, "--opset"),
    photos: Optional[Path] = typer.Option(None, "--photos", help="Real photos for parity (and int8 calibration)."),
    targets: Optional[List[str]] = typer.Option(None, "--target", "-t", help="Diffusers checkpoint for the fp16/int8 efficacy gate; repeatable."),
    eval_images: Optional[Path] = typer.Option(None, "--eval-images", help="Photos for the efficacy gate (default: --photos)."),
    side: int = typer.Option(256, "--side", help="Efficacy gate: the attacker's working size (small keeps it cheap)."),
    samples: int = typer.Option(1, "--samples", help="Efficacy gate: noise draws per image and target."),
):
    """Export a generator to ONNX with a hashed manifest and a parity fixture. Refuses to finish if
    the ONNX output differs from PyTorch beyond the parity rule. fp16/int8 variants are measured
    against model.onnx and ship only if their efficacy on the targets drops by at most 5 %."""
    from ridexport.export import export
    from ridexport.parity import ParityError
    from ridtrain.data import find_images

    try:
        precisions = None if precision == "auto" else tuple(p.strip() for p in precision.split(","))
        manifest = export(checkpoint, out, precisions, opset, find_images(photos) if photos else [],
                          targets or (), eval_images or photos, side, samples)
    except (ValueError, ParityError, OSError) as err:
        _fail(str(err))
    for name, entry in manifest["files"].items():
        typer.echo(f"{out / name}: {entry['bytes']:,} bytes, sha256 {entry['sha256'][:16]}…")
    for name, entry in manifest.get("rejected", {}).items():
        typer.echo(f"{out / name}: not shipped: {entry['reason']}")


@app.command("check")
def check_cmd(
    export_dir: Path = typer.Argument(..., help="Export folder (with manifest.json), e.g. ridtrain/weights/default/onnx."),
    checkpoint: Optional[str] = typer.Option(None, "--checkpoint", help="The saved generator it was exported from: recompute the fixture."),
    only: Optional[str] = typer.Option(None, "--only", help="Comma list of runtimes (default: all): manifest, pytorch, onnxruntime, "
                                       "server, wasm-1-thread, wasm-2-threads, webgpu, widget."),
    web_dist: Optional[Path] = typer.Option(None, "--web-dist", help="The built web app for the browser rows (default: web/dist)."),
    chromium: Optional[str] = typer.Option(None, "--chromium", help="Chromium for the browser rows (default: /usr/bin/chromium)."),
):
    """Hold an export to the parity rule in every runtime; prints a table, one row per runtime,
    and exits 1 naming the runtimes that fail."""
    from ridexport.check import RUNTIMES, print_table, run_check

    runtimes = RUNTIMES if only is None else tuple(r.strip() for r in only.split(","))
    unknown = set(runtimes) - set(RUNTIMES)
    if unknown:
        _fail(f"unknown runtime(s) {sorted(unknown)}; choose among {list(RUNTIMES)}")
    rows = run_check(export_dir, checkpoint, runtimes, web_dist, chromium)
    print_table(rows)
    failed = [r.runtime for r in rows if not r.ok]
    if failed:
        typer.echo(f"error: parity fails in: {', '.join(failed)}", err=True)
        raise typer.Exit(1)


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def train(
    ctx: typer.Context,
    config: Optional[Path] = typer.Option(None, "--config", help="YAML training config (see configs/)."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the newest checkpoint in the output folder."),
):
    """Train a RID generator with Adv-SDS. Extra KEY=VALUE arguments override the config, e.g.
    `rid train --config cfg.yaml steps=100 batch=4`. Under `accelerate launch -m ridtrain.cli train ...`
    it runs data-parallel on many GPUs or nodes."""
    from ridtrain.config import TrainConfig
    from ridtrain.train import train as run_train

    try:
        run_train(TrainConfig.load(config, ctx.args), resume=resume)
    except (ValueError, TypeError, OSError) as err:
        _fail(str(err))


@app.command()
def attack(
    images: Path = typer.Argument(..., help="Image file or folder (recursive)."),
    out: Path = typer.Option(..., "-o", "--out", help="Writes OUT/deltas/<name>.safetensors and OUT/images/<name>.png."),
    targets: List[str] = typer.Option(..., "--target", "-t", help="Diffusers checkpoint folder; repeat for an ensemble."),
    method: str = typer.Option("advdm", "--method", help="advdm or aspl (ASPL-lite)."),
    eps: int = typer.Option(8, "--eps", help="Bound in 8-bit levels (4, 8, 12, 16)."),
    steps: int = typer.Option(50, "--steps", help="PGD steps (advdm); per round for aspl."),
    step_size: float = typer.Option(1.0, "--step-size", help="PGD step in 8-bit levels."),
    rounds: int = typer.Option(5, "--rounds", help="aspl: rounds of surrogate fine-tuning + PGD."),
    side: int = typer.Option(512, "--side", help="Working size: shorter side, as in training."),
    shard: str = typer.Option("0/1", "--shard", help="K/N: take every N-th image from the K-th, for parallel runs."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Redo images whose delta exists (default: resume)."),
    seed: int = typer.Option(0, "--seed"),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda, cuda:1, ..."),
    dtype: str = typer.Option("float32", "--dtype", help="Target weights: float32, float16 or bfloat16 (GPUs)."),
):
    """Per-image PGD baselines (AdvDM, ASPL-lite): protected images plus delta files, resumable."""
    import torch

    from ridtrain.attacks import METHODS, run_attack
    from ridtrain.generators import check_eps
    from ridtrain.targets import load_targets

    try:
        check_eps(eps)
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}; choose one of {sorted(METHODS)}")
        kwargs = {"steps": steps} if method == "advdm" else {"rounds": rounds, "pgd_per_round": steps}
        torch.manual_seed(seed)
        loaded = load_targets(targets, device, _dtype(dtype))
        counts = run_attack(images, out, loaded, method, eps, side, shard, overwrite, step_size=step_size / 255, **kwargs)
    except (ValueError, FileNotFoundError, OSError) as err:
        _fail(str(err))
    typer.echo(json.dumps(counts))
    raise typer.Exit(1 if counts["failed"] else 0)


@app.command("eval")
def evaluate(
    images: Path = typer.Argument(..., help="Clean images (file or folder)."),
    targets: List[str] = typer.Option(..., "--target", "-t", help="Diffusers checkpoint folder; repeat for several."),
    model: Optional[str] = typer.Option(None, "--model", help="Generator to evaluate (bundled name or folder)."),
    protected: Optional[Path] = typer.Option(None, "--protected", help="Or: folder of protected images named like IMAGES."),
    eps: Optional[int] = typer.Option(None, "--eps", help="Bound in 8-bit levels; default the model's (8 for --protected)."),
    side: int = typer.Option(512, "--side", help="Working size the targets see: shorter side."),
    samples: int = typer.Option(4, "--samples", help="Draws of (t, noise) per image and condition."),
    seed: int = typer.Option(0, "--seed"),
    purifications: Optional[List[str]] = typer.Option(
        None, "--purify", help="Also measure after an attacker's purification of clean and protected photos (repeatable): "
        "jpeg95, jpeg85, jpeg75, resize0.5, blur1, subtract-public-model, subtract-mean-delta, subtract-periodic-mean, "
        "subtract-tile-fit, subtract-code-search (ridtrain/purify.py)."),
    mean_delta_images: Optional[Path] = typer.Option(
        None, "--mean-delta-images", help="subtract-mean-delta: other photos (the first 16, sorted) whose mean delta is subtracted."),
    mean_delta_protected: Optional[Path] = typer.Option(
        None, "--mean-delta-protected", help="With --protected: protected copies of the --mean-delta-images, named like them."),
    attacker_model: Optional[str] = typer.Option(
        None, "--attacker-model", help="subtract-public-model, subtract-tile-fit, subtract-code-search: the public model "
        "the attacker runs or reads (default: --model, else the bundled one)."),
    json_out: Optional[Path] = typer.Option(None, "--json-out", help="Also write the JSON here."),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda, cuda:1, ... (targets and generator)"),
    dtype: str = typer.Option("float32", "--dtype", help="Target weights: float32, float16 or bfloat16 (GPUs)."),
):
    """Adv-SDS objective and denoising MSE on clean, protected, same-L2 Gaussian and uniform +-eps
    inputs; delta L-inf/L2/PSNR/SSIM; seconds per image. Prints JSON; with --purify, also the
    efficacy kept after each purification, as a table on stderr."""
    from ridtrain.evaluate import evaluate as run_eval
    from ridtrain.evaluate import kept_table, purify_context, resolve_eps
    from ridtrain.generators import check_eps, load_generator
    from ridtrain.targets import load_targets

    purifications = purifications or []
    try:
        if (model is None) == (protected is None):
            raise ValueError("give exactly one of --model or --protected")
        if eps is not None:
            check_eps(eps)
        gen = load_generator(model).to(device) if model else None
        context, notes = purify_context(purifications, images, resolve_eps(gen, eps), side, gen,
                                        attacker_model or model or DEFAULT_MODEL, mean_delta_images, mean_delta_protected)
        result = run_eval(load_targets(targets, device, _dtype(dtype)), images, protected, gen, eps, side, samples, seed,
                          purifications, context)
    except (ValueError, FileNotFoundError, OSError) as err:
        _fail(str(err))
    if purifications:
        result["purify_notes"] = notes
        typer.echo(kept_table(result), err=True)
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
    from ridtrain.tiny import build_tiny_ldm, build_tiny_pixel, fit_unet

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
    attacker would. Under `accelerate launch -m ridtrain.cli personalize ...` it runs on GPUs."""
    from ridtrain.personalize import PersonalizeConfig
    from ridtrain.personalize import personalize as run_personalize

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
        _fail(str(err))
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
    from ridtrain.score import ScoreError, plot_scores, score_folder

    try:
        result = score_folder(samples, references, upsample=upsample)
        if plot:
            plot_scores({name: result}, plot)
    except (ScoreError, OSError) as err:
        _fail(str(err))
    text = json.dumps(result, indent=2)
    if out:
        out.write_text(text + "\n")
    typer.echo(text)


data_app = typer.Typer(help="Training data.", no_args_is_help=True)
app.add_typer(data_app, name="data")


@data_app.command("build-corpus")
def build_corpus(out: Path = typer.Argument(Path("corpus"), help="Folder for train/ and heldout/.")):
    """Collect the sample photos that scikit-image and matplotlib ship into OUT/train and OUT/heldout."""
    from ridtrain.corpus import build_corpus as run_build

    try:
        counts = run_build(out)
    except FileNotFoundError as err:
        _fail(str(err))
    typer.echo(f"{out}: {counts['train']} train, {counts['heldout']} held-out images")


def _dtype(name: str):
    from ridtrain.train import DTYPES

    if name not in DTYPES:
        raise ValueError(f"unknown dtype {name!r}; choose one of {sorted(DTYPES)}")
    return DTYPES[name]


proxy_app = typer.Typer(help="Proxy diffusion targets trained here (stand-ins for Stable Diffusion).", no_args_is_help=True)
app.add_typer(proxy_app, name="proxy")


@proxy_app.command("train", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def proxy_train(
    ctx: typer.Context,
    config: Optional[Path] = typer.Option(None, "--config", help="YAML proxy config (see configs/proxy-*.yaml)."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the last checkpoint of each stage."),
):
    """Train a small latent diffusion model from scratch on the corpus, in SD's classes and layout.
    Extra KEY=VALUE arguments override the config."""
    from ridtrain.proxy import ProxyConfig, train_proxy

    try:
        cfg = ProxyConfig.load(config, ctx.args)
        out = train_proxy(cfg, resume=resume)
    except (ValueError, FileNotFoundError) as err:
        _fail(str(err))
    typer.echo(f"proxy written to {out}")


@proxy_app.command("report")
def proxy_report(
    proxies: List[Path] = typer.Argument(..., help="Trained proxy folders."),
    heldout: Path = typer.Option(..., "--heldout", help="Held-out photos (never seen in training)."),
    out: Path = typer.Option(..., "-o", "--out", help="Folder for proxies.json and the sample grid."),
    crops: int = typer.Option(64, "--crops", help="Held-out crops per measure."),
):
    """Each proxy's VAE reconstruction PSNR and denoising loss on held-out crops, and a grid of
    samples: a proxy that has not learned is no target."""
    from ridtrain.proxy import report

    try:
        result = report(proxies, heldout, out, crops)
    except (ValueError, FileNotFoundError) as err:
        _fail(str(err))
    for name, row in result["proxies"].items():
        typer.echo(f"{name}: VAE PSNR {row['vae_psnr_db']:.2f} dB, denoise MSE {row['denoise_mse']:.4f} (predicting 0: 1.0)")
    typer.echo(f"samples: {result['grid']}")


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


if __name__ == "__main__":
    app()
