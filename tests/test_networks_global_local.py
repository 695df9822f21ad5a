"""The style-transfer subnet of global-local alignment: the domain label conditions the encoder and
the decoder through AdaIN (per-channel style statistics change, the normalised content does not),
the domain-conditional PatchGAN reads the image's own domain, and the translator scripts."""

from __future__ import annotations

import pytest
import torch

from common.networks import DomainPatchDiscriminator, StyleTransferNetwork, one_hot_domain

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
