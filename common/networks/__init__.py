"""Networks not in MONAI as such: the CycleGAN ResNet generator, a patch discriminator pooled to
one score per image (RegGAN), and RegGAN's registration network (MONAI's LocalNet)."""

from common.networks.discriminators import PooledPatchDiscriminator
from common.networks.generators import ResnetGenerator, init_normal
from common.networks.registration import RegistrationNetwork
from common.networks.utils import parameters

__all__ = ["ResnetGenerator", "init_normal", "PooledPatchDiscriminator", "RegistrationNetwork", "parameters"]
