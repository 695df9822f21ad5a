"""CycleGAN (Zhu et al., ICCV 2017) as a MONAI trainer."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from monai.utils.enums import StrEnum

from common.engines.base import MultiNetworkTrainer
from common.handlers.image_pool import ImagePool
from common.losses import AdversarialLoss, cycle_loss, identity_loss

__all__ = ["CycleGANTrainer", "DiscriminatorReduction"]


class DiscriminatorReduction(StrEnum):
    """How a discriminator's losses on real and fake images are combined."""

    MEAN = "mean"  # halved sum: the CycleGAN code (slows D down relative to G)
    SUM = "sum"  # RegGAN's code


class CycleGANTrainer(MultiNetworkTrainer):
    """Unpaired translation between domains A and B with two generators and two discriminators.

    Networks: ``G_AB`` (A to B), ``G_BA`` (B to A), ``D_A`` (real vs fake images of A), ``D_B``
    (of B). Optimisers: ``generators`` (both generators) and ``discriminators`` (both
    discriminators). One iteration, as the CycleGAN code's ``optimize_parameters``:

    1. forward: ``fake_B = G_AB(real_A)``, ``rec_A = G_BA(fake_B)``, ``fake_A = G_BA(real_B)``,
       ``rec_B = G_AB(fake_A)``;
    2. generator step with both discriminators frozen: adversarial losses ``G_AB`` and ``G_BA``
       (fakes judged real), cycle losses ``lambda_cycle * |rec - real|``, identity losses
       ``lambda_cycle * lambda_identity * |G_AB(real_B) - real_B|`` (and for ``G_BA``);
    3. discriminator step: ``D_A = (adv(D_A(real_A), real) + adv(D_A(pool(fake_A)), fake)) / 2``,
       likewise ``D_B``, with fakes drawn through an image pool (``discriminator_reduction``
       ``"sum"`` drops the halving, as RegGAN's code does).

    Args:
        args: :class:`MultiNetworkTrainer`'s ``device``, ``max_epochs``, ``train_data_loader``
            (batches with domain A images under ``image_keys[0]`` and domain B images under
            ``image_keys[1]``, e.g. an ``UnpairedDataset``'s ``source_image`` and
            ``target_image``), ``networks`` (``G_AB``, ``G_BA``, ``D_A``, ``D_B``) and
            ``optimizers`` (``generators``: both generators' parameters; ``discriminators``).
        lambda_cycle: cycle-consistency weight (10 in the paper).
        lambda_identity: identity weight relative to ``lambda_cycle`` (0.5 in the CycleGAN code).
        lambda_adv: weight of every adversarial term (1).
        discriminator_reduction: :class:`DiscriminatorReduction`: ``mean`` halves a
            discriminator's real + fake loss (the CycleGAN code), ``sum`` adds them (RegGAN's code).
        pool_size: image pool size (50).
        adversarial_criterion: ``lsgan`` (the paper), ``vanilla`` or ``hinge``.
        image_keys: the batch keys of the A and B images.
        kwargs: :class:`MultiNetworkTrainer`'s arguments by name and its options (``variant``,
            ``lr_schedule``, ``epoch_length``, ``amp``, ``channels_last``, ``train_handlers``,
            ``non_blocking``).

    Raises:
        ValueError: an unknown ``discriminator_reduction``, or networks/optimisers that do not
            match the declaration.
    """

    NETWORKS = ("G_AB", "G_BA", "D_A", "D_B")
    OPTIMIZERS = {"generators": ("G_AB", "G_BA"), "discriminators": ("D_A", "D_B")}
    LOSS_NAMES = ("G_AB", "G_BA", "cycle_A", "cycle_B", "idt_A", "idt_B", "D_A", "D_B")
    VISUAL_NAMES = (("real_A", "fake_B", "rec_A"), ("real_B", "fake_A", "rec_B"))
    STATE = {"pool_A": "pool_a", "pool_B": "pool_b"}

    def __init__(
        self,
        *args: Any,
        lambda_cycle: float = 10.0,
        lambda_identity: float = 0.5,
        lambda_adv: float = 1.0,
        discriminator_reduction: DiscriminatorReduction | str = DiscriminatorReduction.MEAN,
        pool_size: int = 50,
        adversarial_criterion: str = "lsgan",
        image_keys: Sequence[str] = ("source_image", "target_image"),
        **kwargs: Any,
    ) -> None:
        if discriminator_reduction not in list(DiscriminatorReduction):
            raise ValueError(
                f"Unknown discriminator_reduction {discriminator_reduction!r}; expected one of "
                f"{', '.join(DiscriminatorReduction)}."
            )
        super().__init__(*args, **kwargs)
        self.lambda_cycle, self.lambda_identity, self.lambda_adv = lambda_cycle, lambda_identity, lambda_adv
        self.discriminator_weight = 0.5 if discriminator_reduction == DiscriminatorReduction.MEAN else 1.0
        self.adversarial = AdversarialLoss(adversarial_criterion)
        self.pool_a, self.pool_b = ImagePool(pool_size), ImagePool(pool_size)
        self.key_a, self.key_b = image_keys

    def translate(self, real_a: torch.Tensor, real_b: torch.Tensor) -> dict[str, torch.Tensor]:
        """The forward pass: both translations and both cycle reconstructions.

        Args:
            real_a: a batch of domain A.
            real_b: a batch of domain B.

        Returns:
            ``real_A, fake_B, rec_A, real_B, fake_A, rec_B`` (the grid's image names).
        """
        g_ab, g_ba = self.networks["G_AB"], self.networks["G_BA"]
        with self.autocast():
            fake_b, fake_a = g_ab(real_a), g_ba(real_b)
            rec_a, rec_b = g_ba(fake_b), g_ab(fake_a)
        return {"real_A": real_a, "fake_B": fake_b, "rec_A": rec_a, "real_B": real_b, "fake_A": fake_a, "rec_B": rec_b}

    def generator_losses(self, images: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The generators' adversarial (fakes judged real), cycle and identity losses, weighted.

        Call with the discriminators frozen.

        Args:
            images: :meth:`translate`'s output.

        Returns:
            ``G_AB, G_BA, cycle_A, cycle_B`` (and ``idt_A, idt_B`` when ``lambda_identity > 0``).
        """
        adv, g_ab, g_ba = self.adversarial, self.networks["G_AB"], self.networks["G_BA"]
        real_a, real_b = images["real_A"], images["real_B"]
        with self.autocast():
            losses = {
                "G_AB": self.lambda_adv * adv(self.networks["D_B"](images["fake_B"]), True, for_discriminator=False),
                "G_BA": self.lambda_adv * adv(self.networks["D_A"](images["fake_A"]), True, for_discriminator=False),
                "cycle_A": self.lambda_cycle * cycle_loss(images["rec_A"], real_a),
                "cycle_B": self.lambda_cycle * cycle_loss(images["rec_B"], real_b),
            }
            if self.lambda_identity > 0:
                weight = self.lambda_cycle * self.lambda_identity
                losses["idt_A"] = weight * identity_loss(g_ab(real_b), real_b)
                losses["idt_B"] = weight * identity_loss(g_ba(real_a), real_a)
        return losses

    def discriminator_step(self, images: dict[str, torch.Tensor]) -> dict[str, float]:
        """Steps both discriminators on real images and pooled (detached) fakes.

        Args:
            images: :meth:`translate`'s output.

        Returns:
            ``D_A`` and ``D_B`` as floats.
        """
        adv, d_a, d_b = self.adversarial, self.networks["D_A"], self.networks["D_B"]
        weight = self.discriminator_weight * self.lambda_adv
        self.set_requires_grad(("D_A", "D_B"), True)
        with self.autocast():
            losses = {
                "D_A": weight
                * (adv(d_a(images["real_A"]), True) + adv(d_a(self.pool_a.query(images["fake_A"])), False)),
                "D_B": weight
                * (adv(d_b(images["real_B"]), True) + adv(d_b(self.pool_b.query(images["fake_B"])), False)),
            }
        return self.step("discriminators", losses["D_A"] + losses["D_B"], losses)

    def _iteration(self, engine: MultiNetworkTrainer, batchdata: dict) -> dict:
        """One CycleGAN iteration: forward, generator step, discriminator step.

        Args:
            engine: this trainer.
            batchdata: a batch from the loader.

        Returns:
            ``{"loss": {name: float}, "images": {name: tensor}}``.
        """
        images = self.translate(self.prepare(batchdata[self.key_a]), self.prepare(batchdata[self.key_b]))

        # Generators, with the discriminators frozen.
        self.set_requires_grad(("D_A", "D_B"), False)
        g_losses = self.generator_losses(images)
        g_values = self.step("generators", sum(g_losses.values()), g_losses)

        # Discriminators, on real images and pooled fakes.
        d_values = self.discriminator_step(images)
        return {"loss": {**g_values, **d_values}, "images": {k: v.detach() for k, v in images.items()}}
