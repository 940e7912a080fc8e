"""Shared tiny world: diffusers targets built from configs, saved, and loaded back through the real
loader; a few photos from the corpus. Built once per test session."""

import pytest
import torch

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def corpus(tmp_path_factory):
    from ridtrain.corpus import PYTHON_SOURCES, build_corpus

    root = tmp_path_factory.mktemp("corpus")
    build_corpus(root, PYTHON_SOURCES)  # the Debian photos are for training runs, not tests
    return root


@pytest.fixture(scope="session")
def crops(corpus):
    """(64,3,32,32) training crops of the corpus."""
    from ridtrain.data import CropDataset

    torch.manual_seed(0)
    ds = CropDataset(corpus / "train", side=64, crop=32, color_jitter=0)
    return torch.stack([ds[i % len(ds)][0] for i in range(64)])


@pytest.fixture(scope="session")
def ldm_paths(tmp_path_factory):
    """Two tiny latent diffusion checkpoints in the SD folder layout (random weights)."""
    from ridtrain.diffusion.tiny import build_tiny_ldm

    root = tmp_path_factory.mktemp("ldm")
    return [build_tiny_ldm(root / f"ldm-{s}", seed=s, width=16) for s in (0, 1)]


@pytest.fixture(scope="session")
def pixel_path(tmp_path_factory, crops):
    """A tiny pixel-space target whose UNet was fitted to the corpus for a few steps, so that it
    has a data manifold that attacks can push away from."""
    from ridtrain.diffusion.tiny import build_tiny_pixel, fit_unet

    path = build_tiny_pixel(tmp_path_factory.mktemp("pixel") / "pixel-0", width=16)
    return fit_unet(path, crops, steps=60)


@pytest.fixture(scope="session")
def ldms(ldm_paths):
    from ridtrain.diffusion.targets import load_target

    return [load_target(p) for p in ldm_paths]


@pytest.fixture(scope="session")
def pixel_target(pixel_path):
    from ridtrain.diffusion.targets import load_target

    return load_target(pixel_path)


@pytest.fixture(scope="session")
def perturbed_generator(tmp_path_factory):
    """Factory: save a fresh rid-s (optionally shrunk or given a tile by overrides) whose
    zero-initialised head and tile are perturbed, so that delta is not 0; returns its folder."""
    from ridtrain.defender.generators import PATTERN_GAIN, build_generator, round_weights_to_fp16

    def make(weight_std: float, bias_std: float = 0.0, fp16_exact: bool = False, **overrides):
        torch.manual_seed(0)
        gen = build_generator("rid-s", **overrides)
        torch.nn.init.normal_(gen.head.weight, std=weight_std)
        if bias_std:
            torch.nn.init.normal_(gen.head.bias, std=bias_std)
        if hasattr(gen, "tile"):  # a periodic part of about half a unit before the tanh
            torch.nn.init.normal_(gen.tile, std=0.5 / PATTERN_GAIN)
        if gen.code_dim:  # the code moves the features and draws a tile: delta depends on it
            torch.nn.init.normal_(gen.code_embed[2].weight, std=0.2)
            if hasattr(gen, "wave_proj"):
                torch.nn.init.normal_(gen.wave_proj.weight, std=0.2)
            if hasattr(gen, "code_tile_bank"):
                torch.nn.init.normal_(gen.code_tile_bank, std=0.5 / PATTERN_GAIN)
        if fp16_exact:
            round_weights_to_fp16(gen)
        path = tmp_path_factory.mktemp("gen") / ("rid-s-perturbed" + ("-fp16" if fp16_exact else ""))
        gen.save_pretrained(path)
        return path

    return make


# The browser tests' server and Chromium (tests/browser_env.py).


@pytest.fixture(scope="module")
def server():
    """The server app over HTTP serving web/dist and the bundled model (test_server.py has its own)."""
    from browser_env import serving

    with serving() as url:
        yield url


@pytest.fixture(scope="module")
def pw():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def browser(pw):
    from browser_env import launch

    b = launch(pw)
    yield b
    b.close()


def pytest_addoption(parser):
    parser.addoption("--rid-export", default=None, help="run tests/test_check.py's suite on this export folder (default: the bundled one)")
    parser.addoption("--rid-checkpoint", default=None, help="the saved generator that export came from (pytorch row)")
