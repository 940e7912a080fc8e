"""Training configurations: dataclasses read from YAML, overridden by `key=value` arguments."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import yaml


TARGET_DTYPES = ("float32", "float16", "bfloat16")


class YamlConfig:
    """load (YAML + key=value overrides, unknown keys refused), type checks, save."""

    OPTIONAL: ClassVar[dict] = {}  # keys whose default is None, and their type

    @classmethod
    def load(cls, path: str | Path | None = None, overrides: list[str] = ()):
        values = (yaml.safe_load(Path(path).read_text()) or {}) if path else {}
        for item in overrides:
            key, sep, raw = item.partition("=")
            if not sep:
                raise ValueError(f"override {item!r} is not key=value")
            values[key.strip()] = yaml.safe_load(raw)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown config keys {unknown}; valid keys: {sorted(known)}")
        cfg = cls(**values)
        cfg.check_values()
        return cfg

    def check_values(self) -> None:
        """Each value must have its default's type; an int is a fine float, None only for OPTIONAL."""
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in self.OPTIONAL:
                if value is None:
                    continue
                want = self.OPTIONAL[f.name]
            else:
                want = type(f.default_factory() if f.default is dataclasses.MISSING else f.default)
            ok = isinstance(value, (int, float) if want is float else want) and (want is bool or not isinstance(value, bool))
            if not ok:
                raise ValueError(f"config key {f.name!r} must be {want.__name__}, got {value!r}")

    def save(self, path: str | Path) -> None:
        Path(path).write_text(yaml.safe_dump(dataclasses.asdict(self), sort_keys=False))


@dataclass
class TrainConfig(YamlConfig):
    OPTIONAL: ClassVar[dict] = {"pgd_deltas": str, "t_max": int, "init_from": str, "latent_target_seed": int}

    # generator
    arch: str = "rid-s"
    arch_overrides: dict = field(default_factory=dict)  # e.g. {channels: [8, 16, 32]} for tests
    init_from: str | None = None  # a saved generator to start from (its tensors must fit; new ones keep their init)
    eps: int = 8  # 8-bit levels: 8 means 8/255 on the [0,1] scale
    # targets: diffusers checkpoint folders (or hub ids when online)
    targets: list = field(default_factory=list)
    # the scale at which the targets see a crop: a generator working at side 512 against proxies that
    # were trained at 128 trains them on crops resized by 0.25, as rid eval --side 128 shows them photos
    target_scale: float = 1.0
    # latent encoders (ridtrain.diffusion.taef2: "taef2" or a folder): latent_weight * their latent
    # loss joins the targets' Adv-SDS: the negated squared relative shift, or, with
    # latent_target_seed, the pull toward the latent of a fixed texture (taef2.target_texture)
    latent_targets: list = field(default_factory=list)
    latent_weight: float = 1.0
    latent_target_seed: int | None = None
    # l2_weight * mean(delta²) / eps²: keeps tanh out of saturation (a run without it can stall)
    l2_weight: float = 0.0
    # std of the generator head's initial weights (0: zero, delta = 0 at the start). The squared
    # latent shift has no gradient at delta = 0, so a run against latent encoders needs a start off it
    head_init_std: float = 0.0
    target_dtype: str = "float32"  # float16/bfloat16 on GPUs
    t_min: int = 0
    t_max: int | None = None  # None: the whole schedule
    # data
    data: str = ""
    side: int = 512  # images are first brought to the working size (shorter side = side)
    crop: int = 128  # then random crops of crop x crop
    crop_scale: list = field(default_factory=lambda: [0.25, 1.0])  # crop side / shorter side
    flip: bool = True
    color_jitter: float = 0.1  # brightness/contrast/saturation amplitude; 0 disables
    num_workers: int = 0
    cache_images: bool = False  # keep each decoded working image: a small corpus of large photos decodes once
    # regulariser: lambda * ||delta(x) - delta_pgd(x)||² on images with a precomputed delta
    pgd_deltas: str | None = None
    pgd_lambda: float = 0.0
    # robustness augmentation applied to x + delta before the targets
    aug_jpeg_prob: float = 0.5
    aug_jpeg_quality: list = field(default_factory=lambda: [50.0, 95.0])
    aug_resize_prob: float = 0.5
    aug_resize_scale: list = field(default_factory=lambda: [0.5, 1.0])
    # randomised generators (code_dim > 0): the attack on the public model, as augmentation, and
    # diversity * mean cos² between one image's deltas under two codes
    aug_subtract_prob: float = 0.0
    # the one-photo attack on a repeating tile (subtract its own mean period-16 cell), as augmentation
    aug_periodic_mean_prob: float = 0.0
    # the attack that fits the public tiles in each period-16 cell, as augmentation
    aug_tile_fit_prob: float = 0.0
    diversity_weight: float = 0.0
    # optimisation
    steps: int = 1000
    batch: int = 8
    lr: float = 2e-4
    weight_decay: float = 0.0
    warmup: int = 100
    schedule: str = "cosine"  # any diffusers.optimization scheduler name
    grad_clip: float = 1.0
    mixed_precision: str = "no"  # no | fp16 | bf16 (accelerate)
    seed: int = 0
    # output
    output: str = "runs/rid"
    checkpoint_every: int = 500
    keep_checkpoints: int = 3

    def check_values(self) -> None:
        super().check_values()
        if self.target_dtype not in TARGET_DTYPES:
            raise ValueError(f"target_dtype must be one of {TARGET_DTYPES}, got {self.target_dtype!r}")
        for name in ("aug_subtract_prob", "aug_periodic_mean_prob", "aug_tile_fit_prob"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in [0, 1]")
        if self.keep_checkpoints < 1:
            raise ValueError("keep_checkpoints must be at least 1")
