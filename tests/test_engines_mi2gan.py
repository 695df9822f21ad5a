"""MI2GAN's parts: the X-shape auto-encoders, eq. 5, the joint/marginal pairs of D_MI, where the
mutual-information gradient goes, the alternating updates of eq. 7 and the method switches."""

from __future__ import annotations

import copy

import pytest
import torch
from monai.networks.nets import PatchDiscriminator
from torch import nn

from common.engines import MI2GANTrainer
from common.losses import MutualInformationEstimator, distillation_loss
from common.networks import (
    ContentDecoder,
    ContentEncoder,
    PooledPatchDiscriminator,
    ResnetGenerator,
    TranslateThenSegment,
    parameters,
    sub_state_dict,
)


class NoTargetLabels(dict):
    """A batch that fails the test if the trainer reads anything but the two images."""

    def __getitem__(self, key):
        if key not in ("target_image", "source_image"):
            raise AssertionError(f"the trainer read {key!r}")
        return super().__getitem__(key)


class RecordingCritic(nn.Module):
    """A critic that records its inputs: score = w * mean of the pair's features."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.tensor(0.5))
        self.inputs = []

    def forward(self, pair):
        self.inputs.append(pair.detach().clone())
        return self.weight * pair.mean(dim=(1, 2, 3))[:, None]


def make_trainer(method="mi2gan", critic=None, **options):
    torch.manual_seed(0)
    uses = MI2GANTrainer.networks_for(method)
    networks = {
        "G_AB": ResnetGenerator(3, 3, ngf=4, n_blocks=1),
        "G_BA": ResnetGenerator(3, 3, ngf=4, n_blocks=1),
        "D_A": PatchDiscriminator(2, 4, 3, num_layers_d=2, norm="INSTANCE"),
        "D_B": PatchDiscriminator(2, 4, 3, num_layers_d=2, norm="INSTANCE"),
    }
    if "Enc_A" in uses:
        networks.update(
            Enc_A=ContentEncoder(3, 2),
            Dec_A=ContentDecoder(3, 2),
            Enc_B=ContentEncoder(3, 2),
            Dec_B=ContentDecoder(3, 2),
        )
    if "D_MI" in uses:
        critic = critic or PooledPatchDiscriminator(2, num_layers_d=1, channels=4, in_channels=16, norm="INSTANCE")
        networks["D_MI"] = MutualInformationEstimator(critic)

    def opt(*names):
        return torch.optim.Adam(parameters(*(networks.get(n) for n in names)), 2e-4, betas=(0.5, 0.999))

    optimizers = {"generators": opt("G_AB", "G_BA"), "discriminators": opt("D_A", "D_B")}
    if "Enc_A" in uses:
        optimizers["content"] = opt("Enc_A", "Dec_A", "Enc_B", "Dec_B", "D_MI")
    return MI2GANTrainer("cpu", 1, [], networks, optimizers, method=method, **options)


def batch():
    torch.manual_seed(1)
    return NoTargetLabels(
        {"target_image": torch.rand(2, 3, 32, 32) * 2 - 1, "source_image": torch.rand(2, 3, 32, 32) * 2 - 1}
    )


def run_iteration(trainer, data=None):
    data = data or batch()
    trainer.state.iteration, trainer.state.epoch = 1, 1
    return trainer._iteration(trainer, data), data


# --- parts ------------------------------------------------------------------------------------
def test_autoencoder_shapes_and_layers():
    encoder, decoder = ContentEncoder(3, channels=8), ContentDecoder(3, channels=8)
    x = torch.rand(2, 3, 32, 24) * 2 - 1
    z = encoder(x)
    assert z.shape == (2, 32, 8, 6) and encoder.out_channels == decoder.in_channels == 32
    image = decoder(z)
    assert image.shape == x.shape and image.abs().max() <= 1
    kinds = {type(m) for m in [*encoder.modules(), *decoder.modules()]}
    assert nn.InstanceNorm2d in kinds and nn.LeakyReLU in kinds and nn.BatchNorm2d not in kinds
    with pytest.raises(ValueError, match="positive"):
        ContentEncoder(3, channels=0)


def test_distillation_loss_is_eq5():
    image, translation = torch.zeros(1, 3, 4, 4), torch.full((1, 3, 4, 4), 0.5)
    reconstruction, cross = torch.full((1, 3, 4, 4), 0.25), torch.full((1, 3, 4, 4), -0.5)
    # |I_ab - I'_ab| = 1, |I_a - I'_a| = 0.25
    assert distillation_loss(image, translation, reconstruction, cross).item() == pytest.approx(1.25)
    with pytest.raises(ValueError, match="translation"):
        distillation_loss(image, translation[..., :2], reconstruction, cross)


def test_translate_then_segment_returns_the_label_map():
    class Shift(nn.Module):  # a "translator" that adds 1
        def forward(self, x):
            return x + 1

    class Threshold(nn.Module):  # a "segmenter": class 1 where the first channel exceeds 0.5
        def forward(self, x):
            return torch.cat([torch.full_like(x[:, :1], 0.5), x[:, :1]], dim=1)

    x = torch.tensor([[[[-1.0, 0.0], [-0.2, 0.9]]]])
    torch.testing.assert_close(
        TranslateThenSegment(Shift(), Threshold())(x), torch.tensor([[[[0.0, 1.0], [1.0, 1.0]]]])
    )
    torch.testing.assert_close(TranslateThenSegment(None, Threshold())(x), torch.tensor([[[[0.0, 0.0], [0.0, 1.0]]]]))
    assert TranslateThenSegment(None, Threshold(), return_logits=True)(x).shape == (1, 2, 2, 2)
    pipeline = TranslateThenSegment(ResnetGenerator(3, 3, ngf=2, n_blocks=1), nn.Conv2d(3, 2, 1))
    translator = sub_state_dict(pipeline.state_dict(), "translator")
    ResnetGenerator(3, 3, ngf=2, n_blocks=1).load_state_dict(translator)  # the generator's own keys
    with pytest.raises(KeyError, match="No weights under 'generator.'"):
        sub_state_dict(pipeline.state_dict(), "generator")


def test_networks_for_each_method():
    assert MI2GANTrainer.networks_for("direct") == ()
    assert set(MI2GANTrainer.networks_for("cyclegan")) == {"G_AB", "G_BA", "D_A", "D_B"}
    assert "Enc_A" in MI2GANTrainer.networks_for("mi2gan_no_dmi") and "D_MI" not in MI2GANTrainer.networks_for(
        "mi2gan_no_dmi"
    )
    assert set(MI2GANTrainer.networks_for("mi2gan")) == set(MI2GANTrainer.NETWORKS)
    with pytest.raises(ValueError, match="Unknown MI2GANTrainer variant 'mi2'; expected one of direct, cyclegan"):
        MI2GANTrainer.networks_for("mi2")


def iteration_with_initial_codes(trainer):
    """Runs one iteration; returns its output and z_a, z_b, z_ab, z_ba of the networks before it."""
    nets = {n: copy.deepcopy(trainer.networks[n]) for n in ("G_AB", "G_BA", "Enc_A", "Enc_B")}
    output, data = run_iteration(trainer)
    real_a, real_b = data["target_image"], data["source_image"]
    with torch.no_grad():
        z_a, z_b = nets["Enc_A"](real_a), nets["Enc_B"](real_b)
        z_ab, z_ba = nets["Enc_B"](nets["G_AB"](real_a)), nets["Enc_A"](nets["G_BA"](real_b))
    return output, (z_a, z_b, z_ab, z_ba)


# --- D_MI's pairs and gradients ------------------------------------------------------------------
def test_dmi_joint_and_marginal_pairs_of_the_papers_prose():
    """``mi_marginal="real"``: joint (z_a, Enc_B(G_AB(I_a))) and marginal (z_a, Enc_B(I_b)), and the
    symmetric B -> A pairs."""
    critic = RecordingCritic()
    trainer = make_trainer(critic=critic, mi_marginal="real")
    _, (z_a, z_b, z_ab, z_ba) = iteration_with_initial_codes(trainer)
    # The generator step's four critic calls, before any network was updated.
    expected = [
        torch.cat([z_a, z_ab], 1),
        torch.cat([z_a, z_b], 1),
        torch.cat([z_b, z_ba], 1),
        torch.cat([z_b, z_a], 1),
    ]
    assert len(critic.inputs) == 8  # 4 in the generator step, 4 in the content step
    for seen, wanted in zip(critic.inputs[:4], expected, strict=True):
        torch.testing.assert_close(seen, wanted)
    # The marginal pair differs from the joint pair only in its second half.
    assert torch.equal(critic.inputs[0][:, :8], critic.inputs[1][:, :8])
    assert not torch.allclose(critic.inputs[0][:, 8:], critic.inputs[1][:, 8:])


def test_product_of_marginals_pairs_at_batch_2():
    """``mi_marginal="product"`` (eq. 6): z_a with the code of the *other* image's translation, never a real B image."""
    critic = RecordingCritic()
    trainer = make_trainer(critic=critic, mi_marginal="product")
    output, (z_a, z_b, z_ab, z_ba) = iteration_with_initial_codes(trainer)
    expected = [
        torch.cat([z_a, z_ab], 1),
        torch.cat([z_a, z_ab.flip(0)], 1),  # batch of 2: the other image's translation
        torch.cat([z_b, z_ba], 1),
        torch.cat([z_b, z_ba.flip(0)], 1),
    ]
    for seen, wanted in zip(critic.inputs[:4], expected, strict=True):
        torch.testing.assert_close(seen, wanted)
    assert {"MI_DV_A", "MI_DV_B", "MI_A", "MI_B"} <= set(output["loss"])


def test_product_of_marginals_from_the_queue_at_batch_1():
    critic = RecordingCritic()
    trainer = make_trainer(critic=critic, mi_marginal="product", mi_queue_size=2)
    images = []
    for step in range(4):
        torch.manual_seed(10 + step)
        data = NoTargetLabels(
            {"target_image": torch.rand(1, 3, 32, 32) * 2 - 1, "source_image": torch.rand(1, 3, 32, 32) * 2 - 1}
        )
        critic.inputs.clear()
        g_ab, enc_b = copy.deepcopy(trainer.networks["G_AB"]), copy.deepcopy(trainer.networks["Enc_B"])
        queued = [q.clone() for q in trainer.translation_queues["A"]]
        output = trainer._iteration(trainer, data)
        if step == 0:  # no other translation yet: the term waits for the queue
            assert critic.inputs == [] and "MI_A" not in output["loss"]
        else:
            assert len(queued) == min(step, 2)
            with torch.no_grad():
                negatives = enc_b(torch.cat(queued))  # the earlier translations, encoded now
            seen = critic.inputs[1]  # the generator step's A -> B marginal pairs
            assert seen.shape[0] == len(queued)
            torch.testing.assert_close(seen[:, 8:], negatives)
            assert "MI_A" in output["loss"] and "MI_DV_A" in output["loss"]
        with torch.no_grad():
            images.append(g_ab(data["target_image"]))
    torch.testing.assert_close(
        torch.cat(list(trainer.translation_queues["A"])), torch.cat(images[-2:]), atol=1e-6, rtol=0
    )


def test_encoders_can_learn_from_l_dis_alone():
    """With ``mi_encoders=False`` the content step's MI gradient reaches D_MI only."""
    trainer = make_trainer(mi_encoders=False, lambda_distillation=0.0)
    real_a, real_b = batch()["target_image"], batch()["source_image"]
    fake_b = trainer.networks["G_AB"](real_a).detach()
    _, bound, monitor, _ = trainer.content_terms(real_a, fake_b, real_b, "A", "B", train_encoders=False)
    bound.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in trainer.networks["D_MI"].parameters())
    for name in ("Enc_A", "Enc_B"):
        assert all(p.grad is None for p in trainer.networks[name].parameters()), name
    assert not monitor.requires_grad
    with pytest.raises(ValueError, match="Unknown `mi_marginal` 'batch'; expected one of product, real"):
        make_trainer(mi_marginal="batch")


def test_mi_gradient_reaches_the_generator_the_encoders_and_dmi():
    trainer = make_trainer()
    real_a, real_b = batch()["target_image"], batch()["source_image"]
    bound = trainer.content_terms(real_a, trainer.networks["G_AB"](real_a), real_b, "A", "B")[1]
    bound.backward()
    for name in ("G_AB", "Enc_A", "Enc_B", "D_MI"):
        grads = [p.grad for p in trainer.networks[name].parameters() if p.grad is not None]
        assert grads and sum(g.abs().sum() for g in grads) > 0, name
    # Neither the other generator nor the decoders take part in the A -> B bound.
    for name in ("G_BA", "Dec_A", "Dec_B"):
        assert all(p.grad is None for p in trainer.networks[name].parameters()), name


def test_generator_step_maximises_the_bound():
    """With only the MI term (alpha = beta = 0 and no discriminators' pull), a generator step raises I_DV."""
    trainer = make_trainer(lambda_cycle=0.0, lambda_distillation=0.0, lambda_mi=1.0)
    real_a, real_b = batch()["target_image"], batch()["source_image"]
    g_ab = trainer.networks["G_AB"]
    optimiser = torch.optim.SGD(g_ab.parameters(), lr=0.05)
    before = trainer.content_terms(real_a, g_ab(real_a), real_b, "A", "B")[1]
    (-before).backward()
    optimiser.step()
    after = trainer.content_terms(real_a, g_ab(real_a), real_b, "A", "B")[1]
    assert after.item() > before.item()


# --- the alternating optimisation -------------------------------------------------------------
def snapshot(trainer):
    return {n: {k: p.detach().clone() for k, p in net.named_parameters()} for n, net in trainer.networks.items()}


def changed(before, trainer, name):
    return any(not torch.equal(before[name][k], p) for k, p in trainer.networks[name].named_parameters())


def test_generator_step_keeps_the_other_networks_fixed(monkeypatch):
    trainer = make_trainer()
    before, seen = snapshot(trainer), {}
    step = trainer.step

    def spy(optimizer, loss, losses):
        if optimizer == "generators":  # right after the generator step: only G_AB and G_BA moved
            values = step(optimizer, loss, losses)
            seen.update({n: changed(before, trainer, n) for n in trainer.networks})
            seen["after_g"] = snapshot(trainer)
            seen["grads"] = {
                n: any(p.grad is not None for p in trainer.networks[n].parameters())
                for n in trainer.networks
                if not n.startswith("G_")
            }
            return values
        return step(optimizer, loss, losses)

    monkeypatch.setattr(trainer, "step", spy)
    output, _ = run_iteration(trainer)
    assert seen["G_AB"] and seen["G_BA"]
    assert not any(seen[n] for n in ("D_A", "D_B", "Enc_A", "Dec_A", "Enc_B", "Dec_B", "D_MI"))
    assert not any(seen["grads"].values())  # frozen: no gradient was even computed for them
    # Then the discriminators, auto-encoders and D_MI moved, and the generators did not move again.
    assert all(changed(before, trainer, n) for n in ("D_A", "D_B", "Enc_A", "Dec_A", "Enc_B", "Dec_B", "D_MI"))
    for name in ("G_AB", "G_BA"):
        assert not changed(seen["after_g"], trainer, name)
    losses = output["loss"]
    assert {
        "G_AB",
        "G_BA",
        "cycle_A",
        "cycle_B",
        "dis_A",
        "dis_B",
        "MI_A",
        "MI_B",
        "MI_DV_A",
        "MI_DV_B",
        "D_A",
        "D_B",
        "AE_dis_A",
        "AE_dis_B",
        "D_MI_A",
        "D_MI_B",
    } == set(losses)
    assert {"ae_rec_A", "ae_cross_B", "ae_rec_B", "ae_cross_A"} <= set(output["images"])


def test_generator_loss_is_eq7(monkeypatch):
    """The generator step minimises adv + alpha cyc + beta L_dis - lambda_mi I_DV, both directions."""
    trainer = make_trainer(lambda_cycle=10.0, lambda_distillation=10.0, lambda_mi=2.0)
    totals = {}
    step = trainer.step

    def spy(optimizer, loss, losses):
        totals[optimizer] = (loss.item(), {k: v.item() for k, v in losses.items()})
        return step(optimizer, loss, losses)

    monkeypatch.setattr(trainer, "step", spy)
    run_iteration(trainer)
    total, terms = totals["generators"]
    expected = sum(terms[k] for k in ("G_AB", "G_BA", "cycle_A", "cycle_B", "dis_A", "dis_B"))
    assert total == pytest.approx(expected - 2.0 * (terms["MI_A"] + terms["MI_B"]), rel=1e-5)
    total, terms = totals["content"]
    assert total == pytest.approx(
        terms["AE_dis_A"] + terms["AE_dis_B"] - 2.0 * (terms["D_MI_A"] + terms["D_MI_B"]), rel=1e-5
    )


@pytest.mark.parametrize(
    "method, networks, optimizers",
    [
        ("cyclegan", {"G_AB", "G_BA", "D_A", "D_B"}, {"generators", "discriminators"}),
        (
            "mi2gan_no_dmi",
            {"G_AB", "G_BA", "D_A", "D_B", "Enc_A", "Dec_A", "Enc_B", "Dec_B"},
            {"generators", "discriminators", "content"},
        ),
    ],
)
def test_ablations(method, networks, optimizers):
    trainer = make_trainer(method)
    assert set(trainer.networks) == networks and set(trainer.optimizers) == optimizers
    output, _ = run_iteration(trainer)
    assert not any(k.startswith(("MI", "D_MI")) for k in output["loss"])
    assert ("dis_A" in output["loss"]) == (method == "mi2gan_no_dmi")
    assert set(trainer.checkpoint_objects()) == (
        networks | {f"optimizer_{o}" for o in optimizers} | {"pool_A", "pool_B", "trainer"}
    )


def test_configuration_errors():
    trainer = make_trainer("mi2gan")
    networks, optimizers = dict(trainer.networks), dict(trainer.optimizers)
    partial = {**networks, "Dec_A": None, "Enc_B": None, "Dec_B": None, "D_MI": None}
    with pytest.raises(
        ValueError,
        match=r"MI2GANTrainer \(mi2gan_no_dmi\): missing network 'Dec_A' in `networks`; "
        "expected G_AB, G_BA, D_A, D_B, Enc_A, Dec_A, Enc_B, Dec_B",
    ):
        MI2GANTrainer("cpu", 1, [], partial, optimizers, method="mi2gan_no_dmi")
    with pytest.raises(ValueError, match=r"\(cyclegan\): unknown or unused network 'Enc_A'"):
        MI2GANTrainer("cpu", 1, [], networks, optimizers, method="cyclegan")
    with pytest.raises(ValueError, match=r"\(mi2gan\): missing optimizer 'content' in `optimizers`"):
        MI2GANTrainer("cpu", 1, [], networks, {**optimizers, "content": None}, method="mi2gan")
    with pytest.raises(ValueError, match=r"\(direct\) trains no network"):
        MI2GANTrainer("cpu", 1, [], {}, {}, method="direct")


def test_nan_guard_names_the_loss():
    trainer = make_trainer()
    data = batch()
    data["target_image"][0, 0, 0, 0] = float("nan")
    with pytest.raises(FloatingPointError, match="Loss 'G_AB' is nan"):
        run_iteration(trainer, data)
