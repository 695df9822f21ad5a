"""Cross-Domain Bundles: the shared package behind the MONAI bundles of this project.

Sub-packages: :mod:`common.metrics` (Dice, ASSD, HD95, NMAE, PSNR, SSIM), :mod:`common.losses`
(adversarial, cycle/identity, Donsker-Varadhan mutual information), :mod:`common.networks`,
:mod:`common.engines` (MONAI trainers), :mod:`common.handlers`, :mod:`common.data` (datalists,
readers, datasets, the synthetic benchmark), :mod:`common.evaluation`, :mod:`common.inference`,
:mod:`common.bundle` and :mod:`common.config` (strict reading of command-line values). They are
imported here so that a bundle config's ``$import common`` reaches all of them.
"""

__version__ = "0.8.0"

from common import (  # noqa: E402
    bundle,
    config,
    data,
    engines,
    evaluation,
    handlers,
    inference,
    losses,
    metrics,
    networks,
)

__all__ = [
    "bundle",
    "config",
    "data",
    "engines",
    "evaluation",
    "handlers",
    "inference",
    "losses",
    "metrics",
    "networks",
]
