"""SynthMix on SIFA: the Inspector's step after SIFA's seven, the input kinds (unmixed source,
unmixed target and unaligned mixes for the Inspector; aligned mixes of an image and its own
translation for the generators), lambda_I, the baselines' masks, and no target labels read."""

from __future__ import annotations

import pytest
import torch
from test_engines_sifa import SIFA_STEPS, SIZE, batch, networks, record_steps

from common.engines import SynthMixTrainer
from common.networks import MixupInspector


def make_trainer(batches, nets=None, **kwargs):
    nets = nets or {**networks(), "I": MixupInspector(1, SIZE, k=kwargs.get("k", 4), channels=4)}

    def adam(names, betas=(0.5, 0.999)):
        return torch.optim.Adam([p for n in names for p in nets[n].parameters()], 2e-4, betas=betas)

    optimizers = {
        "generator": adam(["G_AB"]),
        "decoder": adam(["U_BA"]),
        "segmenter": adam(["E_B", "S", "S_ll"], (0.9, 0.999)),
        "discriminators": adam(["D_A", "D_B", "D_P", "D_P_ll"]),
        "inspector": adam(["I"]),
    }
    kwargs.setdefault("k", 4)
    return SynthMixTrainer("cpu", 1, batches, nets, optimizers, **kwargs)


def test_the_inspector_steps_last_and_alone():
    trainer = make_trainer([batch()])
    changed = record_steps(trainer)
    trainer.run()
    assert changed == [*SIFA_STEPS, ("inspector", ["I"])]
    output = trainer.state.output
    assert set(output["loss"]) == set(SynthMixTrainer.LOSS_NAMES)
    assert output["images"]["inspector_map"].shape[2:] == (SIZE, SIZE)


def test_input_kinds():
    trainer = make_trainer([batch()])
    seen, original = [], trainer.inspect

    def record(image, mask):
        seen.append((image.detach().clone(), mask.clone()))
        return original(image, mask)

    trainer.inspect = record
    trainer.run()
    data = batch()
    real_a, real_b = data["source_image"], data["target_image"]
    assert len(seen) == 5  # G_AB's aligned mix, the decoder's, then source, target, unaligned mix
    (s_mix, m_s), (t_mix, m_t), (source, zeros), (target, ones), (unaligned, m_u) = seen
    for mask in (m_s, m_t, m_u):
        assert set(mask.unique().tolist()) == {0.0, 1.0}  # SynthMix grids (ratios drawn from U(0, 1))
    # The generator's mix: the source where M = 0, its translation (not the source) where M = 1.
    keep = (m_s == 0).expand_as(s_mix)
    assert torch.equal(s_mix[keep], real_a[keep]) and not torch.allclose(s_mix[~keep], real_a[~keep])
    # The decoder's mix: the target where M = 1, its translation to the source where M = 0.
    keep = (m_t == 1).expand_as(t_mix)
    assert torch.equal(t_mix[keep], real_b[keep]) and not torch.allclose(t_mix[~keep], real_b[~keep])
    # The Inspector's inputs: unmixed (truth all 0, all 1) and an unaligned mix of the two real images.
    assert torch.equal(source, real_a) and not zeros.any()
    assert torch.equal(target, real_b) and ones.all()
    assert torch.equal(unaligned, m_u * real_b + (1 - m_u) * real_a)


def test_lambda_inspector_weighs_both_terms():
    torch.manual_seed(5)
    one = make_trainer([batch()])
    torch.manual_seed(5)
    one.run()
    torch.manual_seed(5)
    two = make_trainer([batch()], lambda_inspector=0.2)
    torch.manual_seed(5)
    two.run()
    first, second = one.state.output["loss"], two.state.output["loss"]
    assert first["G_AB_cycle"] == second["G_AB_cycle"]
    assert second["G_AB_mix"] == pytest.approx(2 * first["G_AB_mix"], rel=1e-5)


@pytest.mark.parametrize("mode", ["mixup", "cutmix"])
def test_baselines_mix_through_the_same_inspector(mode):
    trainer = make_trainer([batch()], mix_mode=mode)
    masks = []
    original = trainer.inspect
    trainer.inspect = lambda image, mask: masks.append(mask) or original(image, mask)
    trainer.run()
    mixed = masks[-1]
    if mode == "mixup":  # one weight per image
        assert all(len(m.unique()) == 1 for m in mixed)
    else:  # one box per image
        assert set(mixed.unique().tolist()) <= {0.0, 1.0}
    with pytest.raises(ValueError, match="Unknown mix_mode 'mixupp'"):
        make_trainer([batch()], mix_mode="mixupp")
    with pytest.raises(ValueError, match="Unknown inspector_loss 'l1'"):
        make_trainer([batch()], inspector_loss="l1")


def test_the_inspector_can_replace_the_image_discriminators():
    """Table 4's ablation: without D_A and D_B, SIFA's steps 2 and 5 and their terms are gone."""
    nets = {k: v for k, v in networks().items() if k not in ("D_A", "D_B")}
    nets["I"] = MixupInspector(1, SIZE, k=4, channels=4)

    def adam(names):
        return torch.optim.Adam([p for n in names for p in nets[n].parameters()], 2e-4)

    optimizers = {
        "generator": adam(["G_AB"]),
        "decoder": adam(["U_BA"]),
        "segmenter": adam(["E_B", "S", "S_ll"]),
        "discriminators": adam(["D_P", "D_P_ll"]),
        "inspector": adam(["I"]),
    }
    trainer = SynthMixTrainer("cpu", 1, [batch()], nets, optimizers, k=4)
    steps, original = [], trainer.step
    trainer.step = lambda optimizer, loss, losses: steps.append(sorted(losses)) or original(optimizer, loss, losses)
    trainer.run()
    assert steps[0] == ["G_AB_cycle", "G_AB_mix"] and ["D_B"] not in steps and ["D_A", "D_A_aux"] not in steps
    assert "seg_adv_aux" not in steps[1] and steps[2] == ["U_BA_cycle", "U_BA_mix"]
    assert len(steps) == 6  # generator, segmenter, decoder, D_P, D_P_ll, inspector
    nets["D_A"] = networks()["D_A"]
    optimizers["discriminators"] = adam(["D_A", "D_P", "D_P_ll"])
    with pytest.raises(ValueError, match="both image discriminators D_A and D_B, or neither"):
        SynthMixTrainer("cpu", 1, [batch()], nets, optimizers, k=4)
