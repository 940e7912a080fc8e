"""The defender's side and what it trains on: `rid train`, `rid data`, `rid proxy`."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from rid.cli.base import app, fail


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def train(
    ctx: typer.Context,
    config: Optional[Path] = typer.Option(None, "--config", help="YAML training config (see configs/)."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the newest checkpoint in the output folder."),
):
    """Train a RID generator with Adv-SDS. Extra KEY=VALUE arguments override the config, e.g.
    `rid train --config cfg.yaml steps=100 batch=4`. Under `accelerate launch -m rid.cli train ...`
    it runs data-parallel on many GPUs or nodes."""
    from ridtrain.config import TrainConfig
    from ridtrain.defender.train import train as run_train

    try:
        run_train(TrainConfig.load(config, ctx.args), resume=resume)
    except (ValueError, TypeError, OSError) as err:
        fail(str(err))


data_app = typer.Typer(help="Training data.", no_args_is_help=True)
app.add_typer(data_app, name="data")


@data_app.command("build-corpus")
def build_corpus(out: Path = typer.Argument(Path("corpus"), help="Folder for train/ and heldout/.")):
    """Collect the sample photos that scikit-image, matplotlib and Debian's mate-backgrounds ship into OUT/train and
    OUT/heldout, with OUT/corpus.json naming each one's source and license."""
    from ridtrain.corpus import build_corpus as run_build

    try:
        counts = run_build(out)
    except FileNotFoundError as err:
        fail(str(err))
    typer.echo(f"{out}: {counts['train']} train, {counts['heldout']} held-out images")


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
    from ridtrain.diffusion.proxy import ProxyConfig, train_proxy

    try:
        cfg = ProxyConfig.load(config, ctx.args)
        out = train_proxy(cfg, resume=resume)
    except (ValueError, FileNotFoundError) as err:
        fail(str(err))
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
    from ridtrain.diffusion.proxy import report

    try:
        result = report(proxies, heldout, out, crops)
    except (ValueError, FileNotFoundError) as err:
        fail(str(err))
    for name, row in result["proxies"].items():
        typer.echo(f"{name}: VAE PSNR {row['vae_psnr_db']:.2f} dB, denoise MSE {row['denoise_mse']:.4f} (predicting 0: 1.0)")
    typer.echo(f"samples: {result['grid']}")
