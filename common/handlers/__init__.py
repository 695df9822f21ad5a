"""Training helpers: image pool, learning-rate schedule, image grids, checkpoints."""

from common.handlers.checkpoint import latest_checkpoint
from common.handlers.image_grid import ImageGridHandler, image_grid
from common.handlers.image_pool import ImagePool
from common.handlers.schedule import linear_decay

__all__ = ["ImagePool", "ImageGridHandler", "image_grid", "latest_checkpoint", "linear_decay"]
