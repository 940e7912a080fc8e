"""TAEF2, FLUX.2's latent space as a target: the vendored encoder (and decoder, for pictures of what
the attacker's model sees), and how far a perturbation moves a photo's latent.

The encoder maps RGB in [0, 1] (N, 3, H, W), H and W multiples of 8, to latents (N, 32, H/8, W/8);
the decoder maps them back. Both are plain nn.Sequentials whose indices are the keys of the
distilled weights (ridtrain/weights/taef2/README.md), checked against their sha256 before loading.

The measure of protection is the relative latent shift |E(x') - E(x)| / |E(x)| per photo (L2 over
the whole latent). The losses to train and attack with are its square (untargeted) and the pull of
E(x') toward a fixed target latent (targeted, as Mist and PhotoGuard do).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from torch import nn

from ridtrain.bundled import WEIGHTS_DIR

FOLDER = WEIGHTS_DIR / "taef2"
SHA256 = {"encoder": "10a4e1021e89d7551eaf161352da8dbd0b1aa83872ae28b150c1df1ce2f147b6",
          "decoder": "0a44a31e1ae59eb9dbf9359d24942fd3ef5928162c1800d97a28c61d51be0ab5"}
STRIDE = 8
LATENT_CHANNELS = 32
WIDTH = 64


def _conv(c_in: int, c_out: int, **kwargs) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, padding=1, **kwargs)


class Block(nn.Module):
    """ReLU(conv(x) + x), conv = three 3x3 convs with ReLUs between; the innermost blocks first add
    a 1x1 bottleneck with GroupNorm (`pool`)."""

    def __init__(self, width: int = WIDTH, pool: bool = False):
        super().__init__()
        self.conv = nn.Sequential(_conv(width, width), nn.ReLU(), _conv(width, width), nn.ReLU(), _conv(width, width))
        self.pool = nn.Sequential(nn.Conv2d(width, 4 * width, 1, bias=False), nn.GroupNorm(4, 4 * width), nn.ReLU(),
                                  nn.Conv2d(4 * width, width, 1, bias=False)) if pool else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pool is not None:
            x = x + self.pool(x)
        return torch.relu(self.conv(x) + x)


class Clamp(nn.Module):
    """The decoder's input squashing, tanh(z / 3) * 3."""

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.tanh(z / 3) * 3


def build_encoder() -> nn.Sequential:
    layers = [_conv(3, WIDTH), Block()]
    for stage in range(3):
        layers += [_conv(WIDTH, WIDTH, stride=2, bias=False)] + [Block(pool=stage == 2) for _ in range(3)]
    return nn.Sequential(*layers, _conv(WIDTH, LATENT_CHANNELS))


def build_decoder() -> nn.Sequential:
    layers = [Clamp(), _conv(LATENT_CHANNELS, WIDTH), nn.ReLU(), *[Block(pool=True) for _ in range(3)]]
    for blocks in (3, 3, 1):
        layers += [nn.Upsample(scale_factor=2), _conv(WIDTH, WIDTH, bias=False)] + [Block() for _ in range(blocks)]
    return nn.Sequential(*layers, _conv(WIDTH, 3))


def sha256_file(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def load_taef2(part: str = "encoder", folder: str | Path = FOLDER, device="cpu") -> nn.Sequential:
    """The encoder or decoder, frozen, in eval mode; refuses weights whose sha256 is not TAEF2's."""
    if part not in SHA256:
        raise ValueError(f"TAEF2 has an encoder and a decoder, not {part!r}")
    path = Path(folder) / f"taef2_{part}.pth"
    if not path.is_file():
        raise FileNotFoundError(f"no TAEF2 {part} at {path}")
    digest = sha256_file(path)
    if digest != SHA256[part]:
        raise ValueError(f"{path}: sha256 {digest} is not TAEF2's {part} ({SHA256[part]}); refusing to load it")
    model = build_encoder() if part == "encoder" else build_decoder()
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model.requires_grad_(False).eval().to(device)


def relative_shift(encoder: nn.Module, x: torch.Tensor, x_adv: torch.Tensor) -> torch.Tensor:
    """|E(x') - E(x)| / |E(x)| for each photo of x (N, 3, H, W) in [0, 1]: (N,)."""
    with torch.no_grad():
        return latent_shift(encoder(x), encoder(x_adv))


def latent_shift(z: torch.Tensor, z_adv: torch.Tensor) -> torch.Tensor:
    """|z' - z| / |z| per photo of latents (N, C, h, w): (N,). The one measure of protection here."""
    return (z_adv - z).flatten(1).norm(dim=1) / z.flatten(1).norm(dim=1)


def latent_loss(encoder: nn.Module, x_adv: torch.Tensor, z_clean: torch.Tensor, z_target: torch.Tensor | None = None) -> torch.Tensor:
    """What protection minimises, mean over the batch: untargeted, -|E(x') - E(x)|² / |E(x)|²
    (the squared relative shift, negated); targeted, |E(x') - z_target|² / |E(x)|² (pull toward
    a fixed latent). z_clean = E(x), computed once without gradients."""
    z_adv = encoder(x_adv)
    scale = z_clean.flatten(1).pow(2).sum(dim=1)
    if z_target is None:
        return -((z_adv - z_clean).flatten(1).pow(2).sum(dim=1) / scale).mean()
    return ((z_adv - z_target.expand_as(z_adv)).flatten(1).pow(2).sum(dim=1) / scale).mean()


def load_encoders(names, device="cpu") -> list[nn.Sequential]:
    """Encoders by name: "taef2" (the vendored one) or a folder holding taef2_encoder.pth."""
    return [load_taef2("encoder", FOLDER if str(name) == "taef2" else name, device) for name in names]


def target_texture(shape, seed: int, period: int = 64) -> torch.Tensor:
    """The fixed image a targeted latent loss pulls toward (as Mist and PhotoGuard pull toward a
    target image's latent): a period x period tile of uniform noise drawn from `seed`, repeated over
    `shape` (N, 3, H, W), so that one seed gives the same texture at every size."""
    n, c, h, w = shape
    tile = torch.rand(1, c, period, period, generator=torch.Generator().manual_seed(seed))
    return tile.repeat(n, 1, -(-h // period), -(-w // period))[:, :, :h, :w]
