"""Losses: adversarial (LSGAN, vanilla, hinge), cycle/identity L1, mutual-information bounds,
MI2GAN's content distillation, RegGAN's registration losses (correction, smoothness) and SIFA's
segmentation task loss."""

from common.losses.adversarial import AdversarialCriterion, AdversarialLoss, discriminator_logits
from common.losses.content import distillation_loss
from common.losses.cycle import cycle_loss, identity_loss
from common.losses.mutual_information import (
    MIBound,
    MutualInformationEstimator,
    dv_lower_bound,
    f_divergence_lower_bound,
    infonce_lower_bound,
    jsd_estimate,
)
from common.losses.registration import correction_loss, smoothness_loss
from common.losses.segmentation import SIFATaskLoss, batch_weighted_cross_entropy

__all__ = [
    "AdversarialCriterion",
    "AdversarialLoss",
    "discriminator_logits",
    "cycle_loss",
    "identity_loss",
    "MIBound",
    "MutualInformationEstimator",
    "dv_lower_bound",
    "f_divergence_lower_bound",
    "jsd_estimate",
    "infonce_lower_bound",
    "distillation_loss",
    "correction_loss",
    "SIFATaskLoss",
    "batch_weighted_cross_entropy",
    "smoothness_loss",
]
