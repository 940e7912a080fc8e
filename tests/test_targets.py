import pytest
import torch
from diffusers import UNet2DConditionModel

from ridtrain.diffusion.targets import DiffusionTarget, load_target


def test_latent_round_trip_through_the_sd_loader(ldm_paths, ldms):
    target = ldms[0]
    assert isinstance(target, DiffusionTarget) and target.vae is not None
    assert not any(p.requires_grad for p in target.parameters())
    assert not target.training and not target.unet.training
    assert target.context.shape[0] == 1 and target.num_timesteps == 1000
    # the weights that came back are the saved ones: same output as a directly loaded UNet
    unet = UNet2DConditionModel.from_pretrained(ldm_paths[0], subfolder="unet").eval()
    z, t = torch.randn(2, 4, 8, 8), torch.tensor([10, 900])
    with torch.no_grad():
        direct = unet(z, t, encoder_hidden_states=target.context.expand(2, -1, -1)).sample
        assert torch.allclose(target.predict_noise(z, t), direct)
    # and the two seeds give different models
    with torch.no_grad():
        assert not torch.allclose(ldms[1].predict_noise(z, t), direct)


def test_encode_is_differentiable_and_scaled(ldms):
    target = ldms[0]
    x = torch.rand(1, 3, 32, 32, requires_grad=True)
    z = target.encode(x, generator=torch.Generator().manual_seed(0))
    assert z.shape == (1, 4, 16, 16)
    with torch.no_grad():
        posterior = target.vae.encode(2 * x - 1).latent_dist
        direct = posterior.sample(generator=torch.Generator().manual_seed(0)) * target.vae.config.scaling_factor
    assert target.scaling_factor == target.vae.config.scaling_factor
    assert torch.allclose(z, direct)
    z.sum().backward()
    assert x.grad.abs().sum() > 0


def test_pixel_target_has_no_vae(pixel_target):
    x = torch.rand(1, 3, 32, 32)
    assert pixel_target.vae is None and pixel_target.context is None
    assert torch.allclose(pixel_target.encode(x), 2 * x - 1)


def test_v_prediction_is_converted_to_noise(ldms):
    target = ldms[0]
    z, t, n = torch.randn(1, 4, 8, 8), torch.tensor([500]), torch.randn(1, 4, 8, 8)
    z_t = target.add_noise(z, t, n)
    with torch.no_grad():
        v = target.predict_noise(z_t, t)  # pretend this model predicts v
        target.prediction_type = "v_prediction"
        try:
            eps = target.predict_noise(z_t, t)
        finally:
            target.prediction_type = "epsilon"
    a = target.alphas_cumprod[t]
    assert torch.allclose(eps, a.sqrt() * v + (1 - a).sqrt() * z_t, atol=1e-5)


def test_a_folder_without_unet_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="no unet/"):
        load_target(tmp_path)
