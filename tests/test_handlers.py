"""Image pool, learning-rate schedule and image grids."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from ignite.engine import Engine
from PIL import Image

from common.handlers import ImageGridHandler, ImagePool, image_grid, linear_decay


def test_image_pool_fills_then_swaps_half_the_time():
    torch.manual_seed(0)
    pool = ImagePool(size=4)
    first = torch.arange(4.0).reshape(4, 1)
    assert torch.equal(pool.query(first), first)  # filling: returned as given
    returned_old = 0
    for step in range(200):
        new = torch.full((1, 1), 100.0 + step)
        out = pool.query(new)
        returned_old += int(out.item() != new.item())
        assert len(pool.images) == 4
    assert 70 < returned_old < 130  # about half of the queries return a stored image
    assert torch.equal(ImagePool(0).query(first), first)
    state = pool.state_dict()
    restored = ImagePool(1)
    restored.load_state_dict(state)
    assert restored.size == 4 and all(torch.equal(a, b) for a, b in zip(restored.images, pool.images, strict=True))
    with pytest.raises(ValueError, match="`size` must be non-negative"):
        ImagePool(-1)


def test_linear_decay_matches_cyclegan():
    optimiser = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    scheduler = linear_decay(optimiser, constant_epochs=3, decay_epochs=4)
    rates = []
    for _ in range(7):
        rates.append(optimiser.param_groups[0]["lr"])
        optimiser.step()
        scheduler.step()
    np.testing.assert_allclose(rates, [1, 1, 1, 0.8, 0.6, 0.4, 0.2])
    with pytest.raises(ValueError, match="non-negative"):
        linear_decay(optimiser, -1, 2)


def test_image_grid_layout():
    images = {
        "a": torch.full((2, 1, 4, 6), -1.0),
        "b": torch.full((2, 1, 4, 6), 1.0),
        "c": torch.zeros(2, 3, 4, 6),
    }
    grid = image_grid(images, [["a", "b"], ["c"]])
    assert grid.shape == (3, 2 * 6, 2 * 4)  # rows of W, columns of H: first spatial axis horizontal
    assert grid[:, :6, :4].max() == 0 and grid[:, :6, 4:].min() == 1
    np.testing.assert_allclose(grid[:, 6:, :4], 0.5)
    assert grid[:, 6:, 4:].max() == 0  # the missing panel is blank


def test_image_grid_handler_writes_png_and_tensorboard(tmp_path):
    engine = Engine(lambda e, b: {"images": {"x": torch.rand(1, 1, 8, 8) * 2 - 1}})
    handler = ImageGridHandler([["x"]], log_dir=str(tmp_path / "tb"), output_dir=str(tmp_path), interval=2)
    handler.attach(engine)
    engine.run([0] * 4, max_epochs=1)
    png = np.asarray(Image.open(tmp_path / "images_latest.png"))
    assert png.shape == (8, 8, 3) and png.std() > 0
    assert any(name.startswith("events.out.tfevents") for name in os.listdir(tmp_path / "tb"))
