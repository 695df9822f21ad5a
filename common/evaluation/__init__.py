"""Evaluations written as JSON, CSV and figures: translations against the synthetic references
(:func:`evaluate_translation`), translate-then-segment content preservation
(:func:`evaluate_adaptation`), label-map networks per 3D volume and per class
(:func:`evaluate_segmenter`), the misalignment RegGAN's R leaves (:func:`evaluate_registration`)
what MI2GAN's critic separates (:func:`evaluate_mi_critic`) and how domain-invariant DADR's
content space is (:func:`evaluate_disentanglement`), what SynthMix's Mixup Inspector
separates (:func:`evaluate_inspector`) and where global-local alignment's local feature mask
falls against the prediction error (:func:`evaluate_local_mask`), and how far its features
still differ per location (:func:`evaluate_feature_gap`)."""

from common.evaluation.critic import evaluate_mi_critic
from common.evaluation.disentanglement import evaluate_disentanglement
from common.evaluation.local_mask import evaluate_feature_gap, evaluate_local_mask
from common.evaluation.mixing import INSPECTOR_INPUTS, ORACLE_INPUTS, evaluate_inspector
from common.evaluation.registration import evaluate_registration
from common.evaluation.report import show_image, summarise, write_json, write_tables
from common.evaluation.segmentation import SEGMENTATION_METRICS, evaluate_segmenter
from common.evaluation.translation import evaluate_adaptation, evaluate_translation

__all__ = [
    "evaluate_registration",
    "evaluate_mi_critic",
    "evaluate_disentanglement",
    "evaluate_inspector",
    "evaluate_local_mask",
    "evaluate_feature_gap",
    "INSPECTOR_INPUTS",
    "ORACLE_INPUTS",
    "evaluate_translation",
    "evaluate_adaptation",
    "evaluate_segmenter",
    "SEGMENTATION_METRICS",
    "show_image",
    "summarise",
    "write_tables",
    "write_json",
]
