"""A miniature personalization test: does protection show when a proxy is fine-tuned on a subject?

    python bench/mini_personalization.py --model default --proxy ridtrain/weights/proxies/proxy-heldout \\
        --subject runs/corpus/heldout/grace_hopper.jpg --advdm runs/efficacy/AdvDM-200/images/grace_hopper.png \\
        -t ridtrain/weights/proxies/proxy-a -t ridtrain/weights/proxies/proxy-b --out docs/personalization

1. The subject photo (held out) and its protected versions (RID through `rid protect`'s path;
   AdvDM from the efficacy report's run, or computed here against the -t proxies) are brought to
   the attacker's working size; the same --shots crop windows are cut from each.
2. Three copies of --proxy get their UNet fine-tuned, DreamBooth-style, on those crops with the
   prompt "a photo of sks person": on clean, on RID-protected and on AdvDM-protected crops, with the
   same seed, steps and learning rate.
3. Each fine-tuned model is measured on clean crops it never saw (other windows of the subject):
   denoising MSE (common random numbers), and samples for the subject prompt: best SSIM to the
   clean training crops, and a noise measure (mean |Laplacian| of the samples).
4. The sample grids go side by side into personalization.png; numbers into personalization.json.
"""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ridtrain import pixels
from ridtrain.proxy import image_grid
from ridtrain.sds import denoise_loss
from ridtrain.targets import load_target

PROMPT = "a photo of sks person"


def windows(h: int, w: int, n: int, crop_frac: tuple[float, float], seed: int) -> list[tuple[int, int, int]]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        s = int(min(h, w) * (crop_frac[0] + (crop_frac[1] - crop_frac[0]) * torch.rand((), generator=g)))
        out.append((int(torch.randint(0, h - s + 1, (), generator=g)), int(torch.randint(0, w - s + 1, (), generator=g)), s))
    return out


def cut(x: torch.Tensor, wins, size: int) -> torch.Tensor:
    return torch.cat([F.interpolate(x[:, :, r:r + s, c:c + s], size=(size, size), mode="bilinear", antialias=True, align_corners=False)
                      for r, c, s in wins])


def finetune(proxy: Path, crops: torch.Tensor, steps: int, lr: float, seed: int):
    """A copy of the proxy whose UNet is fine-tuned on (crops, PROMPT); returns (target, unet, text parts)."""
    from transformers import CLIPTextModel, CLIPTokenizer

    torch.manual_seed(seed)
    target = load_target(proxy)
    tok = CLIPTokenizer.from_pretrained(proxy / "tokenizer")
    text = CLIPTextModel.from_pretrained(proxy / "text_encoder").eval()
    with torch.no_grad():
        context = text(tok([PROMPT], padding="max_length", max_length=77, return_tensors="pt").input_ids)[0]
    unet = copy.deepcopy(target.unet).train().requires_grad_(True)
    opt = torch.optim.AdamW(unet.parameters(), lr=lr)
    alphas = target.alphas_cumprod
    for _ in range(steps):
        idx = torch.randint(0, len(crops), (min(4, len(crops)),))
        with torch.no_grad():
            z = target.encode(crops[idx])
        t = torch.randint(0, len(alphas), (len(z),))
        noise = torch.randn_like(z)
        a = alphas[t].view(-1, 1, 1, 1)
        pred = unet(a.sqrt() * z + (1 - a).sqrt() * noise, t, encoder_hidden_states=context.expand(len(z), -1, -1)).sample
        loss = (pred - noise).pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    target.unet = unet.eval().requires_grad_(False)
    target.context = context  # measured and sampled with the subject prompt
    return target


@torch.no_grad()
def samples(target, n: int, seed: int, size: int, steps: int = 50) -> torch.Tensor:
    from diffusers import DDIMScheduler

    scheduler = DDIMScheduler(num_train_timesteps=len(target.alphas_cumprod), beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)
    scheduler.set_timesteps(steps)
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, target.unet.config.in_channels, size // 4, size // 4, generator=g)
    for t in scheduler.timesteps:
        eps = target.unet(z, t, encoder_hidden_states=target.context.expand(n, -1, -1)).sample
        z = scheduler.step(eps, t, z).prev_sample
    return ((target.vae.decode(z / target.scaling_factor).sample + 1) / 2).clamp(0, 1)


def best_ssim(images: torch.Tensor, references: torch.Tensor) -> float:
    from kornia.metrics import ssim

    return float(np.mean([max(float(ssim(im[None], ref[None], 7).mean()) for ref in references) for im in images]))


def laplacian_energy(images: torch.Tensor) -> float:
    kernel = torch.tensor([[0, 1, 0], [1, -4, 1], [0, 1, 0]], dtype=torch.float32).view(1, 1, 3, 3).repeat(3, 1, 1, 1)
    return float(F.conv2d(images, kernel, groups=3).abs().mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--proxy", type=Path, required=True, help="the model the attacker fine-tunes")
    ap.add_argument("--subject", type=Path, required=True)
    ap.add_argument("--advdm", type=Path, help="AdvDM-protected subject photo (full size); else computed against -t")
    ap.add_argument("-t", "--target", action="append", default=[], help="proxies AdvDM attacks when --advdm is not given")
    ap.add_argument("--out", type=Path, default=Path("docs/personalization"))
    ap.add_argument("--eps", type=int, default=8)
    ap.add_argument("--side", type=int, default=256)
    ap.add_argument("--crop", type=int, default=64)
    ap.add_argument("--shots", type=int, default=8)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    from ridtrain.attacks import advdm
    from ridtrain.protect import load_backend, protect_array

    rgb = pixels.load_image(args.subject).rgb
    work = lambda a: pixels.working_image(pixels.to_float(a), args.side, 8)  # noqa: E731  the attacker's pre-processing
    versions = {"clean": work(rgb), "RID": work(protect_array(load_backend(args.model, "torch").gen, rgb, args.eps))}
    if args.advdm:
        versions["AdvDM"] = work(pixels.load_image(args.advdm).rgb)
    else:
        x = versions["clean"]
        delta = advdm([load_target(t) for t in args.target], x, args.eps / 255, steps=200)
        versions["AdvDM"] = work(pixels.to_uint8((x + delta).clamp(0, 1)))
    h, w = versions["clean"].shape[-2:]
    train_wins = windows(h, w, args.shots, (0.4, 0.9), args.seed)
    test_wins = windows(h, w, 16, (0.4, 0.9), args.seed + 1)
    clean_train = cut(versions["clean"], train_wins, args.crop)
    clean_test = cut(versions["clean"], test_wins, args.crop)

    report, rows = {"prompt": PROMPT, "shots": args.shots, "steps": args.steps, "lr": args.lr, "eps": args.eps,
                    "proxy": str(args.proxy), "subject": str(args.subject), "models": {}}, []
    for name, x in versions.items():
        model = finetune(args.proxy, cut(x, train_wins, args.crop), args.steps, args.lr, args.seed)
        g = torch.Generator().manual_seed(123)
        mse = float(np.mean([denoise_loss(model, clean_test, generator=g).item() for _ in range(8)]))
        imgs = samples(model, args.samples, args.seed, args.crop)
        report["models"][name] = {"denoise_mse_on_unseen_clean_crops": mse, "best_ssim_to_subject": best_ssim(imgs, clean_train),
                                  "laplacian_energy": laplacian_energy(imgs)}
        rows.append(imgs)
        print(name, json.dumps(report["models"][name]), flush=True)
    report["training_crops_laplacian_energy"] = laplacian_energy(clean_train)
    args.out.mkdir(parents=True, exist_ok=True)
    report["grid"] = str(image_grid([clean_train[: args.samples]] + rows, args.out / "personalization.png"))
    report["grid_rows"] = ["clean training crops"] + [f"samples after fine-tuning on {k} crops" for k in versions]
    (args.out / "personalization.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
