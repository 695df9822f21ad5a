"""The style-transfer subnet of global-local union alignment (Su et al., "Mind the Gap:
Alleviating Local Imbalance for Unsupervised Cross-Modality Medical Image Segmentation",
stage 1): one encoder ``G_E`` and one decoder ``G_D`` shared by both domains, each conditioned
on the domain label through AdaIN, whose parameters an MLP computes from the label ("our work
employs a multi-layer perceptron (MLP) to learn the style representation for each domain ...
we equip both the decomposition and reconstruction processes with AdaIN layers"), and a
domain-conditional Markovian (PatchGAN) discriminator ``D(x | d)``.

The paper gives no layer sizes; they follow the MUNIT/StarGAN lineage it cites, as
:mod:`common.networks.disentangled` does: the encoder is ``c7s1-c`` and stride-2 4x4
convolutions with instance norm, then AdaIN residual blocks; the decoder is
:class:`~common.networks.disentangled.AdaINDecoder` with the one-hot domain label as its style
code. The discriminator is MONAI's ``PatchDiscriminator`` with one output channel per domain,
of which the image's domain is read (StarGAN v2's multi-task discriminator).

Stage 2's networks: the segmenter ``S`` (DeepLab-ResNet50 from MONAI's ``ResNet`` and
``SimpleASPP``, no torchvision), split into the feature extractor ``S_E`` and the label
predictor ``S_P``; ``D1``, a pixel-wise discriminator on ``S_E``'s features, whose per-location
uncertainty forms the local feature mask (:func:`local_feature_mask`); ``D2``, the output-space
discriminator, is MONAI's ``PatchDiscriminator`` on the softmax outputs (AdaptSegNet's).
"""

# No `from __future__ import annotations`: TorchScript (the bundle export) reads the annotations.
import math

import torch
import torch.nn.functional as F
from monai.networks.blocks import SimpleASPP
from monai.networks.nets import PatchDiscriminator, ResNet
from monai.utils.enums import StrEnum
from torch import nn

from common.networks.disentangled import AdaINDecoder, AdaINResidualBlock, _conv, adain_mlp, init_kaiming

__all__ = [
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


def one_hot_domain(domain: torch.Tensor, num_domains: int) -> torch.Tensor:
    """The domain labels ``(B,)`` (integers) as float one-hot rows ``(B, num_domains)``.

    Args:
        domain: the labels.
        num_domains: how many domains.

    Returns:
        The one-hot rows.

    Raises:
        ValueError: a label outside ``[0, num_domains)``.
    """
    if domain.numel() > 0:
        low, high = int(domain.min()), int(domain.max())
        if low < 0 or high >= num_domains:
            raise ValueError(f"Domain labels must lie in [0, {num_domains}), got labels from {low} to {high}.")
    return F.one_hot(domain.long(), num_domains).float()


class DomainEncoder(nn.Module):
    """``G_E``: an image and its domain label to a content code. ``c7s1-c`` and
    ``n_downsampling`` stride-2 4x4 convolutions doubling the filters (instance norm, ReLU), then
    ``n_res`` residual blocks whose two AdaIN layers take their per-channel scale and bias from
    an MLP of the one-hot label (``num_domains -> mlp_dim -> mlp_dim -> 4 * n_res * channels``).

    Args:
        in_channels: image channels.
        num_domains: domain labels (2: source 0, target 1).
        channels: filters of the first layer (the code has ``channels * 2**n_downsampling``).
        n_downsampling: stride-2 convolutions (2: a quarter of the image size).
        n_res: AdaIN residual blocks.
        mlp_dim: the MLP's hidden units.

    Shapes:
        ``(B, in_channels, H, W), (B,) -> (B, channels * 2**n, H / 2**n, W / 2**n)``.
    """

    def __init__(
        self,
        in_channels: int,
        num_domains: int = 2,
        channels: int = 64,
        n_downsampling: int = 2,
        n_res: int = 4,
        mlp_dim: int = 256,
    ) -> None:
        super().__init__()
        if min(in_channels, num_domains, channels, n_res, mlp_dim) < 1 or n_downsampling < 0:
            raise ValueError(
                f"DomainEncoder: sizes must be positive, got in_channels={in_channels}, num_domains={num_domains}, "
                f"channels={channels}, n_res={n_res}, mlp_dim={mlp_dim}, n_downsampling={n_downsampling}."
            )
        layers = [_conv(in_channels, channels, 7, 1, "instance")]
        for level in range(n_downsampling):
            layers.append(_conv(channels * 2**level, channels * 2 ** (level + 1), 4, 2, "instance"))
        self.down = nn.Sequential(*layers)
        self.out_channels = channels * 2**n_downsampling
        self.blocks = nn.ModuleList(AdaINResidualBlock(self.out_channels) for _ in range(n_res))
        self.mlp = adain_mlp(num_domains, mlp_dim, n_res, self.out_channels)
        self.num_domains = num_domains
        self.apply(init_kaiming)

    def forward(self, x: torch.Tensor, domain: torch.Tensor) -> torch.Tensor:
        """Encodes a batch with its domain labels.

        Args:
            x: images ``(B, in_channels, H, W)``.
            domain: their domain labels ``(B,)``.

        Returns:
            The content codes.
        """
        params = self.mlp(one_hot_domain(domain, self.num_domains).to(x.dtype))
        h, width, start = self.down(x), 4 * self.out_channels, 0
        for block in self.blocks:
            h = block(h, params[:, start : start + width])
            start += width
        return h


class DomainDecoder(nn.Module):
    """``G_D``: a content code and a domain label to an image:
    :class:`~common.networks.disentangled.AdaINDecoder` whose style code is the one-hot label.

    Args:
        out_channels: image channels.
        num_domains: domain labels.
        channels: content code channels (``DomainEncoder.out_channels``).
        n_upsampling: upsampling steps (the encoder's ``n_downsampling``).
        n_res: AdaIN residual blocks.
        mlp_dim: the MLP's hidden units.

    Shapes:
        ``(B, channels, h, w), (B,) -> (B, out_channels, h * 2**n, w * 2**n)``, in [-1, 1].
    """

    def __init__(
        self,
        out_channels: int,
        num_domains: int = 2,
        channels: int = 256,
        n_upsampling: int = 2,
        n_res: int = 4,
        mlp_dim: int = 256,
    ) -> None:
        super().__init__()
        self.decoder = AdaINDecoder(out_channels, channels, n_upsampling, n_res, style_dim=num_domains, mlp_dim=mlp_dim)
        self.num_domains = num_domains

    def forward(self, content: torch.Tensor, domain: torch.Tensor) -> torch.Tensor:
        """Decodes content codes in the labels' domains.

        Args:
            content: content codes ``(B, channels, h, w)``.
            domain: domain labels ``(B,)``.

        Returns:
            Images in [-1, 1].
        """
        return self.decoder(content, one_hot_domain(domain, self.num_domains).to(content.dtype))


class StyleTransferNetwork(nn.Module):
    """``G = (G_E, G_D)``: ``x_ij = G_D(G_E(x_i, d_i), d_j)``; with ``d_j = d_i`` the
    reconstruction ``x_ii``. ``forward`` translates from ``source_domain`` to ``target_domain``
    (the release translator of stage 1: source 0 to target 1 by default).

    Args:
        in_channels: image channels.
        num_domains: domain labels.
        channels: the encoder's first-layer filters.
        n_sampling: down- and upsampling steps.
        n_res: AdaIN residual blocks in the encoder and in the decoder.
        mlp_dim: the MLPs' hidden units.
        source_domain: the input's label in ``forward``.
        target_domain: the output's label in ``forward``.

    Shapes:
        ``(B, in_channels, H, W) -> (B, in_channels, H, W)``; ``H`` and ``W`` divisible by
        ``2**n_sampling``.
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_domains: int = 2,
        channels: int = 64,
        n_sampling: int = 2,
        n_res: int = 4,
        mlp_dim: int = 256,
        source_domain: int = 0,
        target_domain: int = 1,
    ) -> None:
        super().__init__()
        self.encoder = DomainEncoder(in_channels, num_domains, channels, n_sampling, n_res, mlp_dim)
        self.decoder = DomainDecoder(in_channels, num_domains, self.encoder.out_channels, n_sampling, n_res, mlp_dim)
        self.source_domain, self.target_domain = source_domain, target_domain

    def translate(self, x: torch.Tensor, source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``G_D(G_E(x, source), target)``.

        Args:
            x: images ``(B, C, H, W)``.
            source: their domain labels ``(B,)``.
            target: the output domains ``(B,)``.

        Returns:
            The translated images.
        """
        return self.decoder(self.encoder(x, source), target)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Translates a batch from ``source_domain`` to ``target_domain``.

        Args:
            x: images ``(B, C, H, W)``.

        Returns:
            The translations.
        """
        source = torch.full((x.shape[0],), self.source_domain, dtype=torch.long, device=x.device)
        target = torch.full((x.shape[0],), self.target_domain, dtype=torch.long, device=x.device)
        return self.translate(x, source, target)


class DomainPatchDiscriminator(nn.Module):
    """``D(x | d)``: MONAI's ``PatchDiscriminator`` (the 70x70 PatchGAN at ``num_layers_d=3``)
    with one logit map per domain, of which each image's own domain is returned.

    Args:
        in_channels: image channels.
        num_domains: domain labels.
        channels: filters of the first layer.
        num_layers_d: stride-2 layers.
        norm: MONAI's norm name (``INSTANCE`` as CycleGAN's PatchGAN).

    Shapes:
        ``(B, in_channels, H, W), (B,) -> (B, 1, h, w)``.
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_domains: int = 2,
        channels: int = 64,
        num_layers_d: int = 3,
        norm: str = "INSTANCE",
    ) -> None:
        super().__init__()
        self.patch = PatchDiscriminator(
            spatial_dims=2,
            channels=channels,
            in_channels=in_channels,
            out_channels=num_domains,
            num_layers_d=num_layers_d,
            norm=norm,
            bias=True,
        )
        self.num_domains = num_domains

    def forward(self, x: torch.Tensor, domain: torch.Tensor) -> torch.Tensor:
        """Scores a batch, each image against its label's domain.

        Args:
            x: images ``(B, in_channels, H, W)``.
            domain: their domain labels ``(B,)``.

        Returns:
            Patch logits ``(B, 1, h, w)``.
        """
        logits = self.patch(x)[-1]
        index = one_hot_domain(domain, self.num_domains).to(logits.dtype)[:, :, None, None]
        return (logits * index).sum(1, keepdim=True)


# ---- Stage 2: the segmentation subnet and the dual discriminators --------------------------------


class DeepLabFeatureExtractor(nn.Module):
    """``S_E``: DeepLab's dilated ResNet from MONAI's ``ResNet`` (bottleneck blocks; ResNet50 is
    ``layers=(3, 4, 6, 3)``, ``block_inplanes=(64, 128, 256, 512)``): a 7x7 stride-2 stem, max
    pooling and the four stages, the last two with their strides replaced by dilation 2 and 4
    (DeepLab's output stride 8); no pooling or classifier. Trained from scratch (the paper).
    ``output_stride=4`` leaves out the max pooling: on images a quarter of the paper's size
    (64 px for its 256), features 16 x 16 rather than 8 x 8, the relative resolution of
    DeepLab v3's output stride 16 at the paper's size, so that the thin myocardium stays
    resolvable.

    Args:
        in_channels: image channels.
        layers: bottleneck blocks per stage.
        block_inplanes: the stages' widths (features: ``4 * block_inplanes[-1]`` channels).
        output_stride: 8 (DeepLab's) or 4 (without the max pooling).

    Shapes:
        ``(B, in_channels, H, W) -> (B, 4 * block_inplanes[-1], H / s, W / s)`` with ``s`` the
        output stride; ``H``, ``W`` divisible by ``s``.

    Raises:
        ValueError: an output stride other than 4 or 8.
    """

    def __init__(
        self,
        in_channels: int = 1,
        layers: tuple[int, int, int, int] = (3, 4, 6, 3),
        block_inplanes: tuple[int, int, int, int] = (64, 128, 256, 512),
        output_stride: int = 8,
    ) -> None:
        super().__init__()
        if output_stride not in (4, 8):
            raise ValueError(f"DeepLab output_stride {output_stride!r}; expected 8 (DeepLab's) or 4.")
        resnet = ResNet(
            "bottleneck",
            list(layers),
            list(block_inplanes),
            spatial_dims=2,
            n_input_channels=in_channels,
            conv1_t_size=7,
            conv1_t_stride=2,
            feed_forward=False,
        )
        for stage, dilation in ((resnet.layer3, 2), (resnet.layer4, 4)):
            for module in stage.modules():
                if isinstance(module, nn.Conv2d) and module.stride != (1, 1):
                    module.stride = (1, 1)  # the first block's 3x3 conv and its shortcut
                if isinstance(module, nn.Conv2d) and module.kernel_size == (3, 3):
                    module.dilation, module.padding = (dilation, dilation), (dilation, dilation)
        pool = [resnet.maxpool] if output_stride == 8 else []
        self.stem = nn.Sequential(resnet.conv1, resnet.bn1, resnet.act, *pool)
        self.stages = nn.Sequential(resnet.layer1, resnet.layer2, resnet.layer3, resnet.layer4)
        self.out_channels, self.output_stride = 4 * block_inplanes[-1], output_stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Extracts the features.

        Args:
            x: images ``(B, in_channels, H, W)``.

        Returns:
            Features at ``1 / output_stride`` of the image size.
        """
        return self.stages(self.stem(x))


class DeepLabLabelPredictor(nn.Module):
    """``S_P``: MONAI's ``SimpleASPP`` (a 1x1 and three 3x3 convolutions dilated 6, 12 and 18, in
    parallel, concatenated and fused by a 1x1 convolution) and a 1x1 convolution to the class
    logits, bilinearly upsampled by ``upsample`` (8: back to the image size).

    Args:
        in_channels: feature channels (``DeepLabFeatureExtractor.out_channels``).
        num_classes: classes, background included.
        aspp_channels: each ASPP branch's channels.
        upsample: the logits' upsampling factor.

    Shapes:
        ``(B, in_channels, h, w) -> (B, num_classes, h * upsample, w * upsample)``.
    """

    def __init__(self, in_channels: int, num_classes: int, aspp_channels: int = 256, upsample: int = 8) -> None:
        super().__init__()
        self.aspp = SimpleASPP(2, in_channels, aspp_channels, kernel_sizes=(1, 3, 3, 3), dilations=(1, 6, 12, 18))
        self.classifier = nn.Conv2d(4 * aspp_channels, num_classes, 1)
        self.upsample = upsample

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Predicts the class logits.

        Args:
            features: ``(B, in_channels, h, w)``.

        Returns:
            Logits at ``upsample`` times the features' size.
        """
        logits = self.classifier(self.aspp(features))
        return F.interpolate(logits, scale_factor=float(self.upsample), mode="bilinear", align_corners=False)


class DeepLabSegmenter(nn.Module):
    """``S = S_P(S_E(x))``: the segmentation network whose two parts stage 2 trains and re-weights
    between (the release network of the target segmenter).

    Args:
        in_channels: image channels.
        num_classes: classes, background included.
        layers: ``DeepLabFeatureExtractor``'s blocks per stage.
        block_inplanes: its stages' widths.
        aspp_channels: ``DeepLabLabelPredictor``'s branch channels.
        output_stride: ``DeepLabFeatureExtractor``'s (8, DeepLab's, or 4); the logits are
            upsampled by as much.

    Shapes:
        ``(B, in_channels, H, W) -> (B, num_classes, H, W)``.
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 5,
        layers: tuple[int, int, int, int] = (3, 4, 6, 3),
        block_inplanes: tuple[int, int, int, int] = (64, 128, 256, 512),
        aspp_channels: int = 256,
        output_stride: int = 8,
    ) -> None:
        super().__init__()
        self.features = DeepLabFeatureExtractor(in_channels, layers, block_inplanes, output_stride)
        self.predictor = DeepLabLabelPredictor(
            self.features.out_channels, num_classes, aspp_channels, self.features.output_stride
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Segments a batch.

        Args:
            x: images ``(B, in_channels, H, W)``.

        Returns:
            Class logits ``(B, num_classes, H, W)``.
        """
        return self.predictor(self.features(x))


class PixelDiscriminator(nn.Module):
    """``D1``: a pixel-wise domain discriminator on feature maps, 1x1 convolutions (``channels``,
    then halving, leaky ReLU 0.2) to one logit per location: whether the feature there comes from
    the target. Its per-location uncertainty forms the local feature mask
    (:func:`local_feature_mask`).

    Args:
        in_channels: feature channels.
        channels: the first hidden layer's channels.
        num_layers: hidden layers.

    Shapes:
        ``(B, in_channels, h, w) -> (B, 1, h, w)``.
    """

    def __init__(self, in_channels: int, channels: int = 256, num_layers: int = 2) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = in_channels
        for level in range(num_layers):
            layers += [nn.Conv2d(width, channels // 2**level, 1), nn.LeakyReLU(0.2, inplace=True)]
            width = channels // 2**level
        self.model = nn.Sequential(*layers, nn.Conv2d(width, 1, 1))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Scores every location.

        Args:
            features: ``(B, in_channels, h, w)``.

        Returns:
            Logits ``(B, 1, h, w)``.
        """
        return self.model(features)


class OutputDiscriminator(nn.Module):
    """``D2``: the output-space discriminator, MONAI's ``PatchDiscriminator`` on the segmenter's
    softmax (AdaptSegNet's: 4x4 stride-2 convolutions doubling from ``channels``, leaky ReLU 0.2,
    no normalisation), returning its patch logits.

    Args:
        num_classes: the softmax's channels.
        channels: filters of the first layer (64 in AdaptSegNet).
        num_layers_d: stride-2 layers.

    Shapes:
        ``(B, num_classes, H, W) -> (B, 1, h, w)``.
    """

    def __init__(self, num_classes: int, channels: int = 64, num_layers_d: int = 3) -> None:
        super().__init__()
        self.patch = PatchDiscriminator(
            spatial_dims=2, channels=channels, in_channels=num_classes, num_layers_d=num_layers_d, norm=None, bias=True
        )

    def forward(self, probabilities: torch.Tensor) -> torch.Tensor:
        """Scores a batch of softmax outputs.

        Args:
            probabilities: ``(B, num_classes, H, W)``.

        Returns:
            Patch logits ``(B, 1, h, w)``.
        """
        return self.patch(probabilities)[-1]


class LocalMask(StrEnum):
    """How ``D1``'s per-location probability ``p`` becomes the local feature mask (in [0, 1])."""

    ENTROPY = "entropy"  # H(p) / log 2: high where D1 is unsure (the paper's "uncertainty")
    CERTAINTY = "certainty"  # 1 - H(p) / log 2: high where D1 still tells the domains apart (a larger local gap)


def normalised_entropy(logits: torch.Tensor) -> torch.Tensor:
    """The binary entropy of ``sigmoid(logits)`` over log 2, per element, in [0, 1], detached.

    Args:
        logits: any shape.

    Returns:
        The normalised entropy, float32, without gradients.
    """
    logits = logits.detach().float()
    # H(p) = -p log p - (1 - p) log(1 - p) with p = sigmoid(l) and 1 - p = sigmoid(-l): finite
    # and symmetric in the two domains to the last bit, where 1 - p in float32 would not be
    entropy = -(torch.sigmoid(logits) * F.logsigmoid(logits) + torch.sigmoid(-logits) * F.logsigmoid(-logits))
    return (entropy / math.log(2.0)).clamp(0.0, 1.0)


def local_feature_mask(logits: torch.Tensor, mode: str = LocalMask.ENTROPY) -> torch.Tensor:
    """The local feature mask from ``D1``'s logits: the normalised binary entropy of its
    probability (``entropy``) or one minus it (``certainty``), per location, in [0, 1]. It is a
    weight, not a path for gradients: computed without them.

    Args:
        logits: ``D1``'s output ``(B, 1, h, w)``.
        mode: :class:`LocalMask`.

    Returns:
        The mask ``(B, 1, h, w)``, detached.

    Raises:
        ValueError: an unknown mode.
    """
    if mode not in list(LocalMask):
        raise ValueError(f"Unknown local mask {mode!r}; expected one of {', '.join(LocalMask)}.")
    entropy = normalised_entropy(logits)
    return entropy if mode == LocalMask.ENTROPY else 1.0 - entropy


def reweight_features(features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The target features re-weighted by the local feature mask: ``(1 + M) * f``, so a location
    the mask selects counts up to twice and none is dropped (``M * f`` would zero the features
    where the mask is 0, and with them the segmentation there).

    Args:
        features: ``S_E``'s features ``(B, C, h, w)``.
        mask: the local feature mask ``(B, 1, h, w)`` in [0, 1].

    Returns:
        The re-weighted features.
    """
    return features * (1.0 + mask.to(features.dtype))


class LocallyMaskedSegmenter(nn.Module):
    """The target segmenter of global-local alignment: ``S_P((1 + M) * S_E(x))`` with ``M`` the
    local feature mask of ``D1`` on the features, as training applies it to target images.

    Args:
        features: ``S_E``.
        predictor: ``S_P``.
        discriminator: ``D1``.
        mask: :class:`LocalMask` (``entropy`` or ``certainty``).

    Shapes:
        ``(B, C, H, W) -> (B, num_classes, H, W)``.
    """

    def __init__(
        self, features: nn.Module, predictor: nn.Module, discriminator: nn.Module, mask: str = "entropy"
    ) -> None:
        super().__init__()
        if mask not in list(LocalMask):
            raise ValueError(f"Unknown local mask {mask!r}; expected one of {', '.join(LocalMask)}.")
        self.features, self.predictor, self.discriminator = features, predictor, discriminator
        self.certainty = mask == LocalMask.CERTAINTY

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Segments a batch of target images.

        Args:
            x: images.

        Returns:
            Class logits.
        """
        f = self.features(x)
        m = normalised_entropy(self.discriminator(f))
        if self.certainty:
            m = 1.0 - m
        return self.predictor(reweight_features(f, m))
