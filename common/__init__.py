"""Cross-Domain Bundles: the shared package behind the MONAI bundles of this project.

Sub-packages: :mod:`common.metrics` (Dice, ASSD, HD95, NMAE, PSNR, SSIM), :mod:`common.losses`
(adversarial, cycle/identity, Donsker-Varadhan mutual information), :mod:`common.networks`,
:mod:`common.engines` (MONAI trainers), :mod:`common.handlers`, :mod:`common.data` (datalists,
readers, datasets, the synthetic benchmark), :mod:`common.evaluation`, :mod:`common.inference`
and :mod:`common.bundle`. They are imported here so that a bundle config's ``$import common``
reaches all of them.
"""

__version__ = "0.8.0"

from common import bundle, data, engines, evaluation, handlers, inference, losses, metrics, networks  # noqa: E402

__all__ = ["bundle", "data", "engines", "evaluation", "handlers", "inference", "losses", "metrics", "networks"]
