"""Image grids of an iteration's images for TensorBoard (and a PNG on disk).

MONAI's ``TensorBoardImageHandler`` shows one image per tag; a translation is read by putting
the real image, its translation and its reconstruction side by side, hence this handler.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from ignite.engine import Engine, Events
from PIL import Image
from torch.utils.tensorboard import SummaryWriter

__all__ = ["ImageGridHandler", "image_grid"]


def image_grid(images: dict[str, torch.Tensor], rows: Sequence[Sequence[str]]) -> np.ndarray:
    """The first sample of each named batch, arranged in rows, as an RGB array in [0, 1].

    Args:
        images: batches ``(B, C, H, W)`` in [-1, 1] (C = 1 or 3), all of one spatial size.
        rows: the names shown in each row, left to right.

    Returns:
        ``(3, rows * W, columns * H)``: each image is shown with its first spatial axis
        horizontal, as MONAI loads PNGs and as NIfTI viewers show axial slices.
    """

    def tile(name: str) -> np.ndarray:
        image = images[name][0].detach().float().cpu().numpy()
        image = np.clip((image + 1) / 2, 0, 1).transpose(0, 2, 1)
        return np.repeat(image, 3, axis=0) if image.shape[0] == 1 else image[:3]

    columns = max(len(row) for row in rows)
    blank = np.zeros_like(tile(rows[0][0]))
    lines = [np.concatenate([tile(n) for n in row] + [blank] * (columns - len(row)), axis=2) for row in rows]
    return np.concatenate(lines, axis=1)


class ImageGridHandler:
    """Every ``interval`` iterations, writes a grid of ``engine.state.output["images"]``.

    Args:
        rows: the image names per row, e.g. ``[["real_A", "fake_B", "rec_A"], ["real_B", "fake_A", "rec_B"]]``
            (``None``: the trainer's declared rows, its ``grid_rows()``).
        log_dir: TensorBoard folder (``None``: no TensorBoard).
        output_dir: folder for ``images_latest.png`` (``None``: no PNG).
        interval: iterations between grids.
        tag: the TensorBoard tag.
    """

    def __init__(
        self,
        rows: Sequence[Sequence[str]] | None = None,
        log_dir: str | None = None,
        output_dir: str | None = None,
        interval: int = 100,
        tag: str = "images",
    ) -> None:
        self.rows, self.interval, self.tag = rows, interval, tag
        self.writer = SummaryWriter(log_dir) if log_dir else None
        self.output_dir = Path(output_dir) if output_dir else None

    def attach(self, engine: Engine) -> None:
        """Registers the handler on ``engine``.

        Args:
            engine: a trainer whose output has ``"images"`` (and, without ``rows``, ``grid_rows()``).
        """
        engine.add_event_handler(Events.ITERATION_COMPLETED(every=self.interval), self)

    def __call__(self, engine: Engine) -> None:
        """Writes the grid of the current iteration.

        Args:
            engine: the trainer.
        """
        grid = image_grid(engine.state.output["images"], self.rows or engine.grid_rows())
        if self.writer is not None:
            self.writer.add_image(self.tag, grid, engine.state.iteration, dataformats="CHW")
            self.writer.flush()
        if self.output_dir is not None:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            pixels = np.round(grid.transpose(1, 2, 0) * 255).astype(np.uint8)
            Image.fromarray(pixels).save(self.output_dir / "images_latest.png")
