"""Disentangled content and style (MUNIT, Huang et al. 2018), the representation of DADR
(Yang et al. 2019): per domain a content encoder, a style encoder and a decoder whose adaptive
instance norm (AdaIN) parameters an MLP computes from the style code; multi-scale
discriminators; and the *content-only image*, a content code decoded with a neutral style.

The sizes and layers follow MUNIT's public code (NVlabs/MUNIT, ``networks.py``) where DADR is
silent: content ``4 * channels`` feature maps at a quarter of the image size (256 x 64 x 64 at
256 px, DADR's "64x64x256"), an 8-d style code, a 3-layer MLP of 256 units, nearest
upsampling + 5x5 convolution + layer norm in the decoder, reflection padding, ReLU in the
generators and leaky ReLU 0.2 in the discriminators. DADR's one change to the networks is batch
norm in the content encoder (MUNIT: instance norm). MONAI has no AdaIN or MUNIT blocks; these
are written here in plain PyTorch like the CycleGAN generator.
"""

# No `from __future__ import annotations`: TorchScript (the bundle export) reads the annotations.
from typing import Optional

import torch
import torch.nn.functional as F
from monai.utils.enums import StrEnum
from torch import nn

from common.networks.generators import ResidualBlock, norm_layer

__all__ = [
    "DisentangledContentEncoder",
    "StyleEncoder",
    "AdaINDecoder",
    "AdaINResidualBlock",
    "adain_mlp",
    "MultiScaleDiscriminator",
    "NeutralStyle",
    "ContentOnlyImage",
    "init_kaiming",
]


def init_kaiming(module: nn.Module) -> None:
    """MUNIT's ``init: kaiming`` of its generators: convolution and linear weights from
    ``kaiming_normal_`` (fan in), biases 0.

    Args:
        module: a module (use with ``net.apply(init_kaiming)``).
    """
    if isinstance(module, (nn.Conv2d, nn.Linear)):
        nn.init.kaiming_normal_(module.weight, a=0, mode="fan_in")
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def _conv(in_channels: int, out_channels: int, kernel: int, stride: int, norm: str, act: bool = True) -> nn.Sequential:
    """MUNIT's ``Conv2dBlock``: reflection padding, convolution, norm, ReLU."""
    layers = [
        nn.Conv2d(in_channels, out_channels, kernel, stride=stride, padding=(kernel - 1) // 2, padding_mode="reflect"),
        norm_layer(norm, out_channels),
    ]
    return nn.Sequential(*layers, *([nn.ReLU(inplace=True)] if act else []))


def _check_positive(name: str, **sizes: int) -> None:
    bad = {k: v for k, v in sizes.items() if v < (0 if k.startswith("n_") else 1)}
    if bad:
        raise ValueError(f"{name}: sizes must be positive (counts non-negative), got {bad}.")


class DisentangledContentEncoder(nn.Module):
    """``Ec``: an image to its content code, ``c7s1-c``, ``n_downsampling`` stride-2 4x4
    convolutions doubling the filters, then ``n_res`` residual blocks; every layer normalised
    by ``norm`` (DADR: batch norm; MUNIT: instance norm).

    Args:
        in_channels: image channels.
        channels: filters of the first layer (the code has ``channels * 2**n_downsampling``).
        n_downsampling: stride-2 convolutions (2: a quarter of the image size).
        n_res: residual blocks (4 in MUNIT).
        norm: ``batch`` (DADR), ``instance`` (MUNIT) or ``none``.

    Shapes:
        ``(B, in_channels, H, W) -> (B, channels * 2**n, H / 2**n, W / 2**n)``.
    """

    def __init__(
        self, in_channels: int, channels: int = 64, n_downsampling: int = 2, n_res: int = 4, norm: str = "batch"
    ) -> None:
        super().__init__()
        _check_positive(type(self).__name__, in_channels=in_channels, channels=channels, n_down=n_downsampling)
        layers = [_conv(in_channels, channels, 7, 1, norm)]
        for level in range(n_downsampling):
            layers.append(_conv(channels * 2**level, channels * 2 ** (level + 1), 4, 2, norm))
        self.out_channels = channels * 2**n_downsampling
        layers += [ResidualBlock(self.out_channels, norm) for _ in range(n_res)]
        self.model = nn.Sequential(*layers)
        self.apply(init_kaiming)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Encodes a batch.

        Args:
            x: images ``(B, in_channels, H, W)``.

        Returns:
            The content codes.
        """
        return self.model(x)


class StyleEncoder(nn.Module):
    """``Es``: an image to its style code, ``c7s1-c``, two stride-2 4x4 convolutions doubling the
    filters, ``n_downsampling - 2`` more at constant width, global average pooling and a 1x1
    convolution (a fully connected layer) to ``style_dim``; no normalisation (MUNIT; DADR:
    "convolutional layers, a global average pooling layer, and a fully-connected layer").

    It also keeps the running mean of the codes it encodes in training mode (``style_mean``,
    momentum 0.01 like batch norm's statistics), saved with its weights: the ``mean`` neutral
    style of :class:`ContentOnlyImage`.

    Args:
        in_channels: image channels.
        channels: filters of the first layer.
        n_downsampling: stride-2 convolutions (4 in MUNIT).
        style_dim: the code's length (8 in DADR and MUNIT).
        momentum: of the running mean.

    Shapes:
        ``(B, in_channels, H, W) -> (B, style_dim)``.
    """

    def __init__(
        self, in_channels: int, channels: int = 64, n_downsampling: int = 4, style_dim: int = 8, momentum: float = 0.01
    ) -> None:
        super().__init__()
        _check_positive(type(self).__name__, in_channels=in_channels, channels=channels, style_dim=style_dim)
        layers, width = [_conv(in_channels, channels, 7, 1, "none")], channels
        for level in range(n_downsampling):
            wider = width * 2 if level < 2 else width
            layers.append(_conv(width, wider, 4, 2, "none"))
            width = wider
        layers += [nn.AdaptiveAvgPool2d(1), nn.Conv2d(width, style_dim, 1)]
        self.model = nn.Sequential(*layers)
        self.style_dim, self.momentum = style_dim, momentum
        self.register_buffer("style_mean", torch.zeros(style_dim))
        self.apply(init_kaiming)

    def forward(self, x: torch.Tensor, track: bool = True) -> torch.Tensor:
        """Encodes a batch into style codes ``(B, style_dim)``.

        Args:
            x: images.
            track: update ``style_mean`` (in training mode only); ``False`` for generated images.

        Returns:
            The codes.
        """
        style = self.model(x).flatten(1)
        if self.training and track:
            with torch.no_grad():
                self.style_mean.lerp_(style.detach().float().mean(0), self.momentum)
        return style


def adain_mlp(style_dim: int, mlp_dim: int, n_res: int, channels: int) -> nn.Sequential:
    """MUNIT's MLP from a style code to the AdaIN parameters of ``n_res`` residual blocks:
    ``style_dim -> mlp_dim -> mlp_dim -> 4 * n_res * channels`` with ReLU (per block, two AdaIN
    layers' biases and scales).

    Args:
        style_dim: the input's length (a style code, or a one-hot domain label).
        mlp_dim: hidden units.
        n_res: AdaIN residual blocks.
        channels: their channels.

    Returns:
        The MLP.
    """
    return nn.Sequential(
        nn.Linear(style_dim, mlp_dim),
        nn.ReLU(inplace=True),
        nn.Linear(mlp_dim, mlp_dim),
        nn.ReLU(inplace=True),
        nn.Linear(mlp_dim, 4 * n_res * channels),
    )


class AdaINResidualBlock(nn.Module):
    """MUNIT's residual block with AdaIN: ``x + AdaIN(conv(ReLU(AdaIN(conv(x)))))``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, padding_mode="reflect")
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, padding_mode="reflect")
        self.channels = channels

    def adain(self, x: torch.Tensor, params: Optional[torch.Tensor]) -> torch.Tensor:
        """Instance-normalises ``x`` and applies the style's affine transform: ``params`` holds the
        per-channel bias (first half) and scale (second half), as MUNIT's ``assign_adain_params``;
        ``None``: no affine transform (AdaIN as plain instance norm)."""
        x = F.instance_norm(x, eps=1e-5)
        if params is None:
            return x
        bias, scale = params[:, : self.channels], params[:, self.channels :]
        return x * scale[:, :, None, None] + bias[:, :, None, None]

    def forward(self, x: torch.Tensor, params: Optional[torch.Tensor]) -> torch.Tensor:
        first: Optional[torch.Tensor] = None
        second: Optional[torch.Tensor] = None
        if params is not None:
            first, second = params[:, : 2 * self.channels], params[:, 2 * self.channels :]
        y = F.relu(self.adain(self.conv1(x), first))
        return x + self.adain(self.conv2(y), second)


class AdaINDecoder(nn.Module):
    """``G``: a content code and a style code to an image. ``n_res`` AdaIN residual blocks whose
    per-channel scales and biases an MLP (``style_dim -> mlp_dim -> mlp_dim -> 4 * n_res *
    channels``, ReLU) computes from the style, then ``n_upsampling`` times nearest x2 upsampling,
    a 5x5 convolution halving the filters, layer norm and ReLU, then ``c7s1-out`` and tanh.

    ``style=None`` decodes with every AdaIN reduced to instance norm (no style affine), one of the
    neutral styles of :class:`ContentOnlyImage`.

    Args:
        out_channels: image channels.
        channels: content code channels (``DisentangledContentEncoder.out_channels``).
        n_upsampling: upsampling steps (the content encoder's ``n_downsampling``).
        n_res: AdaIN residual blocks (4 in MUNIT).
        style_dim: the style code's length.
        mlp_dim: the MLP's hidden units (256 in MUNIT).

    Shapes:
        ``(B, channels, h, w), (B, style_dim) -> (B, out_channels, h * 2**n, w * 2**n)``, in [-1, 1].
    """

    def __init__(
        self,
        out_channels: int,
        channels: int = 256,
        n_upsampling: int = 2,
        n_res: int = 4,
        style_dim: int = 8,
        mlp_dim: int = 256,
    ) -> None:
        super().__init__()
        _check_positive(type(self).__name__, out_channels=out_channels, channels=channels, style_dim=style_dim)
        if channels % 2**n_upsampling:
            raise ValueError(f"AdaINDecoder: `channels` ({channels}) must be divisible by 2**n_upsampling.")
        self.blocks = nn.ModuleList(AdaINResidualBlock(channels) for _ in range(n_res))
        self.mlp = adain_mlp(style_dim, mlp_dim, n_res, channels)
        up: list[nn.Module] = []
        width = channels
        for _ in range(n_upsampling):
            up += [
                nn.Upsample(scale_factor=2, mode="nearest"),
                nn.Conv2d(width, width // 2, 5, padding=2, padding_mode="reflect"),
                nn.GroupNorm(1, width // 2),  # MUNIT's LayerNorm: over (C, H, W) per image, affine per channel
                nn.ReLU(inplace=True),
            ]
            width //= 2
        up += [nn.Conv2d(width, out_channels, 7, padding=3, padding_mode="reflect"), nn.Tanh()]
        self.up = nn.Sequential(*up)
        self.style_dim, self.channels = style_dim, channels
        self.apply(init_kaiming)
        for module in self.up.modules():  # MUNIT's LayerNorm: scales from U(0, 1), biases 0
            if isinstance(module, nn.GroupNorm):
                nn.init.uniform_(module.weight)

    def forward(self, content: torch.Tensor, style: Optional[torch.Tensor]) -> torch.Tensor:
        """Decodes content codes with style codes (``None``: no style affine).

        Args:
            content: content codes ``(B, channels, h, w)``.
            style: style codes ``(B, style_dim)`` or ``None``.

        Returns:
            Images in [-1, 1].
        """
        x = content
        if style is None:
            for block in self.blocks:
                x = block(x, None)
        else:
            params = self.mlp(style)  # (B, 4 * channels) per block: two AdaIN layers' biases and scales
            width, start = 4 * self.channels, 0
            for block in self.blocks:
                x = block(x, params[:, start : start + width])
                start += width
        return self.up(x)


class MultiScaleDiscriminator(nn.Module):
    """MUNIT's discriminator: the same patch critic applied to the image at ``num_scales``
    resolutions (each scale average-pooled 3x3 stride 2 from the previous one); each critic is
    ``num_layers`` stride-2 4x4 convolutions doubling the filters (no norm, leaky ReLU 0.2,
    reflection padding) and a 1x1 convolution to one logit per patch. Weights from N(0, 0.02)
    (MUNIT's ``gaussian`` init of its discriminators).

    Args:
        in_channels: image channels.
        channels: filters of the first layer (64 in MUNIT).
        num_layers: stride-2 convolutions per critic (4 in MUNIT at 256 px).
        num_scales: image resolutions (3 in MUNIT).

    Shapes:
        ``(B, in_channels, H, W) ->`` a list of ``num_scales`` logit maps ``(B, 1, h_s, w_s)``.
    """

    def __init__(self, in_channels: int, channels: int = 64, num_layers: int = 4, num_scales: int = 3) -> None:
        super().__init__()
        _check_positive(type(self).__name__, in_channels=in_channels, channels=channels)
        if num_layers < 1 or num_scales < 1:
            raise ValueError(
                f"MultiScaleDiscriminator needs num_layers and num_scales >= 1, got {num_layers}, {num_scales}."
            )

        def critic() -> nn.Sequential:
            layers, width = [], in_channels
            for level in range(num_layers):
                wider = channels * 2**level
                layers += [
                    nn.Conv2d(width, wider, 4, stride=2, padding=1, padding_mode="reflect"),
                    nn.LeakyReLU(0.2, inplace=True),
                ]
                width = wider
            return nn.Sequential(*layers, nn.Conv2d(width, 1, 1))

        self.critics = nn.ModuleList(critic() for _ in range(num_scales))
        self.num_layers = num_layers
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, 0.0, 0.02)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Scores a batch at every scale.

        Args:
            x: images ``(B, in_channels, H, W)``.

        Returns:
            One logit map per scale, finest first.

        Raises:
            ValueError: an image too small for the deepest critic at the coarsest scale.
        """
        smallest = min(x.shape[-2:]) / 2 ** (len(self.critics) - 1)
        if smallest < 2**self.num_layers:
            raise ValueError(
                f"MultiScaleDiscriminator: images of {tuple(x.shape[-2:])} are too small for {len(self.critics)} scales "
                f"of {self.num_layers} stride-2 layers; use fewer scales or layers."
            )
        outputs = []
        for index, critic in enumerate(self.critics):
            if index:
                x = F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False)
            outputs.append(critic(x))
        return outputs


class NeutralStyle(StrEnum):
    """The style of a content-only image (DADR decodes "the content code without style code")."""

    IDENTITY = "identity"  # every AdaIN reduced to instance norm: no style affine at all
    ZERO = "zero"  # the zero code, the mode of MUNIT's N(0, I) style prior
    MEAN = "mean"  # the mean of the style codes of both domains seen in training


class ContentOnlyImage(nn.Module):
    """DADR's content-only image: ``decoder(content_encoder(x), neutral style)``.

    The same decoder and neutral style render the content of both domains, so that the
    segmenter trained on content-only source images sees the target through the same renderer.

    Args:
        content_encoder: the content encoder of the input's domain.
        decoder: the decoder that renders the content (one domain's).
        neutral_style: :class:`NeutralStyle`.
        style_encoders: the style encoders whose running means average into the ``mean`` style
            (none at inference, where the buffer ``mean_style`` comes with the weights).

    Raises:
        ValueError: an unknown neutral style.

    Shapes:
        ``(B, C_in, H, W) -> (B, C_out, H, W)``.
    """

    def __init__(
        self,
        content_encoder: nn.Module,
        decoder: AdaINDecoder,
        neutral_style: NeutralStyle | str = NeutralStyle.IDENTITY,
        style_encoders: list[StyleEncoder] | None = None,
    ) -> None:
        super().__init__()
        if neutral_style not in list(NeutralStyle):
            raise ValueError(f"Unknown neutral_style {neutral_style!r}; expected one of {', '.join(NeutralStyle)}.")
        self.content_encoder, self.decoder = content_encoder, decoder
        self.neutral_style = str(NeutralStyle(neutral_style).value)
        self.style_dim = decoder.style_dim
        # Not submodules: their weights belong to the disentanglement. Their mean code is copied
        # into the buffer `mean_style` at every call, so that the release weights carry it.
        self._style_encoders = list(style_encoders or [])
        self.tracks_encoders = bool(self._style_encoders) and self.neutral_style == NeutralStyle.MEAN
        self.register_buffer("mean_style", torch.zeros(decoder.style_dim))

    @torch.jit.unused
    def _refresh_mean_style(self) -> None:
        """``mean_style`` = the mean of the style encoders' running mean codes."""
        with torch.no_grad():
            self.mean_style.copy_(torch.stack([e.style_mean for e in self._style_encoders]).mean(0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Renders the content of a batch.

        Args:
            x: images of the content encoder's domain.

        Returns:
            The content-only images, in [-1, 1].
        """
        content = self.content_encoder(x)
        if self.neutral_style == "identity":
            return self.decoder(content, None)
        if self.neutral_style == "zero":
            return self.decoder(content, content.new_zeros(content.shape[0], self.style_dim))
        if not torch.jit.is_scripting() and self.tracks_encoders:  # a scripted export keeps the buffer it has
            self._refresh_mean_style()
        return self.decoder(content, self.mean_style.to(content.dtype).expand(content.shape[0], -1))
