"""Training helpers: image pool, learning-rate schedule, image grids, the standard logging handlers."""

from common.handlers.image_grid import ImageGridHandler, image_grid
from common.handlers.image_pool import ImagePool
from common.handlers.schedule import linear_decay
from common.handlers.standard import on_main_process, training_handlers

__all__ = ["ImagePool", "ImageGridHandler", "image_grid", "linear_decay", "training_handlers", "on_main_process"]
