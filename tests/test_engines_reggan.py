"""RegGAN's parts: the warp convention, the registration network, the pooled discriminator,
the correction and smoothness losses, and the trainer's four modes (update order, losses)."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from monai.networks.nets import PatchDiscriminator
from torch import nn

from common.engines import RegGANTrainer
from common.losses import correction_loss, smoothness_loss
from common.networks import (
    PooledPatchDiscriminator,
    RegistrationNetwork,
    ResnetGenerator,
    ResUNetRegistration,
    parameters,
    registration_network,
)
from common.networks.generators import ResidualBlock


def make_warp():
    return make_trainer("reggan", [pair()]).warp  # the warp the trainer uses (MONAI's Warp)


def square_image(size=24):
    image = torch.zeros(1, 1, size, size)
    image[..., 8:14, 10:17] = 1.0  # rows 8-13, columns 10-16
    image[..., 9, 12] = 0.5
    return image


# --- the warp ---------------------------------------------------------------------------------
def test_zero_displacement_is_the_identity():
    warp = make_warp()
    image = torch.randn(2, 1, 16, 20)
    assert torch.allclose(warp(image, torch.zeros(2, 2, 16, 20)), image, atol=1e-5)  # float32 grid round trip


def test_known_shift_moves_the_image_by_that_shift():
    warp = make_warp()
    image = square_image()
    ddf = torch.zeros(1, 2, 24, 24)
    ddf[:, 0] = 3.0  # rows: the output at row r samples row r + 3, so the content moves up 3 rows
    ddf[:, 1] = -2.0  # columns: the output at column c samples column c - 2: content moves right 2
    warped = warp(image, ddf)
    expected = torch.zeros_like(image)
    expected[..., 5:11, 12:19] = 1.0
    expected[..., 6, 14] = 0.5
    assert torch.allclose(warped, expected, atol=1e-5)


def test_half_pixel_shift_is_bilinear_and_the_border_is_replicated():
    warp = make_warp()
    image = torch.arange(6.0).repeat(6, 1)[None, None]  # value = column index
    ddf = torch.zeros(1, 2, 6, 6)
    ddf[:, 1] = 0.5
    warped = warp(image, ddf)
    assert torch.allclose(warped[0, 0, :, :5], torch.arange(5.0).repeat(6, 1) + 0.5, atol=1e-5)
    assert torch.allclose(warped[0, 0, :, 5], torch.full((6,), 5.0))  # beyond the edge: the border value


# --- networks ---------------------------------------------------------------------------------
def test_registration_network_starts_at_the_identity_and_learns():
    torch.manual_seed(0)
    net = RegistrationNetwork(in_channels=1, channels=4, levels=2)
    moving, fixed = torch.randn(2, 1, 16, 16), torch.randn(2, 1, 16, 16)
    ddf = net(moving, fixed)
    assert ddf.shape == (2, 2, 16, 16) and torch.count_nonzero(ddf) == 0  # the identity transform
    optimiser = torch.optim.Adam(net.parameters(), 1e-2)
    (ddf[:, 0] - 1).pow(2).mean().backward()  # ask for a one-pixel shift along the rows
    assert any(p.grad.abs().sum() > 0 for n, p in net.named_parameters() if n.startswith("output_block"))
    optimiser.step()
    assert net(moving, fixed)[:, 0].mean() > 0


def test_registration_network_rejects_bad_shapes():
    net = RegistrationNetwork(channels=4, levels=3)
    with pytest.raises(ValueError, match="divisible by 8"):
        net(torch.zeros(1, 1, 20, 20), torch.zeros(1, 1, 20, 20))
    with pytest.raises(ValueError, match="same shape"):
        net(torch.zeros(1, 1, 16, 16), torch.zeros(1, 1, 16, 8))
    with pytest.raises(ValueError, match="levels"):
        RegistrationNetwork(levels=0)


def test_residual_unet_registration_is_the_public_architecture():
    """Levels down to a 2 x 2 bottleneck, 32 then 64 filters, residual blocks after every down
    convolution, 3 at the bottleneck and 1 to refine, no batch norm, output near the identity."""
    assert [ResUNetRegistration(image_size=n).levels for n in (256, 64, 32)] == [7, 5, 4]
    net = ResUNetRegistration(image_size=64)
    widths = [block[0][0].out_channels for block in net.down]
    assert widths == [32, 64, 64, 64, 64]
    assert [block[0].out_channels for block in net.up] == [64, 64, 64, 64, 32]
    assert sum(isinstance(m, ResidualBlock) for m in net.modules()) == 5 + 3 + 1
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in net.modules())
    assert any(isinstance(m, nn.LeakyReLU) and m.negative_slope == 0.2 for m in net.modules())
    seen = {}
    net.bottleneck.register_forward_hook(lambda module, inputs, output: seen.update(shape=inputs[0].shape))
    torch.manual_seed(0)
    ddf = net(torch.randn(2, 1, 64, 64), torch.randn(2, 1, 64, 64))
    assert seen["shape"][2:] == (2, 2) and ddf.shape == (2, 2, 64, 64)
    assert 0 < ddf.abs().max() < 1e-2  # N(0, 1e-5) output weights: almost the identity
    assert net.output.weight.std().item() == pytest.approx(1e-5, rel=0.2)
    with pytest.raises(ValueError, match="5 levels needs sizes divisible by 32"):
        net(torch.zeros(1, 1, 48, 48), torch.zeros(1, 1, 48, 48))
    with pytest.raises(ValueError, match="image_size >= 4"):
        ResUNetRegistration(image_size=2)
    assert isinstance(registration_network("localnet", channels=4), RegistrationNetwork)
    with pytest.raises(ValueError, match="Unknown registration network 'voxelmorph'"):
        registration_network("voxelmorph")


@pytest.mark.parametrize("kind", ["resunet", "localnet"])
def test_registration_networks_learn_to_undo_a_shift(kind):
    """Trained alone on one misaligned pair (a 3-pixel shift), R removes most of the misalignment."""
    torch.manual_seed(0)
    warp = make_warp()
    fixed = square_image(32)
    moving = torch.roll(fixed, shifts=3, dims=2)
    net = registration_network(kind, image_size=32, channels=8, deep_channels=16, levels=3)
    optimiser = torch.optim.Adam(net.parameters(), 1e-3)
    before = (moving - fixed).abs().mean().item()
    for _ in range(150):
        loss = correction_loss(warp(moving, net(moving, fixed)), fixed)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    with torch.no_grad():
        after = (warp(moving, net(moving, fixed)) - fixed).abs().mean().item()
    assert after < 0.5 * before, (before, after)


def test_pooled_discriminator_scores_the_mean_of_the_patch_logits():
    torch.manual_seed(0)
    pooled = PooledPatchDiscriminator(spatial_dims=2, channels=8, in_channels=2, num_layers_d=2, norm="INSTANCE")
    patch = PatchDiscriminator(spatial_dims=2, channels=8, in_channels=2, num_layers_d=2, norm="INSTANCE")
    patch.load_state_dict(pooled.state_dict())
    x = torch.randn(3, 2, 32, 32)
    logits = patch(x)[-1]
    assert logits.shape[-1] > 1  # a map of patches ...
    score = pooled(x)
    assert score.shape == (3, 1)  # ... pooled to one score per image
    assert torch.allclose(score, logits.mean(dim=(2, 3)), atol=1e-6)


def test_parameters_skips_unused_networks():
    a, b = torch.nn.Linear(2, 3), torch.nn.Linear(3, 1)
    assert len(parameters(a, None, b)) == 4
    assert parameters(None, None) == []  # a disabled optimiser's


# --- losses -----------------------------------------------------------------------------------
def test_correction_loss_is_the_l1_to_the_target():
    a, b = torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 4)
    b[..., :2, :] = 1.0  # half the pixels differ by 1
    assert correction_loss(a, b).item() == pytest.approx(0.5)
    with pytest.raises(ValueError, match="same shape"):
        correction_loss(a, b[..., :2])


def test_smoothness_of_known_fields():
    rows = torch.arange(8.0)[:, None].expand(8, 8)
    field = torch.zeros(1, 2, 8, 8)
    assert smoothness_loss(field).item() == 0.0
    field[:, 1] = 5.0  # a pure translation is perfectly smooth
    assert smoothness_loss(field).item() == 0.0
    field[:, 0] = 0.5 * rows  # channel 0 grows by 0.5 per row: squared difference 0.25 over half the field
    assert smoothness_loss(field).item() == pytest.approx(0.125)
    checkerboard = torch.zeros(1, 2, 8, 8)
    checkerboard[:, :, ::2, ::2] = checkerboard[:, :, 1::2, 1::2] = 1.0
    assert smoothness_loss(checkerboard).item() == pytest.approx(2.0)  # every neighbour differs by 1
    with pytest.raises(ValueError, match="spatial_dims"):
        smoothness_loss(torch.zeros(1, 3, 8, 8))


# --- the trainer ------------------------------------------------------------------------------
class NoLabels(dict):
    """A batch that fails the test if the trainer reads anything but the pair."""

    def __getitem__(self, key):
        if key not in ("image", "target"):
            raise AssertionError(f"the trainer read {key!r}")
        return super().__getitem__(key)


def pair(value=None):
    item = {
        "image": torch.rand(1, 1, 16, 16) * 2 - 1,
        "target": torch.rand(1, 1, 16, 16) * 2 - 1,
        "label": torch.zeros(1, 1, 16, 16),
        "reference": torch.zeros(1, 1, 16, 16),
    }
    if value is not None:
        item["image"][:] = value
    return NoLabels(item)


def make_trainer(mode, batches, max_epochs=1):
    torch.manual_seed(0)
    cycle, register = mode in ("cyclegan", "cyclegan_r"), mode in ("reggan", "cyclegan_r")
    g_ab = ResnetGenerator(1, 1, ngf=4, n_blocks=1)
    g_ba = ResnetGenerator(1, 1, ngf=4, n_blocks=1) if cycle else None
    d_b = PooledPatchDiscriminator(
        spatial_dims=2, channels=4, in_channels=2 if mode == "pix2pix" else 1, num_layers_d=2, norm="INSTANCE"
    )
    d_a = (
        PooledPatchDiscriminator(spatial_dims=2, channels=4, in_channels=1, num_layers_d=2, norm="INSTANCE")
        if cycle
        else None
    )
    r = RegistrationNetwork(channels=4, levels=2) if register else None
    opt_g = torch.optim.Adam(parameters(g_ab, g_ba, r), 1e-3, betas=(0.5, 0.999), weight_decay=1e-4)
    opt_d = torch.optim.Adam(parameters(d_a, d_b), 1e-3, betas=(0.5, 0.999), weight_decay=1e-4)
    networks = {"G_AB": g_ab, "G_BA": g_ba, "D_A": d_a, "D_B": d_b, "R": r}  # None: unused by the mode
    return RegGANTrainer(
        "cpu", max_epochs, batches, networks, {"generators": opt_g, "discriminators": opt_d}, mode=mode
    )


def snapshot(trainer):
    return {n: copy.deepcopy(net.state_dict()) for n, net in trainer.networks.items()}


def changed(before, after, name):
    return any(
        not torch.equal(before[name][k], after[name][k])
        for k in after[name]
        if "running" not in k and "num_batches" not in k
    )


NETWORKS = {
    "pix2pix": {"G_AB", "D_B"},
    "cyclegan": {"G_AB", "G_BA", "D_A", "D_B"},
    "reggan": {"G_AB", "R", "D_B"},
    "cyclegan_r": {"G_AB", "G_BA", "R", "D_A", "D_B"},
}
LOSSES = {
    "pix2pix": {"G_AB", "L1", "D_B"},
    "cyclegan": {"G_AB", "G_BA", "cycle_A", "cycle_B", "D_A", "D_B"},
    "reggan": {"G_AB", "correction", "smooth", "D_B"},
    "cyclegan_r": {"G_AB", "G_BA", "cycle_A", "cycle_B", "correction", "smooth", "D_A", "D_B"},
}


@pytest.mark.parametrize("mode", list(NETWORKS))
def test_update_order_generators_and_r_then_discriminators(mode):
    trainer = make_trainer(mode, [pair()])
    assert set(trainer.networks) == NETWORKS[mode]
    discriminators = {n for n in NETWORKS[mode] if n.startswith("D")}
    seen = {}
    start = snapshot(trainer)
    step_g, step_d = trainer.optimizers["generators"].step, trainer.optimizers["discriminators"].step

    def after_g(*args, **kwargs):
        seen["d_grads"] = [p.grad for n in discriminators for p in trainer.networks[n].parameters()]
        seen["g_grads"] = grads()
        result = step_g(*args, **kwargs)
        seen["after_g"] = snapshot(trainer)
        return result

    def after_d(*args, **kwargs):
        seen["g_grads_in_d_step"] = grads()
        result = step_d(*args, **kwargs)
        seen["after_d"] = snapshot(trainer)
        return result

    def grads():
        return [
            None if p.grad is None else p.grad.clone()
            for n in sorted(NETWORKS[mode] - discriminators)
            for p in trainer.networks[n].parameters()
        ]

    trainer.optimizers["generators"].step = after_g
    trainer.optimizers["discriminators"].step = after_d
    trainer.run()
    assert all(g is None for g in seen["d_grads"])  # discriminators frozen in the generator step
    # The discriminator loss adds nothing to the generators' (and R's) gradients: it sees detached fakes.
    assert all(torch.equal(a, b) for a, b in zip(seen["g_grads"], seen["g_grads_in_d_step"], strict=True))
    for name in NETWORKS[mode] - discriminators:  # G (and R, in the same step)
        assert changed(start, seen["after_g"], name) and not changed(seen["after_g"], seen["after_d"], name), name
    for name in discriminators:
        assert not changed(start, seen["after_g"], name) and changed(seen["after_g"], seen["after_d"], name), name
    assert set(trainer.state.output["loss"]) == LOSSES[mode]


def test_reggan_discriminator_sees_the_updated_generator_without_a_pool():
    trainer = make_trainer("reggan", [pair()])
    seen = {}
    d_b = trainer.networks["D_B"]
    inputs = []
    hook = d_b.register_forward_pre_hook(lambda module, args: inputs.append(args[0].detach().clone()))
    step_g = trainer.optimizers["generators"].step

    def after_g(*args, **kwargs):
        result = step_g(*args, **kwargs)
        seen["fake_after_step"] = trainer.networks["G_AB"](trainer.prepare(trainer.state.batch["image"])).detach()
        return result

    trainer.optimizers["generators"].step = after_g
    trainer.run()
    hook.remove()
    # D_B ran on: the fake in the generator step, then the recomputed fake and the real target.
    assert len(inputs) == 3
    assert torch.allclose(inputs[1], seen["fake_after_step"], atol=1e-6)
    assert not torch.allclose(inputs[0], inputs[1])
    assert torch.equal(inputs[2], trainer.state.batch["target"])
    assert trainer.pool_b is None  # no pool in NC+R


def test_pix2pix_discriminator_is_conditional_and_l1_is_weighted():
    trainer = make_trainer("pix2pix", [pair()])
    shapes = []
    hook = trainer.networks["D_B"].register_forward_pre_hook(lambda module, args: shapes.append(args[0].shape[1]))
    trainer.run()
    hook.remove()
    assert shapes == [2, 2, 2]  # [A, fake B] (G step), [A, fake B] and [A, real B] (D step)
    # L1 weight 100 on images in [-1, 1]: far above the adversarial term at the start.
    assert trainer.state.output["loss"]["L1"] > 10 * trainer.state.output["loss"]["G_AB"]


def test_correction_term_is_weighted_and_the_registered_image_is_shown():
    trainer = make_trainer("reggan", [pair()])
    trainer.run()
    losses = trainer.state.output["loss"]
    images = trainer.state.output["images"]
    assert set(images) == {"real_A", "fake_B", "reg_B", "real_B"}
    # At the first step R predicts zero displacement: the smoothness term is 0 and the correction
    # term is 20 x the L1 between fake_B and the target (images in [-1, 1]).
    assert 0 < losses["correction"] <= 40 and losses["smooth"] == 0.0


def test_modes_check_their_networks():
    g = ResnetGenerator(1, 1, ngf=4, n_blocks=1)
    d = PooledPatchDiscriminator(spatial_dims=2, channels=4, in_channels=1, num_layers_d=2)
    r = RegistrationNetwork(channels=4)
    optimizers = {"generators": torch.optim.Adam(g.parameters()), "discriminators": torch.optim.Adam(d.parameters())}
    with pytest.raises(
        ValueError, match=r"RegGANTrainer \(reggan\): missing network 'R' in `networks`; expected G_AB, R, D_B"
    ):
        RegGANTrainer("cpu", 1, [], {"G_AB": g, "D_B": d}, optimizers, mode="reggan")
    with pytest.raises(
        ValueError, match=r"\(pix2pix\): unknown or unused network 'R' in `networks`; expected G_AB, D_B"
    ):
        RegGANTrainer("cpu", 1, [], {"G_AB": g, "D_B": d, "R": r}, optimizers, mode="pix2pix")
    with pytest.raises(ValueError, match="Unknown RegGAN mode"):
        RegGANTrainer("cpu", 1, [], {"G_AB": g, "D_B": d}, optimizers, mode="nc")
    # An optimiser must hold exactly the parameters of the networks it is declared to step.
    with pytest.raises(
        ValueError, match="optimizer 'generators' must hold exactly the parameters of G_AB, R; it misses"
    ):
        RegGANTrainer("cpu", 1, [], {"G_AB": g, "D_B": d, "R": r}, optimizers, mode="reggan")


def test_cycle_modes_pool_their_fakes_and_checkpoint_the_pools():
    trainer = make_trainer("cyclegan_r", [pair() for _ in range(3)], max_epochs=2)
    trainer.run()
    assert trainer.state.iteration == 6 and len(trainer.pool_a.images) == len(trainer.pool_b.images) == 6
    objects = trainer.checkpoint_objects()
    assert {
        "G_AB",
        "G_BA",
        "R",
        "D_A",
        "D_B",
        "optimizer_generators",
        "optimizer_discriminators",
        "pool_A",
        "pool_B",
        "trainer",
    } == set(objects)
    assert "pool_A" not in make_trainer("reggan", [pair()]).checkpoint_objects()


def test_nan_guard_names_the_loss():
    trainer = make_trainer("reggan", [pair(float("nan"))])
    with pytest.raises(FloatingPointError, match=r"Loss '(G_AB|correction|smooth)' is nan"):
        trainer.run()


def test_registration_evaluation_against_the_exact_misalignment(synthetic, tmp_path, monkeypatch):
    """An R that predicts no displacement leaves all the misalignment (fraction 1); an R that
    returns the exact displacement (a test oracle that reads the drawn field) leaves none."""
    import common.evaluation.registration as module
    from common.data.datalist import load_datalist
    from common.evaluation import evaluate_registration

    datalist = load_datalist(synthetic("brain", size=32, subjects=5))

    class Identity(nn.Module):
        def forward(self, moving, fixed):
            return torch.zeros(moving.shape[0], 2, *moving.shape[2:])

    result = evaluate_registration(nn.Identity(), Identity(), datalist, tmp_path, levels=(0, 2, 5))
    assert result["levels"]["0"]["endpoint_error"] == 0
    for level in ("2", "5"):
        assert result["levels"][level]["residual_fraction"] == pytest.approx(1.0)
    assert result["levels"]["5"]["identity_error"] > result["levels"]["2"]["identity_error"] > 0
    assert json.loads((tmp_path / "registration.json").read_text()) == json.loads(json.dumps(result))

    fields = []
    original = module.misalignment_field
    monkeypatch.setattr(module, "misalignment_field", lambda *args: fields.append(original(*args)) or fields[-1])

    class Oracle(nn.Module):
        def forward(self, moving, fixed):
            return torch.as_tensor(fields[-1] - np.indices(moving.shape[2:]), dtype=torch.float32)[None]

    result = evaluate_registration(nn.Identity(), Oracle(), datalist, tmp_path, levels=(3,))
    assert result["levels"]["3"]["endpoint_error"] == pytest.approx(0, abs=1e-5)
    assert result["levels"]["3"]["identity_error"] > 0.5
