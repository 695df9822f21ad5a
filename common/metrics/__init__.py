"""Segmentation (Dice, ASSD, HD95) and translation (NMAE, PSNR, SSIM) metrics."""

from common.metrics.segmentation import assd, dice_score, evaluate_segmentation, hd95
from common.metrics.translation import PSNR_CAP, nmae, psnr, slice_ssim, ssim

__all__ = ["dice_score", "assd", "hd95", "evaluate_segmentation", "nmae", "psnr", "ssim", "slice_ssim", "PSNR_CAP"]
