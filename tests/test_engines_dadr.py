"""DADR's networks and trainer: shapes, AdaIN (style sets the statistics, content the
structure), the content-only image's neutral styles, the loss weights and the swapped style
code of eq. 3, the update order, and that target labels are never read."""

from __future__ import annotations

import copy

import pytest
import torch
from monai.networks.nets import BasicUNet

from common.engines import DADRTrainer
from common.networks import (
    AdaINDecoder,
    ContentOnlyImage,
    DisentangledContentEncoder,
    MultiScaleDiscriminator,
    StyleEncoder,
    TranslateThenSegment,
)

SIZE = 16


class NoTargetLabels(dict):
    """A batch that fails the test if anything reads a target label."""

    def __getitem__(self, key):
        if key.startswith("target_label"):
            raise AssertionError("the trainer read a target label")
        return super().__getitem__(key)


def networks(seed=0):
    torch.manual_seed(seed)
    return {
        "Ec_A": DisentangledContentEncoder(1, 4, n_downsampling=2, n_res=1),
        "Es_A": StyleEncoder(1, 4, n_downsampling=2, style_dim=8),
        "G_A": AdaINDecoder(1, 16, n_upsampling=2, n_res=1, style_dim=8, mlp_dim=16),
        "Ec_B": DisentangledContentEncoder(1, 4, n_downsampling=2, n_res=1),
        "Es_B": StyleEncoder(1, 4, n_downsampling=2, style_dim=8),
        "G_B": AdaINDecoder(1, 16, n_upsampling=2, n_res=1, style_dim=8, mlp_dim=16),
        "D_A": MultiScaleDiscriminator(1, 4, num_layers=2, num_scales=2),
        "D_B": MultiScaleDiscriminator(1, 4, num_layers=2, num_scales=2),
    }


def make_trainer(batches, nets=None, **kwargs):
    nets = nets or networks()
    generators = [p for n in ("Ec_A", "Es_A", "G_A", "Ec_B", "Es_B", "G_B") for p in nets[n].parameters()]
    discriminators = [p for n in ("D_A", "D_B") for p in nets[n].parameters()]
    optimizers = {
        "generators": torch.optim.Adam(generators, 1e-4, betas=(0.5, 0.999), weight_decay=1e-4),
        "discriminators": torch.optim.Adam(discriminators, 1e-4, betas=(0.5, 0.999), weight_decay=1e-4),
    }
    return DADRTrainer("cpu", 1, batches, nets, optimizers, **kwargs)


def batch(seed=1):
    generator = torch.Generator().manual_seed(seed)
    return NoTargetLabels(
        {
            "source_image": torch.rand(2, 1, SIZE, SIZE, generator=generator) * 2 - 1,
            "target_image": torch.rand(2, 1, SIZE, SIZE, generator=generator) * 2 - 1,
            "target_label": torch.zeros(2, 1, SIZE, SIZE),
        }
    )


def test_shapes_follow_munit():
    x = torch.rand(2, 1, 64, 64)
    encoder = DisentangledContentEncoder(1, 16, n_downsampling=2, n_res=2)
    content = encoder(x)
    assert content.shape == (2, 64, 16, 16) and encoder.out_channels == 64  # 4 x channels at 1/4 size
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in encoder.modules()) == 3 + 2 * 2  # DADR: batch norm
    style_encoder = StyleEncoder(1, 16, n_downsampling=4, style_dim=8)
    assert style_encoder(x).shape == (2, 8)
    assert not any(isinstance(m, (torch.nn.BatchNorm2d, torch.nn.InstanceNorm2d)) for m in style_encoder.modules())
    decoder = AdaINDecoder(1, 64, n_upsampling=2, n_res=2, style_dim=8, mlp_dim=32)
    image = decoder(content, torch.randn(2, 8))
    assert image.shape == x.shape and image.abs().max() <= 1
    assert decoder.mlp[-1].out_features == 2 * 2 * 2 * 64  # per block: two AdaIN layers' scales and biases
    outputs = MultiScaleDiscriminator(1, 8, num_layers=2, num_scales=3)(x)
    assert [tuple(o.shape) for o in outputs] == [(2, 1, 16, 16), (2, 1, 8, 8), (2, 1, 4, 4)]
    with pytest.raises(ValueError, match="too small for 3 scales of 4 stride-2 layers"):
        MultiScaleDiscriminator(1, 8, num_layers=4, num_scales=3)(torch.rand(1, 1, 32, 32))


def test_adain_sets_the_statistics_and_keeps_the_structure():
    """AdaIN: the style's bias and scale become each channel's mean and standard deviation, and
    the content's normalised spatial pattern is kept whatever the style (up to the sign of the scale)."""
    torch.manual_seed(0)
    block = AdaINDecoder(1, 8, n_upsampling=0, n_res=1, style_dim=4, mlp_dim=8).blocks[0]
    features = torch.randn(3, 8, 12, 12) * 5 + 2
    bias, scale = torch.randn(3, 8), torch.rand(3, 8) + 0.5
    out = block.adain(features, torch.cat([bias, scale], dim=1))
    torch.testing.assert_close(out.mean(dim=(2, 3)), bias, atol=1e-5, rtol=0)
    torch.testing.assert_close(out.std(dim=(2, 3), unbiased=False), scale, atol=1e-3, rtol=1e-3)
    normalised = (features - features.mean((2, 3), keepdim=True)) / features.std((2, 3), unbiased=False, keepdim=True)
    torch.testing.assert_close((out - bias[..., None, None]) / scale[..., None, None], normalised, atol=1e-3, rtol=1e-3)
    torch.testing.assert_close(block.adain(features, None), normalised, atol=1e-3, rtol=1e-3)  # no style: plain IN


def test_the_style_code_reaches_the_decoded_intensities():
    """Through the whole decoder (MLP, AdaIN blocks, upsampling): sixteen style codes give one
    content code sixteen different intensity levels; one code decodes two contents differently.
    (That the style keeps the structure is AdaIN's property, tested exactly above; separating
    what is style from what is content is what training does.)"""
    torch.manual_seed(0)
    decoder = AdaINDecoder(1, 16, n_upsampling=2, n_res=2, style_dim=8, mlp_dim=32)
    content = torch.randn(1, 16, 4, 4)
    with torch.no_grad():
        styled = decoder(content.expand(16, -1, -1, -1), torch.randn(16, 8))
        two = decoder(torch.randn(2, 16, 4, 4), torch.randn(1, 8).expand(2, -1))
    assert styled.mean(dim=(1, 2, 3)).std() > 0.03
    assert (two[0] - two[1]).abs().mean() > 0.05


def test_style_encoder_tracks_the_mean_code_of_real_images_only():
    encoder = StyleEncoder(1, 4, n_downsampling=2, style_dim=8, momentum=0.5)
    x = torch.rand(4, 1, SIZE, SIZE)
    codes = encoder(x)
    torch.testing.assert_close(encoder.style_mean, 0.5 * codes.detach().mean(0))
    before = encoder.style_mean.clone()
    encoder(torch.rand(4, 1, SIZE, SIZE), track=False)  # a generated image
    encoder.eval()
    encoder(torch.rand(4, 1, SIZE, SIZE))  # evaluation
    torch.testing.assert_close(encoder.style_mean, before)


@pytest.mark.parametrize("neutral", ["identity", "zero", "mean"])
def test_content_only_images_decode_the_content_with_a_neutral_style(neutral):
    nets = networks()
    x = torch.rand(2, 1, 32, 32) * 2 - 1  # the U-Net pools 4 times
    nets["Es_A"](x)
    nets["Es_B"](x.flip(-1))  # two different running means
    render = ContentOnlyImage(nets["Ec_B"], nets["G_A"], neutral, [nets["Es_A"], nets["Es_B"]]).eval()
    content = nets["Ec_B"].eval()(x)
    style = {
        "identity": None,
        "zero": torch.zeros(2, 8),
        "mean": ((nets["Es_A"].style_mean + nets["Es_B"].style_mean) / 2).expand(2, -1),
    }[neutral]
    with torch.no_grad():
        torch.testing.assert_close(render(x), nets["G_A"](content, style))
    # The release network (content-only image then U-Net) exports to TorchScript and carries the mean code.
    pipeline = TranslateThenSegment(render, BasicUNet(2, 1, 3, features=(4, 4, 8, 8, 16, 4))).eval()
    torch.testing.assert_close(torch.jit.script(pipeline)(x), pipeline(x))
    served = TranslateThenSegment(ContentOnlyImage(nets["Ec_B"], nets["G_A"], neutral), pipeline.segmenter).eval()
    served.load_state_dict(pipeline.state_dict())  # no style encoders at inference: the buffer has the code
    torch.testing.assert_close(served(x), pipeline(x))
    with pytest.raises(ValueError, match="Unknown neutral_style 'none'"):
        ContentOnlyImage(nets["Ec_B"], nets["G_A"], "none")


@pytest.mark.parametrize("style_source", ["swapped", "sampled"])
def test_losses_are_eq_1_to_4_with_the_papers_weights(style_source):
    """The logged losses, recomputed from copies of the networks: 25 x in-domain reconstruction,
    10 x the generators' LSGAN loss over every scale on x_AB = G_B(c_A, t_B) and x_BA, 0.1 x content
    and style reconstruction; t_B = Es_B(x_B) (swapped) or drawn from N(0, I) (sampled);
    then the discriminators' LSGAN loss on real images and the translations, weighted 10."""
    nets = networks()
    reference = copy.deepcopy(nets)
    data = batch()
    trainer = make_trainer([data], nets, style_source=style_source)
    torch.manual_seed(5)
    trainer.run()
    values = trainer.state.output["loss"]

    r = reference
    real_a, real_b = data["source_image"], data["target_image"]
    torch.manual_seed(5)
    with torch.no_grad():
        c_a, s_a, c_b, s_b = r["Ec_A"](real_a), r["Es_A"](real_a), r["Ec_B"](real_b), r["Es_B"](real_b)
        t_a, t_b = (s_a, s_b) if style_source == "swapped" else (torch.randn_like(s_a), torch.randn_like(s_b))
        fake_b, fake_a = r["G_B"](c_a, t_b), r["G_A"](c_b, t_a)

        def lsgan(outputs, target):
            return sum(((o - target) ** 2).mean() for o in outputs)

        expected = {
            "recon_A": 25 * (r["G_A"](c_a, s_a) - real_a).abs().mean(),
            "recon_B": 25 * (r["G_B"](c_b, s_b) - real_b).abs().mean(),
            "adv_AB": 10 * lsgan(r["D_B"](fake_b), 1),
            "adv_BA": 10 * lsgan(r["D_A"](fake_a), 1),
            "content_A": 0.1 * (r["Ec_B"](fake_b) - c_a).abs().mean(),
            "content_B": 0.1 * (r["Ec_A"](fake_a) - c_b).abs().mean(),
            "style_A": 0.1 * (r["Es_A"](fake_a) - t_a).abs().mean(),
            "style_B": 0.1 * (r["Es_B"](fake_b) - t_b).abs().mean(),
        }
    for name, value in expected.items():
        assert values[name] == pytest.approx(float(value), rel=1e-4, abs=1e-6), name
    # The discriminators score this iteration's translations, detached (no image pool, as MUNIT).
    images = trainer.state.output["images"]
    torch.testing.assert_close(images["fake_B"], fake_b, atol=1e-5, rtol=1e-4)
    with torch.no_grad():
        d_b = 10 * (lsgan(r["D_B"](real_b), 1) + lsgan(r["D_B"](fake_b), 0))
    assert values["D_B"] == pytest.approx(float(d_b), rel=1e-4)


def test_swapped_styles_are_the_other_images_codes_and_sampled_ones_are_not():
    nets = networks()
    seen = []
    decode = nets["G_B"].forward

    def spy(content, style):
        seen.append(style.detach().clone())
        return decode(content, style)

    nets["G_B"].forward = spy
    data = batch()
    make_trainer([data], nets, style_source="swapped").run()
    with torch.no_grad():
        s_b = networks()["Es_B"](data["target_image"])  # x_B's code, by the same initial weights
    # G_B decodes x_B's own code twice: the in-domain reconstruction and the translation x_AB.
    assert len(seen) == 2 and all(torch.allclose(s, s_b, atol=1e-6) for s in seen)
    nets = networks()
    seen.clear()
    decode = nets["G_B"].forward
    nets["G_B"].forward = spy
    make_trainer([data], nets, style_source="sampled").run()
    assert torch.allclose(seen[0], s_b, atol=1e-6) and not torch.allclose(seen[1], s_b, atol=1e-2)


def test_update_order_and_frozen_discriminators():
    nets = networks()
    trainer = make_trainer([batch()], nets)
    seen = {}
    step_g = trainer.optimizers["generators"].step

    def spy(*args, **kwargs):
        seen["d_grads"] = [p.grad for n in ("D_A", "D_B") for p in nets[n].parameters()]
        seen["d_steps"] = trainer.optimizers["discriminators"].state == {}
        return step_g(*args, **kwargs)

    trainer.optimizers["generators"].step = spy
    before = {n: copy.deepcopy(nets[n].state_dict()) for n in nets}
    trainer.run()
    assert all(g is None for g in seen["d_grads"]) and seen["d_steps"]  # generators first, D frozen
    for name in nets:  # every network was updated once
        assert any(not torch.equal(before[name][k], v) for k, v in nets[name].state_dict().items()), name


def test_unknown_style_source():
    with pytest.raises(ValueError, match="Unknown style_source 'random'"):
        make_trainer([batch()], style_source="random")
