"""Cross-Domain Bundles: the shared package behind the MONAI bundles of this project.

The sub-packages are :mod:`common.metrics` (Dice, ASSD, HD95, NMAE, PSNR, SSIM) and
:mod:`common.losses` (adversarial, cycle/identity, Donsker-Varadhan mutual information).
"""

__version__ = "0.1.0"
