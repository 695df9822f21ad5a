"""SynthMix's Mixup Inspector: a k x k map of domain logits and a target-fraction logit."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from common.networks import MixupInspector


@pytest.mark.parametrize("k, decoder_layers", [(4, 0), (8, 1), (32, 3)])
def test_inspector_maps_an_image_to_k_by_k_cells(k, decoder_layers):
    inspector = MixupInspector(1, 64, k=k, channels=8)
    cells, fraction = inspector(torch.rand(2, 1, 64, 64))
    assert cells.shape == (2, 1, k, k) and fraction.shape == (2, 1)
    assert sum(isinstance(m, nn.ConvTranspose2d) for m in inspector.decoder) == decoder_layers
    assert sum(isinstance(m, nn.Conv2d) for m in inspector.encoder) == 4  # 64 px down to the 4 x 4 bottleneck


def test_inspector_learns_a_mix_map():
    """Trained a few steps on one SynthMix of constant images, its map moves towards the mask."""
    from common.data.mixing import domain_map, grid_mask, mix

    torch.manual_seed(0)
    inspector = MixupInspector(1, 32, k=4, channels=8)
    mask = grid_mask(torch.tensor([0.5]), 4, 32, torch.Generator().manual_seed(0))
    x = mix(torch.full((1, 1, 32, 32), -1.0), torch.full((1, 1, 32, 32), 1.0), mask)
    target = domain_map(mask, 4)
    optimiser = torch.optim.Adam(inspector.parameters(), 1e-3)
    for _ in range(60):
        cells, fraction = inspector(x)
        loss = nn.functional.binary_cross_entropy_with_logits(cells, target)
        loss = loss + nn.functional.binary_cross_entropy_with_logits(fraction, target.mean((2, 3)))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    cells, fraction = inspector(x)
    assert ((cells > 0).float() == target).all()
    assert abs(torch.sigmoid(fraction).item() - 0.5) < 0.1


def test_bad_sizes_are_named():
    with pytest.raises(ValueError, match="power of two for k"):
        MixupInspector(1, 64, k=6)
    with pytest.raises(ValueError, match="bottleneck <= k <= image_size"):
        MixupInspector(1, 64, k=2)
    with pytest.raises(ValueError, match="built for 64 x 64 images"):
        MixupInspector(1, 64)(torch.rand(1, 1, 32, 32))
