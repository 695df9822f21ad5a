"""DADR's disentangled representation learning module as a MONAI trainer (Yang et al.,
"Unsupervised Domain Adaptation via Disentangled Representations: Application to Cross-Modality
Liver Segmentation", MICCAI 2019; trained as MUNIT)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from monai.utils.enums import StrEnum

from common.engines.base import MultiNetworkTrainer, check_choice
from common.losses import AdversarialLoss

__all__ = ["DADRTrainer", "StyleSource", "DADR_METHODS", "check_dadr_method"]

#: The rows of the paper's Table 1 the DADR bundle trains (its `method` id).
DADR_METHODS = ("dadr", "dacgan", "no_adaptation", "supervised")


def check_dadr_method(method: str) -> str:
    """The DADR bundle's ``method``, checked.

    Args:
        method: one of :data:`DADR_METHODS`.

    Returns:
        ``method``.

    Raises:
        ValueError: another value, naming the expected ones.
    """
    return check_choice(method, DADR_METHODS, "DADR bundle method")


class StyleSource(StrEnum):
    """The style code of a cross-domain translation (``s_2`` of the paper's eq. 3)."""

    SWAPPED = "swapped"  # the other domain's image's own code, Es_2(x_2) (DADR: "with swapped style code")
    SAMPLED = "sampled"  # a code drawn from N(0, I) (MUNIT's prior)


class DADRTrainer(MultiNetworkTrainer):
    """In-domain reconstruction, cross-domain translation and latent reconstruction (eq. 1-4).

    Networks (domain A = the source, CT; B = the target, MR): content encoders ``Ec_A``/``Ec_B``,
    style encoders ``Es_A``/``Es_B``, AdaIN decoders ``G_A``/``G_B`` (``G(content, style)``) and
    discriminators ``D_A``/``D_B`` (each returning a list of logit maps, one per scale).
    Optimisers: ``generators`` (encoders and decoders) and ``discriminators``. One iteration:

    1. encode: ``c_i = Ec_i(x_i)``, ``s_i = Es_i(x_i)``;
    2. generator step with the discriminators frozen, minimising
       ``lambda_recon * L_recon + lambda_adv * L_adv + lambda_latent * L_latent`` (eq. 1):

       - ``recon_A = |G_A(c_A, s_A) - x_A|_1`` (eq. 2), likewise ``recon_B``;
       - ``adv_AB``: ``x_AB = G_B(c_A, t_B)`` judged real by ``D_B`` at every scale (eq. 3,
         least squares as MUNIT), with ``t_B = s_B`` (``style_source="swapped"``) or
         ``t_B ~ N(0, I)`` (``"sampled"``); likewise ``adv_BA`` with ``x_BA = G_A(c_B, t_A)``;
       - ``content_A = |Ec_B(x_AB) - c_A|_1``, ``style_B = |Es_B(x_AB) - t_B|_1`` (eq. 4), and
         ``content_B``, ``style_A`` from ``x_BA``; a swapped code is the target of its
         reconstruction, not optimised through it (detached, like MUNIT's sampled code);
    3. discriminator step: ``D_A`` scores ``x_A`` real and ``x_BA`` (detached) fake at every
       scale, likewise ``D_B``; weighted by ``lambda_adv`` (MUNIT's ``gan_w``), no image pool.

    Style encoders see the fakes with ``track=False``, so that their running mean code (the
    ``mean`` neutral style of content-only images) averages real images only.

    Args:
        args: :class:`MultiNetworkTrainer`'s ``device``, ``max_epochs``, ``train_data_loader``
            (batches with A images under ``image_keys[0]`` and B images under ``image_keys[1]``),
            ``networks`` and ``optimizers``.
        lambda_recon: alpha, in-domain reconstruction weight (25 in DADR).
        lambda_adv: beta, adversarial weight (10 in DADR).
        lambda_latent: gamma, latent reconstruction weight (0.1 in DADR).
        style_source: :class:`StyleSource` of the translations.
        adversarial_criterion: ``lsgan`` (MUNIT's ``gan_type``), ``vanilla`` or ``hinge``.
        image_keys: the batch keys of the A and B images.
        kwargs: :class:`MultiNetworkTrainer`'s options (``lr_schedule``, ``epoch_length``,
            ``amp``, ``channels_last``, ``train_handlers``, ``non_blocking``).

    Raises:
        ValueError: an unknown style source, or networks/optimisers that do not match the declaration.
    """

    NETWORKS = ("Ec_A", "Es_A", "G_A", "Ec_B", "Es_B", "G_B", "D_A", "D_B")
    OPTIMIZERS = {"generators": ("Ec_A", "Es_A", "G_A", "Ec_B", "Es_B", "G_B"), "discriminators": ("D_A", "D_B")}
    LOSS_NAMES = (
        "recon_A",
        "recon_B",
        "adv_AB",
        "adv_BA",
        "content_A",
        "content_B",
        "style_A",
        "style_B",
        "D_A",
        "D_B",
    )
    VISUAL_NAMES = (("real_A", "rec_A", "fake_B"), ("real_B", "rec_B", "fake_A"))

    def __init__(
        self,
        *args: Any,
        lambda_recon: float = 25.0,
        lambda_adv: float = 10.0,
        lambda_latent: float = 0.1,
        style_source: StyleSource | str = StyleSource.SWAPPED,
        adversarial_criterion: str = "lsgan",
        image_keys: Sequence[str] = ("source_image", "target_image"),
        **kwargs: Any,
    ) -> None:
        if style_source not in list(StyleSource):
            raise ValueError(f"Unknown style_source {style_source!r}; expected one of {', '.join(StyleSource)}.")
        super().__init__(*args, **kwargs)
        self.lambda_recon, self.lambda_adv, self.lambda_latent = lambda_recon, lambda_adv, lambda_latent
        self.style_source = StyleSource(style_source)
        self.adversarial = AdversarialLoss(adversarial_criterion)
        self.key_a, self.key_b = image_keys

    def adversarial_loss(
        self, discriminator: str, image: torch.Tensor, real: bool, for_discriminator: bool
    ) -> torch.Tensor:
        """A discriminator's adversarial loss summed over its scales (MUNIT's ``calc_gen_loss`` /
        ``calc_dis_loss`` parts).

        Args:
            discriminator: ``D_A`` or ``D_B``.
            image: the images it scores.
            real: whether they should be judged real.
            for_discriminator: ``False`` for the generators' loss.

        Returns:
            The scalar loss, unweighted.
        """
        outputs = self.networks[discriminator](image)
        outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        return sum(self.adversarial(o, real, for_discriminator=for_discriminator) for o in outputs)

    def translation_styles(self, s_a: torch.Tensor, s_b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The style codes ``t_A``, ``t_B`` the translations into A and into B are decoded with.

        Args:
            s_a: the A images' own codes.
            s_b: the B images' own codes.

        Returns:
            Swapped codes (each domain's own, detached: the other domain's content takes them),
            or codes drawn from N(0, I).
        """
        if self.style_source == StyleSource.SWAPPED:
            return s_a.detach(), s_b.detach()
        return torch.randn_like(s_a), torch.randn_like(s_b)

    def _iteration(self, engine: MultiNetworkTrainer, batchdata: dict) -> dict:
        """One DADR iteration: generator step (eq. 1-4), then discriminator step.

        Args:
            engine: this trainer.
            batchdata: a batch from the loader.

        Returns:
            ``{"loss": {name: float}, "images": {name: tensor}}``.
        """
        net = self.networks
        real_a, real_b = self.prepare(batchdata[self.key_a]), self.prepare(batchdata[self.key_b])

        # Generators (encoders and decoders), with the discriminators frozen.
        self.set_requires_grad(("D_A", "D_B"), False)
        with self.autocast():
            c_a, s_a = net["Ec_A"](real_a), net["Es_A"](real_a)
            c_b, s_b = net["Ec_B"](real_b), net["Es_B"](real_b)
            rec_a, rec_b = net["G_A"](c_a, s_a), net["G_B"](c_b, s_b)  # in-domain reconstruction
            t_a, t_b = self.translation_styles(s_a, s_b)
            fake_b, fake_a = net["G_B"](c_a, t_b), net["G_A"](c_b, t_a)  # cross-domain translation
            losses = {
                "recon_A": self.lambda_recon * (rec_a - real_a).abs().mean(),
                "recon_B": self.lambda_recon * (rec_b - real_b).abs().mean(),
                "adv_AB": self.lambda_adv * self.adversarial_loss("D_B", fake_b, True, False),
                "adv_BA": self.lambda_adv * self.adversarial_loss("D_A", fake_a, True, False),
                "content_A": self.lambda_latent * (net["Ec_B"](fake_b) - c_a).abs().mean(),
                "content_B": self.lambda_latent * (net["Ec_A"](fake_a) - c_b).abs().mean(),
                "style_A": self.lambda_latent * (net["Es_A"](fake_a, track=False) - t_a).abs().mean(),
                "style_B": self.lambda_latent * (net["Es_B"](fake_b, track=False) - t_b).abs().mean(),
            }
        g_values = self.step("generators", sum(losses.values()), losses)

        # Discriminators, on real images and the detached translations.
        self.set_requires_grad(("D_A", "D_B"), True)
        fake_a, fake_b = fake_a.detach(), fake_b.detach()
        with self.autocast():
            d_losses = {
                name: self.lambda_adv
                * (self.adversarial_loss(name, real, True, True) + self.adversarial_loss(name, fake, False, True))
                for name, real, fake in (("D_A", real_a, fake_a), ("D_B", real_b, fake_b))
            }
        d_values = self.step("discriminators", d_losses["D_A"] + d_losses["D_B"], d_losses)
        images = {
            "real_A": real_a,
            "rec_A": rec_a,
            "fake_B": fake_b,
            "real_B": real_b,
            "rec_B": rec_b,
            "fake_A": fake_a,
        }
        return {"loss": {**g_values, **d_values}, "images": {k: v.detach() for k, v in images.items()}}
