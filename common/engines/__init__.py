"""MONAI trainers: a shared multi-network base and one trainer per method."""

from common.engines.base import MultiNetworkTrainer, loss_output
from common.engines.cyclegan import CycleGANTrainer
from common.engines.reggan import RegGANMode, RegGANTrainer

__all__ = ["MultiNetworkTrainer", "loss_output", "CycleGANTrainer", "RegGANMode", "RegGANTrainer"]
