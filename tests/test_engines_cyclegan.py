"""The CycleGAN trainer: update order, losses, NaN guard, and that target labels are never read."""

from __future__ import annotations

import copy

import pytest
import torch
from monai.networks.nets import PatchDiscriminator

from common.engines import CycleGANTrainer
from common.networks import ResnetGenerator


class NoTargetLabels(dict):
    """A batch that fails the test if anything reads a target label."""

    def __getitem__(self, key):
        if key.startswith("target_label"):
            raise AssertionError("the trainer read a target label")
        return super().__getitem__(key)


def make_trainer(batches, lambda_identity=0.5, max_epochs=1):
    torch.manual_seed(0)
    g_ab, g_ba = ResnetGenerator(1, 1, ngf=4, n_blocks=1), ResnetGenerator(1, 1, ngf=4, n_blocks=1)
    d_a, d_b = (PatchDiscriminator(2, 4, 1, num_layers_d=2, norm="INSTANCE") for _ in range(2))
    opt_g = torch.optim.Adam(list(g_ab.parameters()) + list(g_ba.parameters()), 2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(list(d_a.parameters()) + list(d_b.parameters()), 2e-4, betas=(0.5, 0.999))
    return CycleGANTrainer(
        "cpu",
        max_epochs,
        batches,
        {"G_AB": g_ab, "G_BA": g_ba, "D_A": d_a, "D_B": d_b},
        {"generators": opt_g, "discriminators": opt_d},
        lambda_identity=lambda_identity,
    )


def batch(value=None):
    images = {
        "source_image": torch.rand(2, 1, 16, 16) * 2 - 1,
        "target_image": torch.rand(2, 1, 16, 16) * 2 - 1,
        "target_label": torch.zeros(2, 1, 16, 16),
    }
    if value is not None:
        images["source_image"][:] = value
    return NoTargetLabels(images)


def snapshot(trainer, names):
    return {n: copy.deepcopy(trainer.networks[n].state_dict()) for n in names}


def changed(before, after, name):
    return any(not torch.equal(before[name][k], after[name][k]) for k in after[name])


def test_update_order_generators_then_discriminators():
    trainer = make_trainer([batch()])
    names = ("G_AB", "G_BA", "D_A", "D_B")
    seen = {}
    start = snapshot(trainer, names)
    step_g, step_d = trainer.optimizers["generators"].step, trainer.optimizers["discriminators"].step

    def after_g(*args, **kwargs):
        # While the generators step, the discriminators are frozen and have no gradients.
        seen["d_grads_in_g_step"] = [p.grad for n in ("D_A", "D_B") for p in trainer.networks[n].parameters()]
        seen["d_requires_grad"] = any(p.requires_grad for n in ("D_A", "D_B") for p in trainer.networks[n].parameters())
        result = step_g(*args, **kwargs)
        seen["after_g"] = snapshot(trainer, names)
        return result

    def after_d(*args, **kwargs):
        result = step_d(*args, **kwargs)
        seen["after_d"] = snapshot(trainer, names)
        return result

    trainer.optimizers["generators"].step = after_g
    trainer.optimizers["discriminators"].step = after_d
    trainer.run()
    assert all(g is None for g in seen["d_grads_in_g_step"]) and not seen["d_requires_grad"]
    after_g, after_d = seen["after_g"], seen["after_d"]
    for name in ("G_AB", "G_BA"):
        assert changed(start, after_g, name) and not changed(after_g, after_d, name)  # only in the G step
    for name in ("D_A", "D_B"):
        assert not changed(start, after_g, name) and changed(after_g, after_d, name)  # only in the D step
    assert all(p.requires_grad for p in trainer.networks["D_A"].parameters())


def test_losses_and_outputs():
    trainer = make_trainer([batch()], lambda_identity=0.0)
    trainer.run()
    output = trainer.state.output
    assert set(output["loss"]) == {"G_AB", "G_BA", "cycle_A", "cycle_B", "D_A", "D_B"}  # no identity terms
    assert all(isinstance(v, float) and v > 0 for v in output["loss"].values())
    # Cycle losses carry lambda_cycle = 10: an L1 between images in [-1, 1] times 10.
    assert 0 < output["loss"]["cycle_A"] <= 20
    assert set(output["images"]) == {"real_A", "fake_B", "rec_A", "real_B", "fake_A", "rec_B"}
    assert output["images"]["fake_B"].shape == (2, 1, 16, 16)

    with_identity = make_trainer([batch()], lambda_identity=0.5)
    with_identity.run()
    assert {"idt_A", "idt_B"} <= set(with_identity.state.output["loss"])


def test_nan_guard_names_the_loss():
    trainer = make_trainer([batch(float("nan"))])
    with pytest.raises(FloatingPointError, match=r"Loss '(G_AB|G_BA|cycle_A|cycle_B|idt_A|idt_B)' is nan at epoch 1"):
        trainer.run()


def test_iterations_and_pools():
    trainer = make_trainer([batch() for _ in range(3)], max_epochs=2)
    trainer.run()
    assert trainer.state.iteration == 6
    assert len(trainer.pool_a.images) == len(trainer.pool_b.images) == 12  # 2 fakes per iteration, pool of 50
