"""SIFA's trainer: the code's seven steps in its order (which networks each changes), the loss
weights, the task loss, and that target labels are never read."""

from __future__ import annotations

import torch
from monai.losses import DiceLoss
from monai.networks.nets import PatchDiscriminator

from common.engines import SIFATrainer
from common.losses import SIFATaskLoss, batch_weighted_cross_entropy
from common.networks import ResnetGenerator, SIFADecoder, SIFAEncoder, SIFASegmenter

SIZE, CLASSES = 16, 3


class NoTargetLabels(dict):
    """A batch that fails the test if anything reads a target label."""

    def __getitem__(self, key):
        if key.startswith("target_label"):
            raise AssertionError("the trainer read a target label")
        return super().__getitem__(key)


def patch(in_channels, out_channels=1):
    return PatchDiscriminator(2, 4, in_channels, out_channels=out_channels, num_layers_d=2, norm="INSTANCE")


def networks(seed=0):
    torch.manual_seed(seed)
    encoder = SIFAEncoder(1, channels=2)  # 64 feature channels at 1/8
    return {
        "G_AB": ResnetGenerator(1, 1, ngf=2, n_blocks=1, residual=True),
        "E_B": encoder,
        "S": SIFASegmenter(64, CLASSES),
        "S_ll": SIFASegmenter(64, CLASSES),
        "U_BA": SIFADecoder(64, 1, ngf=2),
        "D_A": patch(1, out_channels=2),
        "D_B": patch(1),
        "D_P": patch(CLASSES),
        "D_P_ll": patch(CLASSES),
    }


def make_trainer(batches, nets=None, **kwargs):
    nets = nets or networks()

    def adam(names, betas):
        return torch.optim.Adam([p for n in names for p in nets[n].parameters()], 2e-4, betas=betas)

    optimizers = {
        "generator": adam(["G_AB"], (0.5, 0.999)),
        "decoder": adam(["U_BA"], (0.5, 0.999)),
        "segmenter": adam(["E_B", "S", "S_ll"], (0.9, 0.999)),
        "discriminators": adam(["D_A", "D_B", "D_P", "D_P_ll"], (0.5, 0.999)),
    }
    return SIFATrainer("cpu", 1, batches, nets, optimizers, **kwargs)


def batch(seed=1):
    generator = torch.Generator().manual_seed(seed)
    return NoTargetLabels(
        {
            "source_image": torch.rand(2, 1, SIZE, SIZE, generator=generator) * 2 - 1,
            "source_label": torch.randint(0, CLASSES, (2, 1, SIZE, SIZE), generator=generator),
            "target_image": torch.rand(2, 1, SIZE, SIZE, generator=generator) * 2 - 1,
            "target_label": torch.zeros(2, 1, SIZE, SIZE),
        }
    )


#: The public code's seven steps: the optimiser of each and the networks it changes.
SIFA_STEPS = [
    ("generator", ["G_AB"]),
    ("discriminators", ["D_B"]),
    ("segmenter", ["E_B", "S", "S_ll"]),
    ("decoder", ["U_BA"]),
    ("discriminators", ["D_A"]),
    ("discriminators", ["D_P"]),
    ("discriminators", ["D_P_ll"]),
]


def record_steps(trainer):
    """Wraps ``trainer.step`` to record, per call, the optimiser and the networks it changed."""
    nets, changed, original = trainer.networks, [], trainer.step

    def snapshot():
        return {n: [p.detach().clone() for p in net.parameters()] for n, net in nets.items()}

    def spy(optimizer, loss, losses):
        before = snapshot()
        values = original(optimizer, loss, losses)
        after = snapshot()
        moved = [n for n in nets if any(not torch.equal(a, b) for a, b in zip(before[n], after[n], strict=True))]
        changed.append((optimizer, sorted(moved)))
        return values

    trainer.step = spy
    return changed


def test_seven_steps_in_the_codes_order_each_changing_only_its_networks():
    trainer = make_trainer([batch()])
    changed = record_steps(trainer)
    trainer.run()
    assert changed == SIFA_STEPS
    output = trainer.state.output
    assert set(output["loss"]) == set(SIFATrainer.LOSS_NAMES)
    assert all(torch.isfinite(torch.tensor(v)) for v in output["loss"].values())
    assert output["images"]["fake_B"].shape == (2, 1, SIZE, SIZE)


def test_loss_weights():
    """Doubling a weight doubles its term; steps 1-2 do not depend on the segmenter-step weights,
    so the segmenter step's terms are computed on the same networks and batch in both runs."""
    base = make_trainer([batch()], networks())
    base.run()
    doubled = make_trainer(
        [batch()],
        networks(),
        lambda_ll=0.2,
        lambda_seg_gan=0.2,
        lambda_p=0.2,
        lambda_p_ll=0.02,
        lambda_aux=0.2,
        l2=2e-4,
    )
    doubled.run()
    one, two = base.state.output["loss"], doubled.state.output["loss"]
    assert one["G_AB_cycle"] == two["G_AB_cycle"] and one["seg_ce"] == two["seg_ce"]
    for name in ("seg_ll", "seg_l2", "seg_decoder", "seg_adv_P", "seg_adv_P_ll", "seg_adv_aux"):
        assert abs(two[name] - 2 * one[name]) < 1e-5 * max(1.0, abs(one[name])), name
    # The weight decay term is TensorFlow's l2_loss: 1e-4 * sum(w^2) / 2 over E_B, S and S_ll.
    nets = networks()
    with torch.no_grad():
        expected = 1e-4 * sum((p**2).sum() for n in ("E_B", "S", "S_ll") for p in nets[n].parameters()) / 2
    assert abs(one["seg_l2"] - float(expected)) < 1e-6
    # lambda_cycle weighs the cycle terms of the first step.
    cycle = make_trainer([batch()], networks(), lambda_cycle=20.0)
    cycle.run()
    assert abs(cycle.state.output["loss"]["G_AB_cycle"] - 2 * one["G_AB_cycle"]) < 1e-5


def test_task_loss_is_sifas():
    torch.manual_seed(0)
    logits = torch.randn(2, CLASSES, 8, 8)
    labels = torch.randint(0, CLASSES, (2, 1, 8, 8))
    onehot = torch.zeros_like(logits).scatter_(1, labels, 1.0)
    p = torch.softmax(logits, 1)
    # SIFA's loops: weight 1 - (pixels of class i) / (all pixels), per batch.
    expected_ce = 0.0
    for i in range(CLASSES):
        weight = 1 - onehot[:, i].sum() / onehot.sum()
        expected_ce = expected_ce - weight * onehot[:, i] * torch.log(p[:, i].clamp(0.005, 1))
    expected_dice = (
        1
        - sum(
            2 * (p[:, i] * onehot[:, i]).sum() / ((p[:, i] ** 2).sum() + onehot[:, i].sum() + 1e-7)
            for i in range(CLASSES)
        )
        / CLASSES
    )
    ce, dice = SIFATaskLoss()(logits, labels)
    assert torch.allclose(ce, expected_ce.mean(), atol=1e-6)
    assert torch.allclose(dice, expected_dice, atol=1e-6)
    assert torch.allclose(batch_weighted_cross_entropy(logits, onehot), expected_ce.mean(), atol=1e-6)
    assert isinstance(SIFATaskLoss().dice, DiceLoss)  # MONAI's Dice
    # A perfect prediction has (almost) no loss.
    ce, dice = SIFATaskLoss()(onehot * 50, labels)
    assert ce < 1e-3 and dice < 1e-3
