"""The image pool of Shrivastava et al. (2017), as CycleGAN uses it: discriminators see a mix
of current and earlier fakes, which damps oscillation. MONAI has none."""

from __future__ import annotations

import torch

__all__ = ["ImagePool"]


class ImagePool:
    """A buffer of up to ``size`` generated images.

    :meth:`query` returns, for each image of a batch: the image itself while the pool is
    filling; afterwards, with probability 1/2 a stored image (which the new one replaces),
    otherwise the new image. Random draws use torch's global generator (``set_determinism``).

    Args:
        size: capacity; 0 disables the pool (``query`` returns its input).

    Raises:
        ValueError: a negative size.
    """

    def __init__(self, size: int = 50) -> None:
        if size < 0:
            raise ValueError(f"`size` must be non-negative, got {size}.")
        self.size = size
        self.images: list[torch.Tensor] = []

    def query(self, images: torch.Tensor) -> torch.Tensor:
        """Swaps images of the batch with stored ones, detached.

        Args:
            images: a batch ``(B, ...)``.

        Returns:
            A batch of the same shape.
        """
        images = images.detach()
        if self.size == 0:
            return images
        out = []
        for image in images:
            if len(self.images) < self.size:
                self.images.append(image.clone())
                out.append(image)
            elif torch.rand(()) < 0.5:
                index = int(torch.randint(len(self.images), ()))
                out.append(self.images[index].to(image.device))
                self.images[index] = image.clone()
            else:
                out.append(image)
        return torch.stack(out)

    def state_dict(self) -> dict:
        """The stored images, for resuming.

        Returns:
            ``{"size": ..., "images": [...]}``.
        """
        return {"size": self.size, "images": [image.cpu() for image in self.images]}

    def load_state_dict(self, state: dict) -> None:
        """Restores :meth:`state_dict`'s output.

        Args:
            state: a saved state.
        """
        self.size = state["size"]
        self.images = list(state["images"])
