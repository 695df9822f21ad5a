"""SynthMix's grid mask, the CutMix and Mixup masks, the mix and the Inspector's target map."""

from __future__ import annotations

import pytest
import torch

from common.data.mixing import MixMode, box_mask, constant_mask, domain_map, draw_ratios, grid_mask, make_mask, mix


@pytest.mark.parametrize("k", [4, 8, 32])
def test_grid_mask_occupancy_and_alignment(k):
    ratios = torch.tensor([0.0, 0.3, 0.5, 1.0])
    mask = grid_mask(ratios, k, 64, torch.Generator().manual_seed(0))
    assert mask.shape == (4, 1, 64, 64) and set(mask.unique().tolist()) <= {0.0, 1.0}
    cells = domain_map(mask, k)
    # Constant within every cell (each cell's mean is 0 or 1) ...
    assert set(cells.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(cells.repeat_interleave(64 // k, 2).repeat_interleave(64 // k, 3), mask)
    # ... with round(ratio * k^2) target cells.
    counts = cells.flatten(1).sum(1)
    assert counts.tolist() == [round(r * k * k) for r in ratios.tolist()]


def test_grid_mask_is_random_and_reproducible():
    ratios = torch.full((2,), 0.5)
    first = grid_mask(ratios, 8, 32, torch.Generator().manual_seed(1))
    assert torch.equal(first, grid_mask(ratios, 8, 32, torch.Generator().manual_seed(1)))
    assert not torch.equal(first[0], first[1])  # every sample its own cells
    # Over many masks, every cell is drawn about as often (uniform choice of cells).
    many = grid_mask(torch.full((400,), 0.25), 4, 8, torch.Generator().manual_seed(2))
    frequency = domain_map(many, 4).mean(0).flatten()
    assert frequency.min() > 0.15 and frequency.max() < 0.35


def test_box_and_constant_masks():
    ratios = torch.tensor([0.25, 1.0, 0.0])
    box = box_mask(ratios, 64, torch.Generator().manual_seed(0))
    assert box.flatten(1).mean(1).tolist() == [0.25, 1.0, 0.0]
    rows = box[0, 0].any(1).nonzero().flatten()
    assert rows.max() - rows.min() + 1 == 32  # one 32 x 32 box
    constant = constant_mask(torch.tensor([0.2, 0.7]), (8, 16))
    assert constant.shape == (2, 1, 8, 16) and torch.allclose(constant[:, 0, 0, 0], torch.tensor([0.2, 0.7]))
    assert make_mask(MixMode.MIXUP, torch.tensor([0.5]), 8).unique().tolist() == [0.5]
    assert make_mask("cutmix", torch.tensor([1.0]), 8).min() == 1


def test_mix_takes_target_where_the_mask_is_one():
    source, target = torch.zeros(2, 3, 16, 16), torch.ones(2, 3, 16, 16)
    mask = grid_mask(torch.tensor([0.5, 0.25]), 4, 16, torch.Generator().manual_seed(0))
    mixed = mix(source, target, mask)
    assert torch.equal(mixed, mask.expand(-1, 3, -1, -1))
    assert torch.allclose(
        mix(source, target, constant_mask(torch.tensor([0.3, 0.3]), 16)), torch.full_like(source, 0.3)
    )


def test_ratios():
    uniform = draw_ratios(2000, generator=torch.Generator().manual_seed(0))
    assert 0.45 < uniform.mean() < 0.55 and uniform.min() >= 0 and uniform.max() <= 1
    beta = draw_ratios(4000, alpha=0.2, generator=torch.Generator().manual_seed(0))
    assert ((beta < 0.1) | (beta > 0.9)).float().mean() > 0.5  # Beta(0.2, 0.2) piles up at 0 and 1
    assert torch.equal(beta, draw_ratios(4000, alpha=0.2, generator=torch.Generator().manual_seed(0)))


def test_bad_requests_are_named():
    with pytest.raises(ValueError, match=r"must be divisible into k x k cells; got k=6"):
        grid_mask(torch.tensor([0.5]), 6, 64)
    with pytest.raises(ValueError, match=r"Occupancy ratios must be a non-empty 1D tensor in \[0, 1\]"):
        grid_mask(torch.tensor([1.5]), 8, 64)
    with pytest.raises(ValueError, match="alpha must be positive"):
        draw_ratios(2, alpha=0.0)
    with pytest.raises(ValueError, match="Unknown mix mode 'synthmixx'"):
        make_mask("synthmixx", torch.tensor([0.5]), 8)
