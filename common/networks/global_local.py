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
"""

# No `from __future__ import annotations`: TorchScript (the bundle export) reads the annotations.
import torch
import torch.nn.functional as F
from monai.networks.nets import PatchDiscriminator
from torch import nn

from common.networks.disentangled import AdaINDecoder, AdaINResidualBlock, _conv, adain_mlp, init_kaiming

__all__ = ["DomainEncoder", "DomainDecoder", "StyleTransferNetwork", "DomainPatchDiscriminator", "one_hot_domain"]


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
