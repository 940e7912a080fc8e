"""The personalization report: fine-tune a model on a subject's photos, clean and protected by each
method, DreamBooth and LoRA, and score what the personalized models generate.

    python bench/personalization_report.py --base ridtrain/weights/proxies/proxy-heldout-vae \\
        -t ridtrain/weights/proxies/proxy-a -t ridtrain/weights/proxies/proxy-b -t ridtrain/weights/proxies/proxy-c \\
        --out docs/personalization --work runs/personalization

1. The subject: --subject-dir (photos of one person), or by default --shots windows of
   matplotlib's grace_hopper.jpg (a photo no proxy was trained on), each holding her face.
2. Each method protects every subject photo at ε = --eps: RID (the bundled model, a fresh secret
   seed per photo, `rid protect`'s path), AdvDM and ASPL-lite (`rid attack` against the -t
   targets at --side), and Gaussian noise with RID's L2 norm (8-bit, clamped to ±ε).
3. `rid personalize` (DreamBooth and LoRA) fine-tunes --base on each set and samples --samples
   images of the instance prompt.
4. `rid score` against the clean subject photos: FDFR, ISM, BRISQUE; beside them, the denoising
   MSE of the personalized UNet on the clean subject photos (higher: it learned the subject worse).
5. Writes OUT/report.json, OUT/report.md (the table), OUT/samples.png (clean photos, then one row
   of the first 4 samples per method and fine-tuning) and OUT/scores.png. Everything under --work is reused on a rerun.

On SD 1.5 with a GPU: --base /path/to/stable-diffusion-v1-5 -t /path/to/stable-diffusion-v1-5
--side 512 --resolution 512 --steps 800 --device cuda --mixed-precision fp16, real photos of a
person in --subject-dir and a generator trained against SD in --model (docs/personalization/README.md).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from ridtrain import pixels
from ridtrain.data import find_images

METHODS = ("clean", "RID", "AdvDM", "ASPL-lite", "Gaussian")
FINETUNES = ("dreambooth", "lora")
GRID_COLUMNS = 4  # samples per row of OUT/samples.png, which is committed: keep it small
FACE_BOX = (0.3, 0.25, 0.7, 0.6)  # (left, top, right, bottom) share of grace_hopper.jpg that holds her face


def default_subject(folder: Path, shots: int, seed: int) -> list[Path]:
    """shots square windows (60-95 % of the shorter side) of grace_hopper.jpg, each holding FACE_BOX."""
    import matplotlib

    rgb = pixels.load_image(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg").rgb
    h, w = rgb.shape[:2]
    left, top, right, bottom = int(FACE_BOX[0] * w), int(FACE_BOX[1] * h), int(FACE_BOX[2] * w), int(FACE_BOX[3] * h)
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for k in range(shots):
        s = int(min(h, w) * rng.uniform(0.6, 0.95))
        y = int(rng.integers(max(0, bottom - s), min(top, h - s) + 1))
        x = int(rng.integers(max(0, right - s), min(left, w - s) + 1))
        paths.append(folder / f"subject-{k}.png")
        if not paths[-1].is_file():
            pixels.save_image(paths[-1], np.ascontiguousarray(rgb[y:y + s, x:x + s]))
    return paths


def protect_sets(clean: Path, work: Path, args) -> dict[str, Path]:
    """method -> folder of the subject photos as that method leaves them (as PNG, subfolders kept)."""
    from ridexport.backends import load_backend
    from ridtrain.attacker.attacks import run_attack
    from ridtrain.defender.protect import protect_array
    from ridtrain.diffusion.targets import load_targets

    sets, eps = {"clean": clean}, args.eps / 255
    photos = find_images(clean)
    rid, gauss = work / "protected" / "RID", work / "protected" / "Gaussian"
    gen = load_backend(args.model, "torch").gen  # one forward pass a photo: the CPU will do
    g = torch.Generator().manual_seed(args.seed)
    for path in photos:
        rel = path.relative_to(clean).with_suffix(".png")
        rgb = pixels.load_image(path).rgb
        if not (rid / rel).is_file() or not (gauss / rel).is_file():
            protected = protect_array(gen, rgb, args.eps)  # a fresh secret seed, as in real use
            (rid / rel).parent.mkdir(parents=True, exist_ok=True)
            pixels.save_image(rid / rel, protected)
            x, delta = pixels.to_float(rgb), pixels.to_float(protected) - pixels.to_float(rgb)
            noise = torch.randn(x.shape, generator=g)
            noise = (noise * delta.norm() / noise.norm()).clamp(-eps, eps)
            (gauss / rel).parent.mkdir(parents=True, exist_ok=True)
            pixels.save_image(gauss / rel, pixels.to_uint8((x + noise).clamp(0, 1)))
    sets["RID"] = rid
    targets = load_targets(args.target, device=args.device)
    for method, kwargs in (("AdvDM", {"steps": args.advdm_steps}), ("ASPL-lite", {"rounds": 5, "pgd_per_round": 10})):
        if method in args.methods:
            out = work / "protected" / method
            counts = run_attack(clean, out, targets, "advdm" if method == "AdvDM" else "aspl", args.eps, args.side, **kwargs)
            print(method, counts, flush=True)
            sets[method] = out / "images"
    sets["Gaussian"] = gauss
    return {m: sets[m] for m in args.methods}


@torch.no_grad()
def denoise_mse_on_subject(cfg, out: Path, clean: torch.Tensor, draws: int = 8) -> float:
    """The personalized UNet's noise-prediction MSE on the clean subject photos, with the instance
    prompt and common random numbers across runs."""
    from ridtrain.attacker.personalize import embed_prompts, personalized_pipeline
    from ridtrain.diffusion.sds import denoise_loss
    from ridtrain.diffusion.targets import DiffusionTarget

    pipe = personalized_pipeline(cfg, out)
    context = embed_prompts(pipe.tokenizer, pipe.text_encoder, [cfg.instance_prompt])
    target = DiffusionTarget(pipe.unet, pipe.scheduler.alphas_cumprod, vae=pipe.vae, scaling_factor=pipe.vae.config.scaling_factor,
                             context=context, prediction_type=pipe.scheduler.config.prediction_type)
    g = torch.Generator().manual_seed(123)
    return float(np.mean([denoise_loss(target, clean, generator=g).item() for _ in range(draws)]))


def table(rows: list[dict], advdm_steps: int) -> str:
    """The report's table; the arrows point the way that means the protection worked."""
    def fmt(v, spec):
        return "n/a" if v is None else format(v, spec)

    clean = {r["finetune"]: r["denoise_mse"] for r in rows if r["method"] == "clean"}
    names = {"AdvDM": f"AdvDM-{advdm_steps}", "dreambooth": "DreamBooth", "lora": "LoRA"}
    lines = ["| method | fine-tuning | FDFR ↑ | ISM ↓ | BRISQUE ↑ | denoise MSE on the clean subject ↑ | vs clean |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        rise = "" if r["method"] == "clean" or r["finetune"] not in clean else f"{r['denoise_mse'] - clean[r['finetune']]:+.4f}"
        lines.append(f"| {names.get(r['method'], r['method'])} | {names[r['finetune']]} | {r['fdfr']:.2f} | "
                     f"{fmt(r['ism'], '.3f')} | {fmt(r['brisque'], '.1f')} | {r['denoise_mse']:.4f} | {rise} |")
    return "\n".join(lines)


RESULT_SETTINGS = ("base", "target", "model", "subject_dir", "shots", "eps", "side", "advdm_steps", "resolution", "steps",
                   "dreambooth_lr", "lora_lr", "samples", "sample_steps", "guidance", "mixed_precision", "seed")


def check_work_folder(work: Path, args) -> None:
    """--work is reused on a rerun, so it must hold a run with the same settings."""
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items() if k in RESULT_SETTINGS}
    stamp = work / "settings.json"
    if stamp.is_file():
        old = json.loads(stamp.read_text())
        changed = sorted(k for k in settings if old.get(k) != settings[k])
        if changed:
            raise SystemExit(f"error: {work} holds a run with other settings ({', '.join(changed)} differ); use another --work")
    work.mkdir(parents=True, exist_ok=True)
    pixels.write_atomic(stamp, (json.dumps(settings, indent=2) + "\n").encode())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", required=True, help="the model the attacker personalizes (SD layout)")
    ap.add_argument("-t", "--target", action="append", default=[], help="models AdvDM and ASPL-lite attack")
    ap.add_argument("--model", default="default", help="the RID generator")
    ap.add_argument("--subject-dir", type=Path, help="photos of one person (default: windows of grace_hopper.jpg)")
    ap.add_argument("--shots", type=int, default=4)
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--finetunes", default=",".join(FINETUNES))
    ap.add_argument("--eps", type=int, default=8)
    ap.add_argument("--side", type=int, default=128, help="working side of AdvDM and ASPL-lite")
    ap.add_argument("--advdm-steps", type=int, default=200)
    ap.add_argument("--resolution", type=int, default=128, help="fine-tuning and sampling side")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--dreambooth-lr", type=float, default=5e-5)
    ap.add_argument("--lora-lr", type=float, default=1e-3)
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--sample-steps", type=int, default=25)
    ap.add_argument("--guidance", type=float, default=3.0)
    ap.add_argument("--upsample", type=int, default=2, help="face detector upsampling (small samples need 2)")
    ap.add_argument("--mixed-precision", default="no", help="fine-tuning: no, fp16 or bf16 (GPUs)")
    ap.add_argument("--device", default="cpu", help="where AdvDM and ASPL-lite run (cuda for SD); fine-tuning picks its own")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("docs/personalization"))
    ap.add_argument("--work", type=Path, default=Path("runs/personalization"))
    args = ap.parse_args()
    args.methods = [m for m in args.methods.split(",") if m]
    unknown = sorted(set(args.methods) - set(METHODS))
    if unknown or ({"AdvDM", "ASPL-lite"} & set(args.methods) and not args.target):
        ap.error(f"unknown methods {unknown}" if unknown else "AdvDM and ASPL-lite need -t targets")

    from ridtrain.attacker.personalize import PersonalizeConfig, personalize, subject_images
    from ridtrain.attacker.score import plot_scores, score_folder
    from ridtrain.diffusion.proxy import image_grid

    started = time.perf_counter()
    check_work_folder(args.work, args)
    clean = args.subject_dir or default_subject(args.work / "subject", args.shots, args.seed)[0].parent
    sets = protect_sets(clean, args.work, args)
    clean_x = subject_images(clean, args.resolution)[0]
    columns = min(args.samples, GRID_COLUMNS)
    rows, scores, grid = [], {}, [clean_x[[i % len(clean_x) for i in range(columns)]]]
    for method, photos in sets.items():
        for finetune in args.finetunes.split(","):
            cfg = PersonalizeConfig(
                base=str(args.base), photos=str(photos), method=finetune, resolution=args.resolution, steps=args.steps,
                lr=args.dreambooth_lr if finetune == "dreambooth" else args.lora_lr, seed=args.seed,
                checkpoint_every=max(args.steps // 2, 1), num_samples=args.samples, sample_steps=args.sample_steps,
                guidance=args.guidance, mixed_precision=args.mixed_precision)
            cfg.check_values()
            out = args.work / "runs" / f"{method}-{finetune}"
            tic = time.perf_counter()
            summary = personalize(cfg, out)
            samples = Path(next(iter(summary["samples"].values())))
            result = score_folder(samples, clean, upsample=args.upsample)
            row = {"method": method, "finetune": finetune, "fdfr": result["fdfr"], "ism": result["ism"],
                   "ism_note": result["ism_note"], "brisque": result["brisque"]["mean"],
                   "denoise_mse": denoise_mse_on_subject(cfg, out, clean_x), "seconds": round(time.perf_counter() - tic, 1),
                   "train_seconds": summary["trained"].get("seconds"),
                   "final_train_loss": summary["trained"]["final_loss"]}
            rows.append(row)
            scores[f"{method} {finetune}"] = result
            grid.append(torch.stack([pixels.to_float(pixels.load_image(p).rgb)[0] for p in find_images(samples)[:columns]]))
            print(json.dumps(row), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    image_grid(grid, args.out / "samples.png", scale=1)
    plot_scores(scores, args.out / "scores.png")
    # seconds: this call's, per row and in all (a rerun reuses --work); train_seconds: the run that trained
    report = {"settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
              "subject_photos": [str(p.name) for p in find_images(clean)], "rows": rows, "scores": scores,
              "grid_rows": ["clean subject photos"] + [f"{r['method']} {r['finetune']}" for r in rows],
              "seconds": round(time.perf_counter() - started, 1)}
    (args.out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "report.md").write_text(table(rows, args.advdm_steps) + "\n")
    print(table(rows, args.advdm_steps))


if __name__ == "__main__":
    main()
