"""Global-local alignment's networks and trainers. Stage 1: the domain label conditions the
encoder and the decoder through AdaIN (per-channel style statistics change, the normalised content
does not), the domain-conditional PatchGAN reads the image's own domain, the translator scripts;
the trainer's losses and weights, its update order, and that it reads no label. Stage 2: DeepLab
from MONAI's ResNet and ASPP at output stride 8, D1, the local mask (range, shape, no gradients),
the trainer's losses with each mask, its update order (the translator frozen), the ablations and
that target labels are never read."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from common.engines import LocalAlignmentTrainer, StyleTransferTrainer
from common.networks import (
    DeepLabSegmenter,
    DomainPatchDiscriminator,
    LocallyMaskedSegmenter,
    OutputDiscriminator,
    PixelDiscriminator,
    StyleTransferNetwork,
    local_feature_mask,
    one_hot_domain,
    reweight_features,
)

C, N_RES = 8, 2


@pytest.fixture(scope="module")
def network() -> StyleTransferNetwork:
    torch.manual_seed(0)
    return StyleTransferNetwork(1, channels=C, n_sampling=2, n_res=N_RES, mlp_dim=32).eval()


def test_shapes_and_the_translation_direction(network):
    x = torch.randn(3, 1, 32, 32)
    source, target = torch.zeros(3, dtype=torch.long), torch.ones(3, dtype=torch.long)
    content = network.encoder(x, source)
    assert content.shape == (3, 4 * C, 8, 8)
    with torch.no_grad():
        fake = network(x)
        assert fake.shape == x.shape and fake.abs().max() <= 1
        assert torch.equal(fake, network.translate(x, source, target))  # forward: domain 0 to 1
        assert not torch.allclose(fake, network.translate(x, source, source))  # x_ii differs from x_ij
    with pytest.raises(ValueError, match=r"Domain labels must lie in \[0, 2\), got labels from 0 to 2"):
        network.encoder(x, torch.tensor([0, 1, 2]))


@pytest.mark.parametrize("part", ["encoder", "decoder"])
def test_the_label_sets_each_channel_s_statistics_and_leaves_the_normalised_map(network, part):
    """In the first AdaIN layer of each network, the label's MLP output is the per-channel bias
    (mean over the map) and scale (std); the instance-normalised maps are the same for both labels."""
    torch.manual_seed(1)
    x = torch.randn(2, 1, 32, 32)
    if part == "encoder":
        features, mlp, block = network.encoder.down(x), network.encoder.mlp, network.encoder.blocks[0]
    else:
        features = network.encoder(x, torch.zeros(2, dtype=torch.long))
        mlp, block = network.decoder.decoder.mlp, network.decoder.decoder.blocks[0]
    channels = block.channels
    h = block.conv1(features)
    outputs = {}
    for label in (0, 1):
        params = mlp(one_hot_domain(torch.full((2,), label), 2))[:, : 2 * channels]
        bias, scale = params[:, :channels], params[:, channels:]
        out = block.adain(h, params)
        assert torch.allclose(out.mean((2, 3)), bias, atol=1e-4)
        assert torch.allclose(out.std((2, 3), unbiased=False), scale.abs(), atol=1e-3, rtol=1e-3)
        outputs[label] = (out - bias[:, :, None, None]) / scale[:, :, None, None]
    assert torch.allclose(outputs[0], outputs[1], atol=1e-4)  # the content: one normalised map
    assert not torch.allclose(mlp(one_hot_domain(torch.tensor([0]), 2)), mlp(one_hot_domain(torch.tensor([1]), 2)))


def test_decoding_one_content_in_two_domains_changes_the_image(network):
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        content = network.encoder(x, torch.zeros(2, dtype=torch.long))
        zero = network.decoder(content, torch.zeros(2, dtype=torch.long))
        one = network.decoder(content, torch.ones(2, dtype=torch.long))
    assert (zero - one).abs().mean() > 1e-3


def test_the_discriminator_reads_each_image_s_own_domain():
    torch.manual_seed(0)
    critic = DomainPatchDiscriminator(1, num_domains=2, channels=8)
    x = torch.randn(4, 1, 32, 32)
    both = critic.patch(x)[-1]  # (B, 2, h, w): one map per domain
    domain = torch.tensor([0, 1, 1, 0])
    scores = critic(x, domain)
    assert scores.shape == (4, 1, *both.shape[2:])
    for i, d in enumerate(domain.tolist()):
        assert torch.equal(scores[i, 0], both[i, d])
    assert not torch.allclose(critic(x, 1 - domain), scores)


def test_gradients_reach_both_mlps_through_a_translation(network):
    model = StyleTransferNetwork(1, channels=C, n_res=N_RES, mlp_dim=32)
    model(torch.randn(2, 1, 32, 32)).mean().backward()
    assert model.encoder.mlp[0].weight.grad.abs().sum() > 0
    assert model.decoder.decoder.mlp[0].weight.grad.abs().sum() > 0


def test_the_translator_scripts_for_export(network):
    x = torch.randn(2, 1, 32, 32)
    scripted = torch.jit.script(network)
    with torch.no_grad():
        assert torch.allclose(scripted(x), network(x), atol=1e-6)


# ---- Stage 1's trainer -------------------------------------------------------------------------


class NoLabels(dict):
    """A batch that fails the test if the trainer reads any label (stage 1 needs images only)."""

    def __getitem__(self, key):
        if "label" in key:
            raise AssertionError(f"the trainer read {key}")
        return super().__getitem__(key)


def stage1_networks(seed=0):
    torch.manual_seed(seed)
    translator = StyleTransferNetwork(1, channels=4, n_sampling=2, n_res=1, mlp_dim=16)
    return {"G_E": translator.encoder, "G_D": translator.decoder, "D": DomainPatchDiscriminator(1, channels=4)}


def stage1_trainer(batches, nets, **kwargs):
    optimizers = {
        "generator": torch.optim.Adam(
            [*nets["G_E"].parameters(), *nets["G_D"].parameters()], 2e-4, betas=(0.5, 0.999), weight_decay=1e-4
        ),
        "discriminator": torch.optim.Adam(nets["D"].parameters(), 2e-4, betas=(0.5, 0.999), weight_decay=1e-4),
    }
    return StyleTransferTrainer("cpu", 1, batches, nets, optimizers, **kwargs)


def stage1_batch(seed=1):
    generator = torch.Generator().manual_seed(seed)
    return NoLabels(
        {
            "source_image": torch.rand(2, 1, 32, 32, generator=generator) * 2 - 1,
            "target_image": torch.rand(2, 1, 32, 32, generator=generator) * 2 - 1,
            "source_label": torch.zeros(2, 1, 32, 32),
            "target_label": torch.zeros(2, 1, 32, 32),
        }
    )


def test_stage1_losses_are_the_papers_terms_and_weights():
    """The logged losses recomputed from copies of the networks: 20 x image reconstruction, 20 x
    cycle, 1 x content reconstruction, 1 x LSGAN on the translations judged against the domain
    they were translated to; then D on real images and the translations, weight 1."""
    nets, data = stage1_networks(), stage1_batch()
    r = copy.deepcopy(nets)
    trainer = stage1_trainer([data], nets)
    trainer.run()
    values = trainer.state.output["loss"]
    x_s, x_t = data["source_image"], data["target_image"]
    zero, one = torch.zeros(2, dtype=torch.long), torch.ones(2, dtype=torch.long)
    with torch.no_grad():
        c_s, c_t = r["G_E"](x_s, zero), r["G_E"](x_t, one)
        x_st, x_ts = r["G_D"](c_s, one), r["G_D"](c_t, zero)
        c_st, c_ts = r["G_E"](x_st, one), r["G_E"](x_ts, zero)
        expected = {
            "image_S": 20 * (r["G_D"](c_s, zero) - x_s).abs().mean(),
            "image_T": 20 * (r["G_D"](c_t, one) - x_t).abs().mean(),
            "cycle_S": 20 * (r["G_D"](c_st, zero) - x_s).abs().mean(),
            "cycle_T": 20 * (r["G_D"](c_ts, one) - x_t).abs().mean(),
            "content_S": (c_st - c_s).abs().mean(),
            "content_T": (c_ts - c_t).abs().mean(),
            "adv_ST": ((r["D"](x_st, one) - 1) ** 2).mean(),
            "adv_TS": ((r["D"](x_ts, zero) - 1) ** 2).mean(),
        }
        d = (
            ((r["D"](x_s, zero) - 1) ** 2).mean()
            + ((r["D"](x_t, one) - 1) ** 2).mean()
            + (r["D"](x_ts, zero) ** 2).mean()
            + (r["D"](x_st, one) ** 2).mean()
        )
    for name, value in expected.items():
        assert values[name] == pytest.approx(float(value), rel=1e-4, abs=1e-6), name
    assert values["D"] == pytest.approx(float(d), rel=1e-4)
    # The weights are the trainer's: doubling one doubles its terms only.
    again = stage1_trainer([data], stage1_networks(), lambda_cycle=40.0)
    again.run()
    doubled = again.state.output["loss"]
    assert doubled["cycle_S"] == pytest.approx(2 * values["cycle_S"], rel=1e-4)
    assert doubled["image_S"] == pytest.approx(values["image_S"], rel=1e-4)


def test_stage1_steps_the_generator_with_d_frozen_then_d():
    nets = stage1_networks()
    trainer = stage1_trainer([stage1_batch()], nets)
    seen = {}
    step_g = trainer.optimizers["generator"].step

    def spy(*args, **kwargs):
        seen["d_grads"] = [p.grad for p in nets["D"].parameters()]
        seen["d_untouched"] = trainer.optimizers["discriminator"].state == {}
        return step_g(*args, **kwargs)

    trainer.optimizers["generator"].step = spy
    before = {n: copy.deepcopy(nets[n].state_dict()) for n in nets}
    trainer.run()
    assert all(g is None for g in seen["d_grads"]) and seen["d_untouched"]
    for name in nets:  # each network changed, by its own step
        assert any(not torch.equal(before[name][k], v) for k, v in nets[name].state_dict().items()), name
    with pytest.raises(ValueError, match="Unknown"):
        stage1_trainer([stage1_batch()], stage1_networks(), adversarial_criterion="wgan")


# ---- Stage 2's networks and the local feature mask -------------------------------------------------


def small_segmenter() -> DeepLabSegmenter:
    torch.manual_seed(0)
    return DeepLabSegmenter(1, 5, layers=(1, 1, 1, 1), block_inplanes=(8, 16, 32, 64), aspp_channels=16)


def test_deeplab_is_a_dilated_resnet_at_output_stride_8():
    segmenter = small_segmenter()
    x = torch.randn(2, 1, 64, 64)
    features = segmenter.features(x)
    assert features.shape == (2, 4 * 64, 8, 8) and segmenter.features.out_channels == 256
    assert segmenter(x).shape == (2, 5, 64, 64)
    for stage, dilation in ((segmenter.features.stages[2], 2), (segmenter.features.stages[3], 4)):
        convs = [m for m in stage.modules() if isinstance(m, torch.nn.Conv2d)]
        assert all(c.stride == (1, 1) for c in convs)  # strides replaced by dilation
        assert {c.dilation for c in convs if c.kernel_size == (3, 3)} == {(dilation, dilation)}
    full = DeepLabSegmenter(1, 5)  # ResNet50: 3 + 4 + 6 + 3 bottlenecks, 2048 feature channels
    assert full.features.out_channels == 2048
    assert sum(1 for m in full.features.modules() if type(m).__name__ == "ResNetBottleneck") == 16
    scripted = torch.jit.script(segmenter.eval())
    with torch.no_grad():
        assert torch.allclose(scripted(x), segmenter(x), atol=1e-5)


def test_output_stride_4_leaves_out_the_max_pooling_and_upsamples_by_4():
    torch.manual_seed(0)
    segmenter = DeepLabSegmenter(1, 5, (1, 1, 1, 1), (8, 16, 32, 64), 16, output_stride=4)
    x = torch.randn(2, 1, 64, 64)
    assert segmenter.features(x).shape == (2, 256, 16, 16) and segmenter(x).shape == (2, 5, 64, 64)
    assert not any(isinstance(m, torch.nn.MaxPool2d) for m in segmenter.modules())
    assert any(isinstance(m, torch.nn.MaxPool2d) for m in small_segmenter().modules())
    with pytest.raises(ValueError, match="output_stride 16; expected 8"):
        DeepLabSegmenter(output_stride=16)


def test_the_pixel_discriminator_scores_every_feature_location():
    features = small_segmenter().features(torch.randn(2, 1, 64, 64))
    assert PixelDiscriminator(256, 32)(features).shape == (2, 1, 8, 8)


def test_the_local_mask_is_the_normalised_entropy_of_d1_in_0_1_without_gradients():
    logits = torch.linspace(-30, 30, 61).view(1, 1, 1, 61).requires_grad_(True)
    mask = local_feature_mask(logits)
    assert mask.shape == logits.shape and not mask.requires_grad
    assert float(mask.min()) >= 0 and float(mask.max()) <= 1
    assert float(mask[..., 30]) == pytest.approx(1.0)  # p = 0.5: D1 cannot tell, entropy log 2
    assert float(mask[..., 0]) < 1e-9 and float(mask[..., -1]) < 1e-9  # D1 certain either way
    p = torch.sigmoid(logits[..., 20].detach().double())  # the reference in float64
    expected = -(p * p.log() + (1 - p) * (1 - p).log()) / math.log(2)
    assert float(mask[..., 20]) == pytest.approx(float(expected), rel=1e-5)
    assert torch.allclose(mask, mask.flip(-1))  # symmetric in the two domains
    assert torch.allclose(local_feature_mask(logits, "certainty"), 1 - mask)
    with pytest.raises(ValueError, match="Unknown local mask 'attention'; expected one of entropy, certainty"):
        local_feature_mask(logits, "attention")


# ---- Stage 2's trainer -----------------------------------------------------------------------------


class NoTargetLabels(dict):
    """A batch that fails the test if the trainer reads a target label."""

    def __getitem__(self, key):
        if key.startswith("target_label"):
            raise AssertionError("the trainer read a target label")
        return super().__getitem__(key)


def stage2_networks(seed=0, d1=True, d2=True):
    segmenter = small_segmenter()
    torch.manual_seed(seed)
    nets = {"S_E": segmenter.features, "S_P": segmenter.predictor}
    if d1:
        nets["D1"] = PixelDiscriminator(256, 16)
    if d2:
        nets["D2"] = OutputDiscriminator(5, channels=8)
    return nets


def stage2_trainer(batches, nets, **kwargs):
    optimizers = {
        "segmenter": torch.optim.SGD(
            [*nets["S_E"].parameters(), *nets["S_P"].parameters()], 1e-3, momentum=0.9, weight_decay=5e-4
        )
    }
    discriminators = [p for n in ("D1", "D2") if n in nets for p in nets[n].parameters()]
    if discriminators:
        optimizers["discriminators"] = torch.optim.Adam(discriminators, 1e-4, betas=(0.9, 0.99))
    return LocalAlignmentTrainer("cpu", 1, batches, nets, optimizers, **kwargs)


def stage2_batch(seed=2):
    generator = torch.Generator().manual_seed(seed)
    return NoTargetLabels(
        {
            "source_image": torch.rand(2, 1, 64, 64, generator=generator) * 2 - 1,
            "source_label": torch.randint(0, 5, (2, 1, 64, 64), generator=generator).float(),
            "target_image": torch.rand(2, 1, 64, 64, generator=generator) * 2 - 1,
            "target_label": torch.zeros(2, 1, 64, 64),
        }
    )


@pytest.mark.parametrize("mask", ["entropy", "certainty", "none"])
def test_stage2_losses_follow_the_reconstruction(mask):
    """Recomputed from copies: cross entropy on the translated source; D1's local adversarial
    loss weighted by 1 + M with M from D1 on the target features; the target prediction from
    the re-weighted features; D2 on its softmax; both weighted 0.01; then D1 and D2 on
    source (0) and target (1)."""
    nets = stage2_networks()
    reference = copy.deepcopy(nets)
    torch.manual_seed(3)
    translator = StyleTransferNetwork(1, channels=4, n_res=1, mlp_dim=8).eval()
    data = stage2_batch()
    trainer = stage2_trainer([data], nets, translator=copy.deepcopy(translator), local_mask=mask)
    trainer.run()
    values = trainer.state.output["loss"]
    r, bce = reference, torch.nn.functional.binary_cross_entropy_with_logits
    with torch.no_grad():
        x_st = translator(data["source_image"])
        f_s, f_t = r["S_E"](x_st), r["S_E"](data["target_image"])
        p_s = r["S_P"](f_s)
        d1 = r["D1"](f_t)
        m = torch.zeros_like(d1) if mask == "none" else local_feature_mask(d1, mask)
        p_t = r["S_P"](f_t * (1 + m))
        d2 = r["D2"](p_t.softmax(1))
        expected = {
            "seg": torch.nn.functional.cross_entropy(p_s, data["source_label"][:, 0].long()),
            "adv_D1": 0.01 * bce(d1, torch.zeros_like(d1), weight=1 + m),
            "adv_D2": 0.01 * bce(d2, torch.zeros_like(d2)),
        }
    for name, value in expected.items():
        assert values[name] == pytest.approx(float(value), rel=1e-4, abs=1e-7), name
    if mask != "none":
        assert float(m.std()) > 0  # the mask varies over locations: the weighting is exercised
    assert "D1" in values and "D2" in values


def test_stage2_steps_the_segmenter_with_the_discriminators_frozen_and_never_the_translator():
    nets = stage2_networks()
    translator = StyleTransferNetwork(1, channels=4, n_res=1, mlp_dim=8)
    frozen = copy.deepcopy(translator.state_dict())
    trainer = stage2_trainer([stage2_batch()], nets, translator=translator)
    assert all(p.requires_grad for p in translator.parameters())  # stage 1 may still train it
    seen = {}
    step = trainer.optimizers["segmenter"].step

    def spy(*args, **kwargs):
        seen["d_grads"] = [p.grad for n in ("D1", "D2") for p in nets[n].parameters()]
        seen["d_untouched"] = trainer.optimizers["discriminators"].state == {}
        return step(*args, **kwargs)

    trainer.optimizers["segmenter"].step = spy
    before = {n: copy.deepcopy(nets[n].state_dict()) for n in nets}
    trainer.run()
    assert all(g is None for g in seen["d_grads"]) and seen["d_untouched"]
    for name in nets:
        assert any(not torch.equal(before[name][k], v) for k, v in nets[name].state_dict().items()), name
    assert all(torch.equal(frozen[k], v) for k, v in translator.state_dict().items())


@pytest.mark.parametrize("d1, d2", [(True, False), (False, True), (False, False)])
def test_stage2_ablations_leave_out_a_discriminator_and_its_terms(d1, d2):
    nets = stage2_networks(d1=d1, d2=d2)
    trainer = stage2_trainer([stage2_batch()], nets)
    trainer.run()
    values = trainer.state.output["loss"]
    assert ("adv_D1" in values, "D1" in values) == (d1, d1)
    assert ("adv_D2" in values, "D2" in values) == (d2, d2)
    mask = trainer.state.output["images"]["mask"]
    assert torch.all(mask == -1) != d1  # no D1: no mask (shown as -1, i.e. 0)
    with pytest.raises(ValueError, match="Unknown local_mask 'soft'"):
        stage2_trainer([stage2_batch()], stage2_networks(d2=False), local_mask="soft")


@pytest.mark.parametrize("mask", ["entropy", "certainty"])
def test_the_target_segmenter_applies_the_mask_as_training_does(mask):
    nets = stage2_networks(d2=False)
    served = LocallyMaskedSegmenter(nets["S_E"], nets["S_P"], nets["D1"], mask).eval()
    x = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        f = nets["S_E"](x)
        expected = nets["S_P"](reweight_features(f, local_feature_mask(nets["D1"](f), mask)))
        assert torch.allclose(served(x), expected, atol=1e-6)
        assert torch.allclose(torch.jit.script(served)(x), expected, atol=1e-5)
    with pytest.raises(ValueError, match="Unknown local mask 'none'"):
        LocallyMaskedSegmenter(nets["S_E"], nets["S_P"], nets["D1"], "none")
