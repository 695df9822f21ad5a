"""Networks not in MONAI: the CycleGAN ResNet generator (discriminators are MONAI's PatchDiscriminator)."""

from common.networks.generators import ResnetGenerator, init_normal

__all__ = ["ResnetGenerator", "init_normal"]
