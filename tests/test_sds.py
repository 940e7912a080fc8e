import torch

from ridtrain.attacker.evaluate import target_losses
from ridtrain.diffusion.sds import adv_sds_loss, ensemble_sds_loss


def test_gradient_matches_hand_computation_pixel_target(pixel_target):
    """Pixel target: z = 2x - 1, so dL/dx = 2 sqrt(a_t) * (-w (n_hat - n)) / B, with n_hat from
    the UNet called directly."""
    torch.manual_seed(0)
    x = torch.rand(2, 3, 32, 32, requires_grad=True)
    t, n = torch.tensor([100, 700]), torch.randn(2, 3, 32, 32)
    adv_sds_loss(pixel_target, x, t=t, noise=n).backward()

    a = pixel_target.alphas_cumprod[t].view(-1, 1, 1, 1)
    z_t = a.sqrt() * (2 * x.detach() - 1) + (1 - a).sqrt() * n
    with torch.no_grad():
        n_hat = pixel_target.unet(z_t, t).sample
    expected = 2 * a.sqrt() * (-(1 - a) * (n_hat - n)) / 2
    assert torch.allclose(x.grad, expected, rtol=1e-4, atol=1e-7)
    assert x.grad.abs().max() > 0


def test_gradient_matches_hand_computation_latent_target(ldms):
    """Latent target: dL/dz_t = -w (n_hat - n) by hand, pulled back through the encoder (a VJP with
    the same posterior draw); the UNet gets no gradient."""
    target = ldms[0]
    torch.manual_seed(0)
    x = torch.rand(1, 3, 32, 32, requires_grad=True)
    t, n = torch.tensor([400]), torch.randn(1, 4, 16, 16)
    adv_sds_loss(target, x, t=t, noise=n, generator=torch.Generator().manual_seed(3)).backward()

    x2 = x.detach().clone().requires_grad_(True)
    z = target.encode(x2, generator=torch.Generator().manual_seed(3))
    a = target.alphas_cumprod[t].view(-1, 1, 1, 1)
    with torch.no_grad():
        z_t = a.sqrt() * z + (1 - a).sqrt() * n
        n_hat = target.predict_noise(z_t, t)
    dz = a.sqrt() * (-(1 - a) * (n_hat - n))
    (expected,) = torch.autograd.grad(z, x2, grad_outputs=dz)
    assert torch.allclose(x.grad, expected, rtol=1e-3, atol=1e-6)
    assert all(p.grad is None for p in target.unet.parameters())


def test_loss_value_is_half_squared_weighted_error(pixel_target):
    x, t, n = torch.rand(1, 3, 32, 32), torch.tensor([300]), torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        a = pixel_target.alphas_cumprod[t]
        n_hat = pixel_target.predict_noise(pixel_target.add_noise(2 * x - 1, t, n), t)
        expected = 0.5 * ((1 - a) * (n_hat - n)).pow(2).sum()
        assert torch.allclose(adv_sds_loss(pixel_target, x, t=t, noise=n), expected, rtol=1e-5)


def test_optimising_delta_raises_denoising_mse(pixel_target, crops):
    """A few Adam steps on delta = eps*tanh(w) minimising Adv-SDS raise the (fitted) target's
    denoising MSE, measured with common random numbers, and more than Gaussian noise of equal L2."""
    torch.manual_seed(0)
    x, eps = crops[:4], 8 / 255
    w = torch.zeros_like(x, requires_grad=True)
    opt = torch.optim.Adam([w], lr=0.1)
    for _ in range(10):
        loss = adv_sds_loss(pixel_target, (x + eps * torch.tanh(w)).clamp(0, 1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    delta = (eps * torch.tanh(w)).detach()
    gauss = torch.randn_like(x)
    gauss *= delta.norm() / gauss.norm()
    clean = target_losses(pixel_target, x, 16, 0)[1]
    protected = target_losses(pixel_target, (x + delta).clamp(0, 1), 16, 0)[1]
    noisy = target_losses(pixel_target, (x + gauss).clamp(0, 1), 16, 0)[1]
    assert protected - clean > noisy - clean > -1e-3
    assert protected > clean


def test_ensemble_of_two_is_the_mean_of_members_drawing_in_turn(ldms):
    x = torch.rand(2, 3, 32, 32)
    g = torch.Generator().manual_seed(5)
    ens = ensemble_sds_loss(ldms, x, generator=g)
    g.manual_seed(5)
    parts = [adv_sds_loss(tg, x, generator=g) for tg in ldms]
    assert torch.allclose(ens, (parts[0] + parts[1]) / 2)
    assert not torch.allclose(parts[0], parts[1])
    # each member contributes gradient
    for tg in ldms:
        xg = x.clone().requires_grad_(True)
        ensemble_sds_loss([tg], xg).backward()
        assert xg.grad.abs().sum() > 0


def test_timestep_range_is_respected(pixel_target):
    from ridtrain.diffusion.sds import sample_timesteps

    t = sample_timesteps(pixel_target, 500, 10, 20, generator=torch.Generator().manual_seed(0))
    assert t.min() >= 10 and t.max() <= 20 and len(set(t.tolist())) == 11
