"""MONAI trainers: a shared multi-network base, one trainer per method, staged training and
validation during training."""

from common.engines.base import MultiNetworkTrainer, check_choice, distributed, is_main_process, loss_output, unwrap
from common.engines.checkpoints import FiniteGuard, atomic_save, find_resume, save_resume
from common.engines.cyclegan import CycleGANTrainer, DiscriminatorReduction
from common.engines.dadr import DADR_METHODS, DADRTrainer, StyleSource, check_dadr_method
from common.engines.global_local import (
    GLOBAL_LOCAL_METHODS,
    SOURCE_DOMAIN,
    TARGET_DOMAIN,
    LocalAlignmentTrainer,
    StyleTransferTrainer,
)
from common.engines.mi2gan import MI2GANTrainer, MIMarginal
from common.engines.reggan import RegGANMode, RegGANTrainer
from common.engines.sifa import SIFATrainer
from common.engines.stages import Stage, load_stage_networks, run_stages
from common.engines.synthmix import SYNTHMIX_METHODS, InspectorLoss, SynthMixTrainer
from common.engines.validation import segmentation_validation, translation_validation

__all__ = [
    "MultiNetworkTrainer",
    "distributed",
    "is_main_process",
    "loss_output",
    "unwrap",
    "check_choice",
    "CycleGANTrainer",
    "DiscriminatorReduction",
    "RegGANMode",
    "RegGANTrainer",
    "MI2GANTrainer",
    "DADRTrainer",
    "StyleSource",
    "DADR_METHODS",
    "check_dadr_method",
    "MIMarginal",
    "SIFATrainer",
    "SynthMixTrainer",
    "InspectorLoss",
    "SYNTHMIX_METHODS",
    "StyleTransferTrainer",
    "LocalAlignmentTrainer",
    "SOURCE_DOMAIN",
    "TARGET_DOMAIN",
    "GLOBAL_LOCAL_METHODS",
    "Stage",
    "run_stages",
    "load_stage_networks",
    "atomic_save",
    "save_resume",
    "find_resume",
    "FiniteGuard",
    "segmentation_validation",
    "translation_validation",
]
