"""MONAI trainers: a shared multi-network base and one trainer per method."""

from common.engines.base import MultiNetworkTrainer, loss_output
from common.engines.cyclegan import CycleGANTrainer
from common.engines.mi2gan import MI2GANTrainer, method_parts
from common.engines.reggan import RegGANMode, RegGANTrainer
from common.engines.segmentation import train_or_load

__all__ = ["MultiNetworkTrainer", "loss_output", "CycleGANTrainer", "RegGANMode", "RegGANTrainer", "MI2GANTrainer", "method_parts",
           "train_or_load"]
