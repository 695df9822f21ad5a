"""Adversarial, cycle and identity losses against their formulas and MONAI's discriminator output."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from monai.losses import PatchAdversarialLoss
from monai.networks.nets import PatchDiscriminator

from common.losses import AdversarialLoss, cycle_loss, discriminator_logits, identity_loss


@pytest.fixture
def logits() -> torch.Tensor:
    return torch.randn(2, 1, 6, 6, generator=torch.Generator().manual_seed(0)) * 2


@pytest.mark.parametrize(
    "criterion,real,fake,generator",
    [
        ("lsgan", lambda d: ((d - 1) ** 2).mean(), lambda d: (d**2).mean(), lambda d: ((d - 1) ** 2).mean()),
        ("vanilla", lambda d: F.softplus(-d).mean(), lambda d: F.softplus(d).mean(), lambda d: F.softplus(-d).mean()),
        ("hinge", lambda d: F.relu(1 - d).mean(), lambda d: F.relu(1 + d).mean(), lambda d: -d.mean()),
    ],
)
def test_losses_match_their_formulas(logits, criterion, real, fake, generator):
    loss = AdversarialLoss(criterion)
    torch.testing.assert_close(loss(logits, True), real(logits))
    torch.testing.assert_close(loss(logits, False), fake(logits))
    torch.testing.assert_close(loss(logits, True, for_discriminator=False), generator(logits))


def test_lsgan_is_plain_mse_on_patch_discriminator_logits():
    torch.manual_seed(0)
    disc = PatchDiscriminator(spatial_dims=2, channels=8, in_channels=1, num_layers_d=2)
    with torch.no_grad():
        output = disc(torch.randn(2, 1, 32, 32))
    assert isinstance(output, list) and len(output) > 1
    expected = ((output[-1] - 1) ** 2).mean()
    torch.testing.assert_close(AdversarialLoss()(output, True), expected)
    # MONAI's default least-squares loss differs twice over: it passes the logits through a
    # LeakyReLU and it scores every intermediate feature map of the list as well.
    monai_default = PatchAdversarialLoss(criterion="least_squares")(output, True, True)
    assert abs(monai_default.item() - expected.item()) > 1e-3


def test_gradient_and_dtype(logits):
    x = logits.clone().bfloat16().requires_grad_(True)
    value = AdversarialLoss("lsgan")(x, True)
    assert value.dtype == torch.float32
    value.backward()
    expected = 2 * (x.detach().float() - 1) / x.numel()
    torch.testing.assert_close(x.grad.float(), expected, rtol=1e-2, atol=1e-3)


def test_vanilla_is_stable_for_large_logits():
    big = torch.tensor([1000.0, -1000.0], requires_grad=True)
    for target in (True, False):
        value = AdversarialLoss("vanilla")(big, target)
        value.backward()
        assert torch.isfinite(value) and torch.isfinite(big.grad).all()
    assert AdversarialLoss("vanilla")(big.detach(), True).item() == pytest.approx(500.0)


def test_errors(logits):
    with pytest.raises(ValueError, match="Unknown adversarial criterion 'wgan'; expected one of lsgan, vanilla, hinge"):
        AdversarialLoss("wgan")
    with pytest.raises(ValueError, match="generator loss always targets real"):
        AdversarialLoss()(logits, False, for_discriminator=False)
    with pytest.raises(ValueError, match="`output` is an empty list"):
        discriminator_logits([])
    with pytest.raises(ValueError, match="`output` must be a tensor"):
        AdversarialLoss()(logits.numpy(), True)


def test_cycle_and_identity_are_mean_absolute_errors():
    real = torch.zeros(2, 1, 4, 4)
    other = torch.full((2, 1, 4, 4), 0.5)
    other[0] = -1.5
    assert float(cycle_loss(other, real)) == pytest.approx(1.0)
    assert float(identity_loss(other, real)) == pytest.approx(1.0)
    with pytest.raises(ValueError, match=r"`reconstructed` and `real` must have the same shape"):
        cycle_loss(other[:1], real)
    with pytest.raises(ValueError, match=r"`same` and `real` must have the same shape"):
        identity_loss(other, real[..., :2])
