"""Image-to-image generators.

MONAI has no CycleGAN ResNet generator (its GAN generators map a latent code to an image), so
:class:`ResnetGenerator` is written here, following Johnson et al. (2016) as the CycleGAN code
configures it: ``c7s1-ngf, d2ngf, d4ngf, R4ngf x n, u2ngf, ungf, c7s1-out``, instance norm,
reflection padding, tanh output, weights drawn from N(0, 0.02).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["ResidualBlock", "ResnetGenerator", "init_normal", "norm_layer"]


def init_normal(module: nn.Module, std: float = 0.02) -> None:
    """CycleGAN's ``init_type='normal'``: convolution weights ~ N(0, std), biases 0.

    Args:
        module: a module (use with ``net.apply(init_normal)``).
        std: standard deviation of the weights.
    """
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(module.weight, 0.0, std)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


NORMS = {"instance": nn.InstanceNorm2d, "batch": nn.BatchNorm2d, "none": lambda channels: nn.Identity()}


def norm_layer(norm: str, channels: int) -> nn.Module:
    """A 2D normalisation layer by name.

    Args:
        norm: ``instance`` (no affine parameters, as the CycleGAN code), ``batch`` or ``none``.
        channels: the feature channels.

    Returns:
        The layer.

    Raises:
        ValueError: an unknown name.
    """
    if norm not in NORMS:
        raise ValueError(f"Unknown norm {norm!r}; expected one of {', '.join(NORMS)}.")
    return NORMS[norm](channels)


class ResidualBlock(nn.Module):
    """``x + N(conv(ReLU(N(conv(x)))))`` with 3x3 convolutions and reflection padding, ``N`` instance
    norm by default (CycleGAN's residual block, also RegGAN's registration network's; MUNIT's
    with the norm of its content encoder, batch norm in DADR).

    Args:
        channels: the feature channels.
        norm: ``instance``, ``batch`` or ``none``.
    """

    def __init__(self, channels: int, norm: str = "instance") -> None:
        super().__init__()
        self.block = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1, padding_mode="reflect"),
            norm_layer(norm, channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 3, padding=1, padding_mode="reflect"),
            norm_layer(norm, channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


class ResnetGenerator(nn.Module):
    """CycleGAN's ResNet generator for 2D images.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        ngf: filters of the first layer (64 in the paper).
        n_blocks: residual blocks (9 for 256x256 images, 6 for 128x128).
        n_downsampling: stride-2 convolutions (and as many transposed convolutions back).
        residual: the output is ``tanh(x + f(x))`` instead of ``tanh(f(x))`` (SIFA's generator,
            its code's ``skip``; needs ``in_channels == out_channels``).

    Raises:
        ValueError: non-positive sizes, or ``residual`` with different channel counts.

    Shapes:
        ``(B, in_channels, H, W) -> (B, out_channels, H, W)`` for ``H`` and ``W`` divisible by
        ``2 ** n_downsampling``; the output is in [-1, 1].
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        ngf: int = 64,
        n_blocks: int = 9,
        n_downsampling: int = 2,
        residual: bool = False,
    ) -> None:
        super().__init__()
        if min(in_channels, out_channels, ngf) < 1 or n_blocks < 0 or n_downsampling < 0:
            raise ValueError(
                f"ResnetGenerator needs positive channel counts and non-negative block counts, got in_channels="
                f"{in_channels}, out_channels={out_channels}, ngf={ngf}, n_blocks={n_blocks}, n_downsampling={n_downsampling}."
            )
        if residual and in_channels != out_channels:
            raise ValueError(
                f"ResnetGenerator(residual=True) adds its input to its output: in_channels ({in_channels}) must "
                f"equal out_channels ({out_channels})."
            )
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, ngf, 7, padding=3, padding_mode="reflect"),
            nn.InstanceNorm2d(ngf),
            nn.ReLU(inplace=True),
        ]
        channels = ngf
        for _ in range(n_downsampling):
            layers += [
                nn.Conv2d(channels, channels * 2, 3, stride=2, padding=1),
                nn.InstanceNorm2d(channels * 2),
                nn.ReLU(inplace=True),
            ]
            channels *= 2
        layers += [ResidualBlock(channels) for _ in range(n_blocks)]
        for _ in range(n_downsampling):
            layers += [
                nn.ConvTranspose2d(channels, channels // 2, 3, stride=2, padding=1, output_padding=1),
                nn.InstanceNorm2d(channels // 2),
                nn.ReLU(inplace=True),
            ]
            channels //= 2
        layers += [nn.Conv2d(channels, out_channels, 7, padding=3, padding_mode="reflect")]
        self.model = nn.Sequential(*layers)  # the tanh in forward (no parameters: the keys stay)
        self.apply(init_normal)
        self.multiple, self.residual = 2**n_downsampling, residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Translates a batch.

        Args:
            x: images ``(B, in_channels, H, W)``.

        Returns:
            The translations, ``(B, out_channels, H, W)``, in [-1, 1].

        Raises:
            ValueError: not a 4D batch, or a spatial size not divisible by ``2 ** n_downsampling``.
        """
        if x.ndim != 4 or x.shape[2] % self.multiple or x.shape[3] % self.multiple:
            raise ValueError(
                f"ResnetGenerator expects (B, C, H, W) with H and W divisible by {self.multiple}, got {list(x.shape)}."
            )
        out = self.model(x)
        return torch.tanh(x + out if self.residual else out)
