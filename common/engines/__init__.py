"""MONAI trainers: a shared multi-network base, one trainer per method, and staged training."""

from common.engines.base import MultiNetworkTrainer, distributed, loss_output, unwrap
from common.engines.cyclegan import CycleGANTrainer
from common.engines.mi2gan import MI2GANTrainer
from common.engines.reggan import RegGANMode, RegGANTrainer
from common.engines.stages import Stage, atomic_save, run_stages

__all__ = ["MultiNetworkTrainer", "distributed", "loss_output", "unwrap", "CycleGANTrainer", "RegGANMode",
           "RegGANTrainer", "MI2GANTrainer", "Stage", "run_stages", "atomic_save"]
