import pytest
import torch
import torch.nn.functional as F

from ridtrain.defender.generators import ALLOWED_EPS, DiTGenerator, build_generator, check_eps, count_flops, count_params, load_generator

TINY_DIT = dict(hidden=32, depth=2, heads=4)


def small(arch):
    return build_generator(arch, **(TINY_DIT if arch == "rid-dit" else {}))


@pytest.mark.parametrize("arch", ["rid-s", "rid-m", "rid-dit"])
def test_delta_is_zero_at_init(arch):
    gen = small(arch)
    x = torch.rand(2, 3, 64, 96)
    assert torch.equal(gen(x), torch.zeros_like(x))
    assert torch.equal(gen.protect(x), x)


@pytest.mark.parametrize("arch", ["rid-s", "rid-m", "rid-dit"])
def test_any_multiple_of_the_stride_and_bounded(arch):
    gen = small(arch)
    torch.manual_seed(0)
    for p in gen.parameters():  # leave the zero init so the output is not trivially 0
        torch.nn.init.normal_(p, std=0.2)
    for h, w in [(gen.stride, gen.stride), (3 * gen.stride, 5 * gen.stride)]:
        delta = gen(torch.rand(1, 3, h, w), eps=4 / 255)
        assert delta.shape == (1, 3, h, w)
        assert delta.abs().max() <= 4 / 255 and delta.abs().max() > 1 / 255
    with pytest.raises(ValueError, match="multiples of"):
        gen(torch.rand(1, 3, gen.stride + 1, gen.stride))


@pytest.mark.parametrize("arch", ["rid-s", "rid-dit"])
def test_save_and_load_round_trip(arch, tmp_path):
    gen = small(arch)
    torch.nn.init.normal_(next(p for n, p in gen.named_parameters() if "head" in n or n.startswith("out")), std=0.1)
    gen.save_pretrained(tmp_path)
    assert (tmp_path / "config.json").is_file() and (tmp_path / "diffusion_pytorch_model.safetensors").is_file()
    back = load_generator(tmp_path)
    assert type(back) is type(gen) and back.config.eps == gen.config.eps and not back.training
    assert all(torch.equal(a, b) for a, b in zip(back.state_dict().values(), gen.state_dict().values()))
    x = torch.rand(1, 3, 32, 32)
    assert torch.equal(back(x), gen.eval()(x))


def test_pattern_is_a_learned_tile_of_its_period():
    gen = build_generator("rid-s", pattern=16)
    x = torch.rand(1, 3, 64, 96)
    assert torch.equal(gen(x), torch.zeros_like(x))  # still 0 at init
    torch.manual_seed(0)
    torch.nn.init.normal_(gen.tile, std=0.01)
    delta = gen(x)  # the head is still zero: delta is the tile alone, the same for any image
    assert torch.equal(delta, gen(torch.rand(1, 3, 64, 96)))
    assert torch.equal(delta[..., :16, :16], delta[..., 48:64, 80:96]) and delta.abs().max() > 1 / 255
    assert not torch.equal(delta[..., :16, :16], delta[..., :16, 1:17])
    with pytest.raises(ValueError, match="must divide the stride"):
        build_generator("rid-s", pattern=12)


def test_default_compact_budget():
    gen = build_generator("rid-s")
    assert count_params(gen) <= 2_000_000
    assert 2e9 <= count_flops(gen, 512) <= 5e9


def test_paper_dit_size():
    with torch.device("meta"):
        gen = build_generator("rid-dit")
    assert isinstance(gen, DiTGenerator) and gen.stride == 16
    assert 330e6 < count_params(gen) < 350e6


def test_eps_is_checked():
    assert check_eps(8) == 8
    for bad in (0, 6, 255):
        with pytest.raises(ValueError, match=str(ALLOWED_EPS)):
            build_generator("rid-s", eps=bad)
    with pytest.raises(ValueError, match="unknown arch"):
        build_generator("rid-xl")


def test_unknown_model_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no generator"):
        load_generator(tmp_path / "nope")


def test_the_bundled_default_model_loads_and_says_what_it_is():
    from typer.testing import CliRunner

    from rid.cli import app
    from ridtrain.bundled import model_card

    gen = load_generator("default")
    assert count_params(gen) <= 2_000_000 and gen.config.eps == 8
    card = model_card("default")
    assert "NOT trained against Stable Diffusion" in card["summary"] and card["trained_against"]
    help_text = " ".join(CliRunner().invoke(app, ["protect", "--help"]).output.split())
    assert "NOT trained against Stable Diffusion" in help_text


def randomised(**overrides):
    """rid-s with a code and a tile, perturbed so that delta is not 0 and depends on the code."""
    from ridtrain.defender.generators import PATTERN_GAIN

    gen = build_generator("rid-s", pattern=16, code_dim=16, channels=(8, 16, 32), **overrides)
    torch.manual_seed(0)
    torch.nn.init.normal_(gen.head.weight, std=0.05)
    torch.nn.init.normal_(gen.code_embed[2].weight, std=0.3)
    torch.nn.init.normal_(gen.code_tile_bank, std=0.8 / PATTERN_GAIN)
    return gen.eval()


def test_a_randomised_generator_starts_deterministic_enough_and_bounded():
    gen = build_generator("rid-s", pattern=16, code_dim=16)
    x = torch.rand(2, 3, 64, 96)
    assert gen(x).abs().max() < 2 / 255  # the code's tile starts small (about a level), the FiLM at zero
    gen = randomised()
    for eps in (4 / 255, 16 / 255):
        assert gen(x, eps).abs().max() <= eps


def test_the_code_changes_delta_and_a_given_code_reproduces_it():
    gen, x = randomised(), torch.rand(1, 3, 64, 64)
    code = gen.random_code(1)
    with torch.no_grad():
        a, b, c = gen(x, code=code), gen(x, code=code), gen(x, code=gen.random_code(1))
        fresh = gen(x), gen(x)  # no code: a fresh draw each call
    assert torch.equal(a, b)
    assert (a - c).abs().mean() > 0.2 * a.abs().mean()
    assert not torch.equal(*fresh)
    # one code for a batch is broadcast; per-image codes give per-image deltas
    xs = torch.cat([x, x])
    with torch.no_grad():
        assert torch.allclose(gen(xs, code=code)[1], a[0], atol=1e-7)
        two = gen(xs, code=torch.cat([code, gen.random_code(1)]))
    assert not torch.equal(two[0], two[1])


def test_the_codes_tile_is_periodic_and_the_net_is_modulated():
    gen = randomised()
    torch.nn.init.zeros_(gen.head.weight)  # delta = the tile alone: fixed tile + the code's tile
    x, code = torch.rand(1, 3, 64, 96), gen.random_code(1)
    with torch.no_grad():
        delta = gen(x, code=code)
        assert torch.equal(delta, gen(torch.rand(1, 3, 64, 96), code=code))
        assert not torch.equal(delta, gen(x, code=gen.random_code(1)))
    assert torch.equal(delta[..., :16, :16], delta[..., 48:64, 80:96])


def test_the_tile_field_scales_each_cell_by_a_wave_of_the_code():
    from ridtrain.defender.generators import PATTERN_GAIN

    gen = randomised(tile_field=True)
    torch.nn.init.normal_(gen.tile, std=0.8 / PATTERN_GAIN)
    torch.nn.init.zeros_(gen.head.weight)  # delta = the tiles alone
    x, code = torch.rand(1, 3, 64, 96), gen.random_code(1)
    with torch.no_grad():
        delta = gen(x, code=code)
        assert torch.equal(delta, gen(torch.rand(1, 3, 64, 96), code=code))  # image-independent here
        assert not torch.equal(delta, gen(x, code=gen.random_code(1)))
        assert not torch.allclose(delta[..., :16, :16], delta[..., 48:64, 80:96])  # no longer repeating
        cells = gen.tile_cells(x, code)  # (1, 3*16², 4, 6)
        i, j = 3, 5
        a, b, c = code[0, :15].view(5, 3).unbind(-1)
        wave = torch.cos(torch.pi * (a * i + b * j + c))
        amplitude = torch.cat([torch.ones(1), gen.code_mix(code)[0]])
        expected = (wave * amplitude) @ torch.cat([gen.tile.view(1, -1), gen.code_tile_bank])
    assert torch.allclose(cells[0, :, i, j], expected, atol=1e-7)
    assert torch.allclose(gen.config.eps / 255 * torch.tanh(PATTERN_GAIN * F.pixel_shuffle(cells, 16)), delta, atol=1e-7)


def test_the_tile_field_needs_a_tile_and_enough_code():
    with pytest.raises(ValueError, match="needs a tile"):
        build_generator("rid-s", code_dim=16, tile_field=True)
    with pytest.raises(ValueError, match=r"code_dim >= 3 \* \(code_tiles \+ 1\) = 15"):
        build_generator("rid-s", pattern=16, code_dim=8, tile_field=True)
    field, plain = build_generator("rid-s", pattern=16, code_dim=16, tile_field=True), build_generator("rid-s", pattern=16, code_dim=16)
    assert field.state_dict().keys() == plain.state_dict().keys()  # a repeating-tile generator's weights fit as they are


def test_the_wave_field_varies_delta_from_cell_to_cell_on_a_flat_patch():
    gen = build_generator("rid-s", unshuffle=8, channels=(16,), blocks=(1,), up_blocks=(), code_dim=16, wave_field=5)
    torch.manual_seed(0)
    torch.nn.init.normal_(gen.head.weight, std=0.05)
    flat, code = torch.full((1, 3, 64, 96), 0.5), gen.random_code(1)
    cell = lambda d, i, j: d[..., 8 * i:8 * i + 8, 8 * j:8 * j + 8]  # noqa: E731
    with torch.no_grad():
        plain = gen(flat, code=code)  # the field starts at zero: a flat patch gives one delta cell, repeated
        assert torch.equal(cell(plain, 2, 3), cell(plain, 5, 8)) and plain.abs().max() > 0
        torch.nn.init.normal_(gen.wave_proj.weight, std=0.5)
        waved = gen(flat, code=code)
        assert not torch.allclose(cell(waved, 2, 3), cell(waved, 5, 8))
        assert not torch.allclose(waved, gen(flat, code=gen.random_code(1)))  # the waves are the code's
    with pytest.raises(ValueError, match=r"code_dim >= 3 \* wave_field = 15"):
        build_generator("rid-s", code_dim=8, wave_field=5)
    plain_keys = build_generator("rid-s", code_dim=16).state_dict().keys()
    assert set(plain_keys) < set(build_generator("rid-s", code_dim=16, wave_field=5).state_dict())  # init_from a plain one


def test_a_randomised_generator_saves_and_loads(tmp_path):
    gen = randomised()
    gen.save_pretrained(tmp_path)
    back, x, code = load_generator(tmp_path), torch.rand(1, 3, 32, 32), gen.random_code(1)
    assert back.code_dim == 16
    with torch.no_grad():
        assert torch.allclose(back(x, code=code), gen(x, code=code), atol=1e-7)


def test_randomised_budget():
    gen = build_generator("rid-s", pattern=16, code_dim=16)
    assert count_params(gen) - count_params(build_generator("rid-s", pattern=16)) < 15_000  # the web file's 2 MB
    assert count_params(gen) <= 2_000_000 and count_flops(gen, 512) <= 5e9


def test_the_texture_mask_keeps_the_floor_on_flat_parts_and_all_of_delta_on_texture():
    from ridtrain.defender.mask import TextureMask

    mask = TextureMask(window=7, offset=1.5, scale=6.0, floor=0.05)
    torch.manual_seed(0)
    x = torch.full((1, 3, 64, 64), 0.5)
    x[..., 32:] += torch.randn(1, 1, 64, 32) * 30 / 255  # a textured right half: luma std ~30 levels
    m = mask(x.clamp(0, 1))
    assert m.shape == (1, 1, 64, 64)
    # the two passes of a 7-px window reach 6 px across the edge at column 32
    assert (m[..., :, :26] == 0.05).all() and (m[..., :, 38:] == 1).all()
    # A smooth gradient hides nothing (a sky's): it counts as flat, however steep (4 levels a pixel).
    grey_ramp = torch.linspace(0, 1, 64).view(1, 1, 1, 64).expand(1, 3, 64, 64)
    assert (mask(grey_ramp)[..., 8:-8, 8:-8] == 0.05).all()


def test_a_masked_generator_scales_delta_by_the_mask_and_exports_it(tmp_path):
    """delta = eps * tanh(raw) * mask(x), bounded by eps; the exported graph computes the same
    (onnxruntime against torch), with only allow-listed operators."""
    import numpy as np
    import onnxruntime as ort

    from ridexport.graph import check_graph, export_onnx

    torch.manual_seed(0)
    gen = build_generator("rid-s", unshuffle=8, channels=(16,), blocks=(1,), up_blocks=(), code_dim=16, wave_field=5,
                          texture_mask={})
    torch.nn.init.normal_(gen.head.weight, std=0.2)
    plain = build_generator("rid-s", unshuffle=8, channels=(16,), blocks=(1,), up_blocks=(), code_dim=16, wave_field=5)
    plain.load_state_dict(gen.state_dict())
    x = torch.rand(1, 3, 64, 96)
    x[..., :, :48] = 0.5  # a flat left half
    code, eps = gen.random_code(1), 8 / 255
    with torch.no_grad():
        masked, unmasked = gen(x, eps, code), plain(x, eps, code)
    assert torch.allclose(masked, unmasked * gen.mask(x)) and masked.abs().max() <= eps
    assert masked[..., 8:-8, 4:40].abs().max() <= 0.05 * eps + 1e-7 < unmasked[..., 8:-8, 4:40].abs().max()
    gen.save_pretrained(tmp_path / "masked")
    assert load_generator(tmp_path / "masked").config.texture_mask == {}  # the mask's settings travel in config.json
    path = export_onnx(gen, tmp_path / "masked.onnx")
    check_graph(path)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(["delta"], {"image": x.numpy(), "eps": np.array([eps], np.float32), "code": code.numpy()})[0]
    assert np.abs(got - masked.numpy()).max() <= 1e-6
