"""RID generators: x in [0,1] -> delta = eps * tanh(g(x)), |delta| <= eps.

Two families share one contract (`forward(x, eps=None, code=None) -> delta`):
- `CompactGenerator` (rid-s, rid-m): fully convolutional, works at 1/4 resolution after a
  pixel-unshuffle so that it is cheap enough for a browser. Uses only Conv, Resize, Add/Mul,
  Sigmoid/Tanh and space-to-depth/depth-to-space, which onnxruntime-web runs on WebGPU and WASM.
  With `code_dim`, it is randomised: a per-photo random code (ridtrain/defender/seeds.py) modulates its
  features and draws its tile, so that delta depends on the photo AND on a secret draw.
- `DiTGenerator` (rid-dit): the paper's pixel-space DiT (patch 16, hidden 1152, depth 14).

Both are diffusers `ModelMixin`s, so `save_pretrained`/`from_pretrained` write and read
config.json + safetensors; `load_generator` picks the class from config.json.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config

from ridtrain.bundled import DEFAULT_MODEL, resolve_model_path
from ridtrain.defender.mask import TextureMask
from ridtrain.pixels import MAX_LONG

ALLOWED_EPS = (4, 8, 12, 16)  # 8-bit levels: eps=8 means 8/255 on the [0,1] scale


def check_eps(eps: int) -> int:
    if eps not in ALLOWED_EPS:
        raise ValueError(f"eps must be one of {ALLOWED_EPS} (8-bit levels), got {eps!r}")
    return eps


class _Generator(ModelMixin, ConfigMixin):
    """Shared output rule: delta = eps * tanh(raw). Config `working_side` is the shorter side of
    the working size the generator runs at: the attacker's (512 for SD; the size its targets
    were trained at for proxies), so that its delta reaches the target at the scale it learnt."""

    stride: int = 1

    @property
    def code_dim(self) -> int:
        """Length of the random code input; 0 for a deterministic generator."""
        return self.config.get("code_dim", 0)

    @property
    def working_size_rule(self) -> dict:
        """pixels.working_size's arguments for this generator; the manifest's pipeline.working_size."""
        return {"side": self.config.working_side, "multiple": self.stride, "max_long": MAX_LONG}

    def raw(self, x: torch.Tensor, code: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError

    def random_code(self, n: int, device=None) -> torch.Tensor:
        """Fresh codes (n, code_dim), uniform in (-1, 1) as seeds.seed_code's are: what a
        protection without a given seed gets, and what training draws."""
        return 2 * torch.rand(n, self.code_dim, device=device) - 1

    def forward(self, x: torch.Tensor, eps: float | None = None, code: torch.Tensor | None = None) -> torch.Tensor:
        """x: (N,3,H,W) in [0,1], H and W multiples of `self.stride`. eps on the [0,1] scale;
        defaults to the trained eps. code: (N, code_dim) or (1, code_dim), for a randomised
        generator; None draws a fresh one per image. Returns delta with |delta| <= eps."""
        if x.shape[-2] % self.stride or x.shape[-1] % self.stride:
            raise ValueError(f"H and W must be multiples of {self.stride}, got {tuple(x.shape[-2:])}")
        eps = self.config.eps / 255.0 if eps is None else eps
        if self.code_dim:
            code = self.random_code(len(x), x.device) if code is None else code.to(x.device, x.dtype).expand(x.shape[0], -1)
        delta = eps * torch.tanh(self.raw(x, code))
        return delta * self.mask(x) if getattr(self, "mask", None) is not None else delta

    def protect(self, x: torch.Tensor, eps: float | None = None, code: torch.Tensor | None = None) -> torch.Tensor:
        return (x + self(x, eps, code)).clamp(0.0, 1.0)


# ----------------------------------------------------------------------------- compact family


class ResBlock(nn.Module):
    """conv-SiLU-conv with identity skip; no normalisation (as in EDSR), which keeps the exported
    graph to Conv/Mul/Sigmoid/Add."""

    def __init__(self, ch: int):
        super().__init__()
        self.conv1 = nn.Conv2d(ch, ch, 3, padding=1)
        self.conv2 = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x):
        return x + self.conv2(F.silu(self.conv1(x)))


PATTERN_GAIN = 100.0  # with lr 1e-4, Adam moves the tile ~0.01 a step: to saturation in a few hundred steps


class CompactGenerator(_Generator):
    """A small UNet in pixel-unshuffled space.

    512² input -> unshuffle(r) -> (3r², 512/r, 512/r) -> stem -> down x levels -> up with additive
    skips -> 1x1 head -> shuffle(r), plus (if `pattern`) a learned tile repeated every `pattern`
    pixels. Full-resolution detail lives in the channels; the stride is r * 2**(levels-1).
    """

    @register_to_config
    def __init__(
        self,
        eps: int = 8,
        working_side: int = 512,
        unshuffle: int = 4,
        channels: tuple[int, ...] = (32, 64, 128),
        blocks: tuple[int, ...] = (0, 2, 2),
        up_blocks: tuple[int, ...] = (0, 1),
        pattern: int = 0,
        code_dim: int = 0,
        code_hidden: int = 8,
        code_tiles: int = 4,
        tile_field: bool = False,
        wave_field: int = 0,
        texture_mask: dict | None = None,
    ):
        super().__init__()
        check_eps(eps)
        if not (len(channels) == len(blocks) == len(up_blocks) + 1):
            raise ValueError("need len(channels) == len(blocks) == len(up_blocks) + 1")
        self.stride = unshuffle * 2 ** (len(channels) - 1)
        self.to_space = nn.PixelUnshuffle(unshuffle)
        self.from_space = nn.PixelShuffle(unshuffle)
        c_in = 3 * unshuffle**2
        self.stem = nn.Conv2d(c_in, channels[0], 3, padding=1)
        self.downs = nn.ModuleList(
            [nn.Conv2d(a, b, 3, stride=2, padding=1) for a, b in zip(channels[:-1], channels[1:])]
        )
        self.enc = nn.ModuleList([nn.Sequential(*[ResBlock(c) for _ in range(n)]) for c, n in zip(channels, blocks)])
        self.ups = nn.ModuleList([nn.Conv2d(b, a, 1) for a, b in zip(channels[:-1], channels[1:])])
        self.dec = nn.ModuleList(
            [nn.Sequential(*[ResBlock(c) for _ in range(n)]) for c, n in zip(channels[:-1], up_blocks)]
        )
        self.head = nn.Conv2d(channels[0], c_in, 1)
        nn.init.zeros_(self.head.weight)  # delta = 0 at initialisation
        nn.init.zeros_(self.head.bias)
        # A learned image-independent tile of period `pattern`, added before the tanh, as the
        # DiT's patch-16 output bias is. The head's own bias repeats every `unshuffle` pixels
        # only, and against the proxies a universal period-16 tile carries about half of what
        # AdvDM does on unseen photos (docs/efficacy/rid-s-proxy/README.md); the net learns corrections to it.
        if pattern:
            if self.stride % pattern:
                raise ValueError(f"pattern period {pattern} must divide the stride {self.stride}")
            self.tile = nn.Parameter(torch.zeros(1, 3 * pattern**2, 1, 1))
        # The random code: an embedding whose FiLM (scale, shift) modulates the bottleneck and the
        # last decoder features, and (with a tile) a random mix of `code_tiles` learned tiles
        # added to the fixed one. Small on purpose: the browser's file must stay under 2 MB. The
        # FiLM layers start at zero (the net starts deterministic); the tile bank starts small
        # but not zero, or its expected gradient over random codes would keep it there.
        if code_dim:
            film = 2 * (channels[-1] + channels[0])
            self.code_embed = nn.Sequential(nn.Linear(code_dim, code_hidden), nn.SiLU(), nn.Linear(code_hidden, film))
            nn.init.zeros_(self.code_embed[2].weight)
            nn.init.zeros_(self.code_embed[2].bias)
            if pattern:
                self.code_mix = nn.Linear(code_dim, code_tiles, bias=False)
                self.code_tile_bank = nn.Parameter(torch.randn(code_tiles, 3 * pattern**2) * 1e-4)
        # With `tile_field`, the tiles no longer repeat: the code also draws, for the fixed tile and
        # each bank tile, a plane wave over the grid of cells, cos(pi * (a*i + b*j + c)), which
        # scales that tile cell by cell. A same-everywhere tile is what one photo's own periodic
        # mean (or the mean delta of other photos) estimates and removes; a wave with a secret
        # frequency and phase averages out of both.
        if tile_field:
            if not (pattern and code_dim):
                raise ValueError("tile_field needs a tile (pattern) and a code (code_dim)")
            if code_dim < 3 * (code_tiles + 1):
                raise ValueError(f"tile_field needs code_dim >= 3 * (code_tiles + 1) = {3 * (code_tiles + 1)}")
        # With `wave_field` = K, the code also draws K plane waves over the unshuffled grid, which a
        # 1x1 conv adds to the stem's features. Without them, a flat patch gives the same features
        # in every cell and so the same delta cell: a grid on flat backgrounds, that a photo's own
        # periodic mean removes. The waves vary the features from cell to cell with a secret
        # frequency and phase. Zero at initialisation, so a generator trained without them loads.
        if wave_field:
            if code_dim < 3 * wave_field:
                raise ValueError(f"wave_field needs code_dim >= 3 * wave_field = {3 * wave_field}")
            self.wave_proj = nn.Conv2d(wave_field, channels[0], 1)
            nn.init.zeros_(self.wave_proj.weight)
            nn.init.zeros_(self.wave_proj.bias)
        # With `texture_mask` (TextureMask's settings, {} for its defaults), delta is scaled down
        # where the photo is flat (ridtrain/defender/mask.py). No weights: any generator takes one.
        self.mask = TextureMask(**texture_mask) if texture_mask is not None else None

    def raw(self, x, code=None):
        h = self.stem(self.to_space(2 * x - 1))  # (N, c0, H/r, W/r)
        if self.config.get("wave_field"):  # .get: configs saved before wave_field existed lack it
            h = h + self.wave_proj(plane_waves(code[:, : 3 * self.config.wave_field], h.shape[-2], h.shape[-1]))
        h = F.silu(h)
        if self.config.code_dim:  # (scale, shift) for the bottleneck, then for the last decoder level
            channels = self.config.channels
            film = self.code_embed(code)[:, :, None, None].split([2 * channels[-1], 2 * channels[0]], dim=1)
        skips = []
        for i, enc in enumerate(self.enc):
            if i > 0:
                h = F.silu(self.downs[i - 1](h))
            h = enc(h)
            skips.append(h)
        if self.config.code_dim:
            scale, shift = film[0].chunk(2, dim=1)
            h = h * (1 + scale) + shift
        for i in reversed(range(len(self.ups))):
            h = F.interpolate(h, scale_factor=2.0, mode="nearest")
            h = self.dec[i](F.silu(self.ups[i](h)) + skips[i])
        if self.config.code_dim:
            scale, shift = film[1].chunk(2, dim=1)
            h = h * (1 + scale) + shift
        out = self.from_space(self.head(h))  # (N, 3, H, W)
        if self.config.pattern:
            p = self.config.pattern
            # (N, 3p², H/p, W/p), one tile per cell. The gain multiplies a runtime tensor, so the
            # exporter cannot fold it into the stored tile, which stays fp16-exact (a lossless w16).
            if self.config.get("tile_field"):  # .get: configs saved before tile_field existed lack it
                cells = self.tile_cells(x, code) * PATTERN_GAIN
            else:
                tile = self.tile
                if self.config.code_dim:
                    tile = tile + (self.code_mix(code) @ self.code_tile_bank)[:, :, None, None]  # (N, 3p², 1, 1)
                cells = (x[:, :1, ::p, ::p] * 0 + tile) * PATTERN_GAIN
            out = out + F.pixel_shuffle(cells, p)
        return out

    def tile_cells(self, x, code):
        """(N, 3p², H/p, W/p): in cell (i, j), the fixed tile times wave 0 plus each bank tile
        times its code_mix amplitude and its wave k; wave k is cos(pi * (a*i + b*j + c)) with
        (a, b, c) = code[:, 3k:3k+3]."""
        p = self.config.pattern
        waves = plane_waves(code[:, : 3 * (self.config.code_tiles + 1)], x.shape[-2] // p, x.shape[-1] // p)  # (N, T, H/p, W/p)
        amplitude = torch.cat([torch.ones_like(code[:, :1]), self.code_mix(code)], dim=1)  # (N, T)
        weights = (waves * amplitude[:, :, None, None]).permute(0, 2, 3, 1)  # (N, H/p, W/p, T)
        return (weights @ self.tile_basis()).permute(0, 3, 1, 2)

    def tile_basis(self) -> torch.Tensor:
        """(T, 3p²): the fixed tile, then the code's bank of code_tiles when randomised; each in
        pixel_shuffle's order (channel, row, column). Public, as all weights are: an attacker can
        fit them."""
        if not self.config.pattern:
            raise ValueError("this generator has no tiles (pattern 0)")
        return torch.cat([self.tile.view(1, -1), *([self.code_tile_bank] if hasattr(self, "code_tile_bank") else [])])


def plane_waves(abc: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """(N, K, rows, cols): wave k at (i, j) is cos(pi * (a*i + b*j + c)), (a, b, c) = abc[:, 3k:3k+3]."""
    n, k = abc.shape[0], abc.shape[1] // 3
    i = torch.arange(rows, device=abc.device, dtype=abc.dtype)
    j = torch.arange(cols, device=abc.device, dtype=abc.dtype)
    a, b, c = abc.reshape(n, k, 3).unbind(-1)  # (N, K) each
    return torch.cos(torch.pi * (a[:, :, None, None] * i[:, None] + b[:, :, None, None] * j + c[:, :, None, None]))


# ----------------------------------------------------------------------------- DiT


def sincos_pos_embed(dim: int, gh: int, gw: int, device=None) -> torch.Tensor:
    """2D sine-cosine position embedding for any grid, (gh*gw, dim); computed on the fly so the
    DiT accepts any H, W that are multiples of its patch size."""
    quarter = dim // 4
    omega = 1.0 / 10000 ** (torch.arange(quarter, device=device, dtype=torch.float32) / quarter)
    ys, xs = torch.meshgrid(
        torch.arange(gh, device=device, dtype=torch.float32),
        torch.arange(gw, device=device, dtype=torch.float32),
        indexing="ij",
    )
    out = [f(c.reshape(-1, 1) * omega) for c in (ys, xs) for f in (torch.sin, torch.cos)]
    return torch.cat(out, dim=1)


def modulate(x, shift, scale):
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


class DiTBlock(nn.Module):
    def __init__(self, hidden: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.proj = nn.Linear(hidden, hidden)
        self.norm2 = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        mlp = int(hidden * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(hidden, mlp), nn.GELU(approximate="tanh"), nn.Linear(mlp, hidden))
        self.ada = nn.Linear(hidden, 6 * hidden)
        nn.init.zeros_(self.ada.weight)  # adaLN-Zero
        nn.init.zeros_(self.ada.bias)

    def attn(self, x):
        b, n, c = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)  # (B, nh, T, hs)
        y = F.scaled_dot_product_attention(q, k, v)
        return self.proj(y.transpose(1, 2).reshape(b, n, c))

    def forward(self, x, c):
        sh1, sc1, g1, sh2, sc2, g2 = self.ada(F.silu(c)).chunk(6, dim=1)
        x = x + g1.unsqueeze(1) * self.attn(modulate(self.norm1(x), sh1, sc1))
        return x + g2.unsqueeze(1) * self.mlp(modulate(self.norm2(x), sh2, sc2))


class DiTGenerator(_Generator):
    """Pixel-space DiT with adaLN conditioned on a constant zero vector, as in the RID paper."""

    @register_to_config
    def __init__(
        self,
        eps: int = 8,
        working_side: int = 512,
        patch: int = 16,
        hidden: int = 1152,
        depth: int = 14,
        heads: int = 8,
        mlp_ratio: float = 4.0,
    ):
        super().__init__()
        check_eps(eps)
        self.stride = patch
        self.patchify = nn.Conv2d(3, hidden, patch, stride=patch)
        self.layers = nn.ModuleList([DiTBlock(hidden, heads, mlp_ratio) for _ in range(depth)])
        self.norm = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        self.final_ada = nn.Linear(hidden, 2 * hidden)
        self.out = nn.Linear(hidden, patch * patch * 3)
        for layer in (self.final_ada, self.out):  # delta = 0 at initialisation
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def raw(self, x, code=None):
        n, _, h, w = x.shape
        p, gh, gw = self.config.patch, h // self.config.patch, w // self.config.patch
        t = self.patchify(2 * x - 1).flatten(2).transpose(1, 2)  # (N, T, hidden)
        t = t + sincos_pos_embed(self.config.hidden, gh, gw, x.device).to(t.dtype)
        # The paper conditions adaLN on a constant zero vector: silu(0) = 0, so the adaLN weight
        # matrices never get a gradient and only their biases act (learned shift/scale/gate).
        c = torch.zeros(n, self.config.hidden, device=x.device, dtype=t.dtype)
        for block in self.layers:
            t = block(t, c)
        shift, scale = self.final_ada(F.silu(c)).chunk(2, dim=1)
        t = self.out(modulate(self.norm(t), shift, scale))  # (N, T, p*p*3)
        t = t.view(n, gh, gw, p, p, 3).permute(0, 5, 1, 3, 2, 4)  # (N, 3, gh, p, gw, p)
        return t.reshape(n, 3, h, w)


# ----------------------------------------------------------------------------- registry

ARCHS: dict[str, tuple[type[_Generator], dict]] = {
    "rid-s": (CompactGenerator, dict(channels=(32, 64, 128), blocks=(0, 2, 2), up_blocks=(0, 1))),
    "rid-m": (CompactGenerator, dict(channels=(48, 96, 192), blocks=(1, 2, 3), up_blocks=(1, 2))),
    "rid-dit": (DiTGenerator, dict()),
}
CLASSES = {cls.__name__: cls for cls, _ in ARCHS.values()}


def build_generator(arch: str, eps: int = 8, **overrides) -> _Generator:
    """A freshly initialised generator of a named architecture; `overrides` shrink it for tests."""
    if arch not in ARCHS:
        raise ValueError(f"unknown arch {arch!r}; choose one of {sorted(ARCHS)}")
    cls, kwargs = ARCHS[arch]
    return cls(eps=eps, **{**kwargs, **overrides})


def load_generator(name_or_path: str | Path = DEFAULT_MODEL) -> _Generator:
    """Load a saved generator (bundled name or folder), in eval mode on CPU."""
    path = resolve_model_path(name_or_path)
    class_name = json.loads((path / "config.json").read_text())["_class_name"]
    if class_name not in CLASSES:
        raise ValueError(f"{path}/config.json names unknown class {class_name!r}; known: {sorted(CLASSES)}")
    return CLASSES[class_name].from_pretrained(path).eval()


@torch.no_grad()
def round_weights_to_fp16(model: nn.Module) -> nn.Module:
    """Round every float parameter and buffer to the nearest fp16 value (kept as float32), in
    place. The export then stores them in half the bytes with no change to any output
    (ridexport/variants.py, w16); the efficacy change of the rounding itself is measured apart."""
    for t in [*model.parameters(), *model.buffers()]:
        if t.is_floating_point():
            t.copy_(t.half().float())
    return model


def weights_fp16_exact(model: nn.Module) -> bool:
    """Whether every float parameter and buffer is exactly an fp16 value."""
    tensors = [*model.parameters(), *model.buffers()]
    return all(torch.equal(t, t.half().to(t.dtype)) for t in tensors if t.is_floating_point())


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_flops(model: _Generator, size: int = 512) -> int:
    """Forward FLOPs (multiply-add = 2) for one size x size image, counted by torch."""
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.zeros(1, 3, size, size)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    return counter.get_total_flops()
