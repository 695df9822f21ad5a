"""CycleGAN (Zhu et al., ICCV 2017) as a MONAI trainer."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import nn

from common.engines.base import MultiNetworkTrainer
from common.handlers.image_pool import ImagePool
from common.losses import AdversarialLoss, cycle_loss, identity_loss

__all__ = ["CycleGANTrainer"]


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
       likewise ``D_B``, with fakes drawn through an image pool.

    Loss names (the stats handlers' keys): ``G_AB, G_BA, cycle_A, cycle_B, idt_A, idt_B, D_A, D_B``.
    Image names (for grids): ``real_A, fake_B, rec_A, real_B, fake_A, rec_B``.

    Args:
        device: where to train.
        max_epochs: epochs to run.
        train_data_loader: batches with domain A images under ``image_keys[0]`` and domain B
            images under ``image_keys[1]`` (e.g. an ``UnpairedDataset``'s ``source_image`` and
            ``target_image``).
        generator_ab: the A-to-B generator.
        generator_ba: the B-to-A generator.
        discriminator_a: the discriminator of domain A.
        discriminator_b: the discriminator of domain B.
        optimizer_g: optimiser over both generators' parameters.
        optimizer_d: optimiser over both discriminators' parameters.
        lambda_cycle: cycle-consistency weight (10 in the paper).
        lambda_identity: identity weight relative to ``lambda_cycle`` (0.5 in the CycleGAN code).
        pool_size: image pool size (50).
        adversarial_criterion: ``lsgan`` (the paper), ``vanilla`` or ``hinge``.
        image_keys: the batch keys of the A and B images.
        kwargs: :class:`MultiNetworkTrainer`'s options (``epoch_length``, ``amp``,
            ``channels_last``, ``train_handlers``, ``non_blocking``).
    """

    def __init__(
        self,
        device: torch.device | str,
        max_epochs: int,
        train_data_loader: Iterable,
        generator_ab: nn.Module,
        generator_ba: nn.Module,
        discriminator_a: nn.Module,
        discriminator_b: nn.Module,
        optimizer_g: torch.optim.Optimizer,
        optimizer_d: torch.optim.Optimizer,
        lambda_cycle: float = 10.0,
        lambda_identity: float = 0.5,
        pool_size: int = 50,
        adversarial_criterion: str = "lsgan",
        image_keys: Sequence[str] = ("source_image", "target_image"),
        **kwargs: Any,
    ) -> None:
        super().__init__(
            device, max_epochs, train_data_loader,
            networks={"G_AB": generator_ab, "G_BA": generator_ba, "D_A": discriminator_a, "D_B": discriminator_b},
            optimizers={"generators": optimizer_g, "discriminators": optimizer_d},
            **kwargs,
        )
        self.lambda_cycle, self.lambda_identity = lambda_cycle, lambda_identity
        self.adversarial = AdversarialLoss(adversarial_criterion)
        self.pool_a, self.pool_b = ImagePool(pool_size), ImagePool(pool_size)
        self.key_a, self.key_b = image_keys

    def _iteration(self, engine: MultiNetworkTrainer, batchdata: dict) -> dict:
        """One CycleGAN iteration: forward, generator step, discriminator step.

        Args:
            engine: this trainer.
            batchdata: a batch from the loader.

        Returns:
            ``{"loss": {name: float}, "images": {name: tensor}}``.
        """
        g_ab, g_ba, d_a, d_b = (self.networks[n] for n in ("G_AB", "G_BA", "D_A", "D_B"))
        real_a, real_b = self.prepare(batchdata[self.key_a]), self.prepare(batchdata[self.key_b])
        adv = self.adversarial

        with self.autocast():
            fake_b = g_ab(real_a)
            rec_a = g_ba(fake_b)
            fake_a = g_ba(real_b)
            rec_b = g_ab(fake_a)

        # Generators, with the discriminators frozen.
        self.set_requires_grad(("D_A", "D_B"), False)
        with self.autocast():
            g_losses = {
                "G_AB": adv(d_b(fake_b), True, for_discriminator=False),
                "G_BA": adv(d_a(fake_a), True, for_discriminator=False),
                "cycle_A": self.lambda_cycle * cycle_loss(rec_a, real_a),
                "cycle_B": self.lambda_cycle * cycle_loss(rec_b, real_b),
            }
            if self.lambda_identity > 0:
                weight = self.lambda_cycle * self.lambda_identity
                g_losses["idt_A"] = weight * identity_loss(g_ab(real_b), real_b)
                g_losses["idt_B"] = weight * identity_loss(g_ba(real_a), real_a)
        g_values = self.step("generators", sum(g_losses.values()), g_losses)

        # Discriminators, on real images and pooled fakes.
        self.set_requires_grad(("D_A", "D_B"), True)
        with self.autocast():
            d_losses = {
                "D_A": 0.5 * (adv(d_a(real_a), True) + adv(d_a(self.pool_a.query(fake_a)), False)),
                "D_B": 0.5 * (adv(d_b(real_b), True) + adv(d_b(self.pool_b.query(fake_b)), False)),
            }
        d_values = self.step("discriminators", d_losses["D_A"] + d_losses["D_B"], d_losses)

        images = {"real_A": real_a, "fake_B": fake_b, "rec_A": rec_a, "real_B": real_b, "fake_A": fake_a, "rec_B": rec_b}
        return {"loss": {**g_values, **d_values}, "images": {k: v.detach() for k, v in images.items()}}
