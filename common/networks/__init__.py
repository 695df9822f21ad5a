"""Networks not in MONAI as such: the CycleGAN ResNet generator, a patch discriminator pooled to
one score per image (RegGAN), RegGAN's registration networks (the public code's residual U-Net, MONAI's LocalNet), MI2GAN's content
auto-encoders, DADR's disentangled content/style networks (MUNIT), SIFA's encoder, segmenters and
decoder, SynthMix's Mixup Inspector, the domain-conditioned style-transfer subnet of global-local
alignment, and a translate-then-segment pipeline."""

from common.networks.autoencoders import ContentDecoder, ContentEncoder
from common.networks.discriminators import PooledPatchDiscriminator, patch_layers, patch_receptive_field
from common.networks.disentangled import (
    AdaINDecoder,
    ContentOnlyImage,
    DisentangledContentEncoder,
    MultiScaleDiscriminator,
    NeutralStyle,
    StyleEncoder,
)
from common.networks.generators import ResnetGenerator, init_normal
from common.networks.global_local import (
    DeepLabFeatureExtractor,
    DeepLabLabelPredictor,
    DeepLabSegmenter,
    DomainDecoder,
    DomainEncoder,
    DomainPatchDiscriminator,
    LocallyMaskedSegmenter,
    LocalMask,
    OutputDiscriminator,
    PixelDiscriminator,
    StyleTransferNetwork,
    local_feature_mask,
    one_hot_domain,
    reweight_features,
)
from common.networks.pipeline import TranslateThenSegment, sub_state_dict, unet_segmenter
from common.networks.registration import RegistrationNetwork, ResUNetRegistration, registration_network
from common.networks.sifa import (
    SIFADecoder,
    SIFAEncoder,
    SIFAResidualBlock,
    SIFASegmentationNetwork,
    SIFASegmenter,
)
from common.networks.synthmix import MixupInspector
from common.networks.utils import parameters

__all__ = [
    "ResnetGenerator",
    "init_normal",
    "PooledPatchDiscriminator",
    "patch_receptive_field",
    "patch_layers",
    "RegistrationNetwork",
    "ResUNetRegistration",
    "registration_network",
    "parameters",
    "ContentEncoder",
    "ContentDecoder",
    "TranslateThenSegment",
    "DisentangledContentEncoder",
    "StyleEncoder",
    "AdaINDecoder",
    "MultiScaleDiscriminator",
    "NeutralStyle",
    "ContentOnlyImage",
    "sub_state_dict",
    "unet_segmenter",
    "SIFAEncoder",
    "SIFASegmenter",
    "SIFASegmentationNetwork",
    "SIFADecoder",
    "SIFAResidualBlock",
    "MixupInspector",
    "DomainEncoder",
    "DomainDecoder",
    "StyleTransferNetwork",
    "DomainPatchDiscriminator",
    "one_hot_domain",
    "DeepLabFeatureExtractor",
    "DeepLabLabelPredictor",
    "DeepLabSegmenter",
    "PixelDiscriminator",
    "OutputDiscriminator",
    "LocalMask",
    "local_feature_mask",
    "reweight_features",
    "LocallyMaskedSegmenter",
]
