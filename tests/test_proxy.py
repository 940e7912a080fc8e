"""`rid proxy train` / `rid proxy report`: proxy LDMs trained from scratch in SD's layout."""

import json

import pytest
import torch
from typer.testing import CliRunner

from rid.cli import app
from ridtrain.diffusion.proxy import ProxyConfig, train_proxy

TINY = dict(width=8, crop=32, side=64, batch=4, vae_steps=60, unet_steps=60, checkpoint_every=30)


@pytest.fixture(scope="module")
def proxy(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("proxy") / "p"
    return train_proxy(ProxyConfig(output=str(out), data=str(corpus / "train"), **TINY))


def test_a_proxy_loads_as_a_stable_diffusion_target(proxy):
    from ridtrain.diffusion.sds import denoise_loss
    from ridtrain.diffusion.targets import load_target

    assert {p.name for p in proxy.iterdir()} >= {"vae", "unet", "text_encoder", "tokenizer", "scheduler", "model_index.json"}
    target = load_target(proxy)
    assert target.scaling_factor != 1.0  # set from the latents' std, as SD's was
    loss = denoise_loss(target, torch.rand(2, 3, 32, 32))
    assert torch.isfinite(loss) and loss > 0
    rows = [json.loads(line) for line in (proxy / "metrics.jsonl").read_text().splitlines()]
    assert {r["stage"] for r in rows} == {"vae", "unet"}


@torch.no_grad()
def test_training_learns(proxy):
    """Against the same architecture untrained, on fixed crops and noise: the VAE reconstructs
    better and the UNet predicts the noise better."""
    from ridtrain.diffusion.proxy import build_proxy_models
    from ridtrain.diffusion.sds import denoise_loss
    from ridtrain.diffusion.targets import load_target

    trained = load_target(proxy)
    from transformers import CLIPTokenizer

    vocab = len(CLIPTokenizer.from_pretrained(proxy / "tokenizer"))
    vae0, unet0, _, _ = build_proxy_models(ProxyConfig(**{**TINY, "seed": 0}), vocab_size=vocab)  # its own starting point
    x = torch.rand(8, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 0.5 + 0.25
    recon = lambda vae: (vae.decode(vae.encode(x * 2 - 1).latent_dist.mode()).sample - (x * 2 - 1)).pow(2).mean()  # noqa: E731
    assert recon(trained.vae) < recon(vae0)
    loss = lambda target: denoise_loss(target, x, generator=torch.Generator().manual_seed(1))  # noqa: E731
    untrained = load_target(proxy)
    untrained.unet = unet0.eval()
    assert loss(trained) < loss(untrained)


def test_a_shared_vae_is_reused_frozen(proxy, corpus, tmp_path):
    from safetensors.torch import load_file

    out = train_proxy(ProxyConfig(output=str(tmp_path / "b"), data=str(corpus / "train"), vae=str(proxy), seed=1, **TINY))
    a, b = load_file(proxy / "vae" / "diffusion_pytorch_model.safetensors"), load_file(out / "vae" / "diffusion_pytorch_model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not any(r["stage"] == "vae" for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()))


def test_resume_continues_and_a_used_folder_is_refused(corpus, tmp_path):
    cfg = ProxyConfig(output=str(tmp_path / "p"), data=str(corpus / "train"), **TINY)
    train_proxy(cfg)
    with pytest.raises(ValueError, match="earlier run"):
        train_proxy(cfg)
    longer = ProxyConfig(output=str(tmp_path / "p"), data=str(corpus / "train"), **{**TINY, "unet_steps": 75})
    train_proxy(longer, resume=True)
    unet_steps = [json.loads(line)["step"] for line in (tmp_path / "p" / "metrics.jsonl").read_text().splitlines()
                  if json.loads(line)["stage"] == "unet"]
    assert unet_steps == [25, 50, 60, 75]  # the second run started at the checkpoint (60), not at 0


def test_cli_train_and_report(proxy, corpus, tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["proxy", "report", str(proxy), "--heldout", str(corpus / "heldout"), "-o", str(tmp_path), "--crops", "4"])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "proxies.json").read_text())
    row = report["proxies"]["p"]
    assert 0 < row["vae_psnr_db"] < 60 and 0 < row["denoise_mse"]
    assert (tmp_path / "proxy-samples.png").stat().st_size > 0 and (tmp_path / "vae-reconstructions.png").is_file()
    bad = runner.invoke(app, ["proxy", "train", "--config", "/nonexistent.yaml"])
    assert bad.exit_code != 0
    unknown = runner.invoke(app, ["proxy", "train", "widht=8"])
    assert unknown.exit_code == 2 and "unknown config keys" in unknown.output


@pytest.mark.parametrize("name", ["proxy-a", "proxy-b", "proxy-heldout"])
def test_the_bundled_proxies_have_learned(name, corpus):
    """The shipped proxies load as SD targets and are real targets: on held-out crops their VAE
    reconstructs (PSNR) and their UNet predicts the noise far better than predicting zero (MSE 1)."""
    from ridtrain.bundled import WEIGHTS_DIR
    from ridtrain.diffusion.proxy import heldout_crops
    from ridtrain.diffusion.sds import denoise_loss
    from ridtrain.diffusion.targets import load_target

    target = load_target(WEIGHTS_DIR / "proxies" / name)
    x = heldout_crops(corpus / "heldout", 16)
    with torch.no_grad():
        recon = ((target.vae.decode(target.vae.encode(x * 2 - 1).latent_dist.mode()).sample + 1) / 2).clamp(0, 1)
        psnr = float(10 * torch.log10(1 / (recon - x).pow(2).mean()))
        mse = float(denoise_loss(target, x, generator=torch.Generator().manual_seed(0)))
    assert psnr > 18 and mse < 0.5, (psnr, mse)


def test_the_held_out_proxy_differs_in_seed_and_size():
    import yaml

    from ridtrain.bundled import WEIGHTS_DIR

    cfg = {n: yaml.safe_load((WEIGHTS_DIR / "proxies" / n / "proxy_config.yaml").read_text()) for n in ("proxy-a", "proxy-b", "proxy-heldout")}
    held, a = cfg["proxy-heldout"], cfg["proxy-a"]
    assert held["seed"] not in (a["seed"], cfg["proxy-b"]["seed"])
    assert (held["width"], held["unet_layers"]) != (a["width"], a["unet_layers"])
