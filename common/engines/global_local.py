"""Stage 1 of global-local union alignment (Su et al., "Mind the Gap"), the global alignment: a
style-transfer subnet whose one encoder and one decoder are conditioned on the domain label,
trained as a MONAI trainer.

Our text of the paper lost the stage-1 loss equations; the prose names the terms and their
weights ("lambda_rec.im = lambda_cyc = 20, lambda_rec.c = lambda_adv = 1") and cites StarGAN and
MUNIT for the rest. The reconstruction, each choice switchable where there is one:

- image reconstruction: ``|G_D(G_E(x_i, d_i), d_i) - x_i|_1``;
- cycle: ``|G_D(G_E(x_ij, d_j), d_i) - x_i|_1`` with ``x_ij = G_D(G_E(x_i, d_i), d_j)``
  (StarGAN's reconstruction loss);
- content reconstruction: ``|G_E(x_ij, d_j) - G_E(x_i, d_i)|_1`` (MUNIT's latent
  reconstruction; neither side detached, as MUNIT);
- adversarial: the domain-conditional PatchGAN ``D(x | d)`` judges ``x_ij`` against real images
  of ``d_j``; least squares by default (MUNIT's ``gan_type``; StarGAN's WGAN-GP is not offered),
  ``vanilla`` or ``hinge`` switchable.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from common.engines.base import MultiNetworkTrainer
from common.losses import AdversarialLoss

__all__ = ["StyleTransferTrainer", "SOURCE_DOMAIN", "TARGET_DOMAIN"]

#: The domain labels: the labelled source is 0, the target 1.
SOURCE_DOMAIN, TARGET_DOMAIN = 0, 1


class StyleTransferTrainer(MultiNetworkTrainer):
    """Global alignment: one iteration is a generator step, then a discriminator step.

    Networks: ``G_E`` (:class:`~common.networks.DomainEncoder`, ``G_E(x, d)``), ``G_D``
    (:class:`~common.networks.DomainDecoder`, ``G_D(c, d)``) and ``D``
    (:class:`~common.networks.DomainPatchDiscriminator`, ``D(x, d)``). Optimisers:
    ``generator`` (``G_E`` and ``G_D``) and ``discriminator`` (``D``). With ``d_S = 0`` for the
    source images ``x_S`` and ``d_T = 1`` for the target images ``x_T``:

    1. generator step with ``D`` frozen: ``c_i = G_E(x_i, d_i)``; ``x_ii = G_D(c_i, d_i)``;
       ``x_ST = G_D(c_S, d_T)``, ``x_TS = G_D(c_T, d_S)``; ``c_ST = G_E(x_ST, d_T)``,
       ``c_TS = G_E(x_TS, d_S)``; ``x_STS = G_D(c_ST, d_S)``, ``x_TST = G_D(c_TS, d_T)``;
       minimising ``lambda_image |x_ii - x_i|_1 + lambda_cycle |x_STS - x_S|_1 (and T) +
       lambda_content |c_ST - c_S|_1 (and T) + lambda_adv (L(D(x_ST, d_T), real) + L(D(x_TS,
       d_S), real))``;
    2. discriminator step: ``lambda_adv`` times ``D`` on ``x_S | d_S`` and ``x_T | d_T`` (real)
       and on the detached ``x_TS | d_S`` and ``x_ST | d_T`` (fake).

    Only images are read: the source labels are not needed in this stage, the target labels
    never.

    Args:
        args: :class:`MultiNetworkTrainer`'s ``device``, ``max_epochs``, ``train_data_loader``
            (source images under ``image_keys[0]``, target images under ``image_keys[1]``),
            ``networks`` and ``optimizers``.
        lambda_image: image reconstruction weight (20 in the paper).
        lambda_cycle: cycle-consistency weight (20).
        lambda_content: content reconstruction weight (1).
        lambda_adv: adversarial weight (1).
        adversarial_criterion: ``lsgan`` (default), ``vanilla`` or ``hinge``.
        image_keys: the batch keys of the source and target images.
        kwargs: :class:`MultiNetworkTrainer`'s options (``lr_schedule``, ``epoch_length``,
            ``amp``, ``channels_last``, ``train_handlers``, ``non_blocking``).

    Raises:
        ValueError: an unknown criterion, or networks/optimisers that do not match the declaration.
    """

    NETWORKS = ("G_E", "G_D", "D")
    OPTIMIZERS = {"generator": ("G_E", "G_D"), "discriminator": ("D",)}
    LOSS_NAMES = ("image_S", "image_T", "cycle_S", "cycle_T", "content_S", "content_T", "adv_ST", "adv_TS", "D")
    VISUAL_NAMES = (("real_S", "rec_S", "fake_T", "cycle_S"), ("real_T", "rec_T", "fake_S", "cycle_T"))

    def __init__(
        self,
        *args: Any,
        lambda_image: float = 20.0,
        lambda_cycle: float = 20.0,
        lambda_content: float = 1.0,
        lambda_adv: float = 1.0,
        adversarial_criterion: str = "lsgan",
        image_keys: Sequence[str] = ("source_image", "target_image"),
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.lambda_image, self.lambda_cycle = lambda_image, lambda_cycle
        self.lambda_content, self.lambda_adv = lambda_content, lambda_adv
        self.adversarial = AdversarialLoss(adversarial_criterion)
        self.key_s, self.key_t = image_keys

    def critic(self, image: torch.Tensor, domain: torch.Tensor, real: bool, for_discriminator: bool) -> torch.Tensor:
        """``D(image | domain)``'s adversarial loss, unweighted.

        Args:
            image: the images it scores.
            domain: their domain labels ``(B,)``.
            real: whether they should be judged real images of ``domain``.
            for_discriminator: ``False`` for the generator's loss.

        Returns:
            The scalar loss.
        """
        return self.adversarial(self.networks["D"](image, domain), real, for_discriminator=for_discriminator)

    def _iteration(self, engine: MultiNetworkTrainer, batchdata: dict) -> dict:
        """One stage-1 iteration: the generator step, then the discriminator step.

        Args:
            engine: this trainer.
            batchdata: a batch from the loader.

        Returns:
            ``{"loss": {name: float}, "images": {name: tensor}}``.
        """
        encode, decode = self.networks["G_E"], self.networks["G_D"]
        real_s, real_t = self.prepare(batchdata[self.key_s]), self.prepare(batchdata[self.key_t])
        d_s = torch.full((real_s.shape[0],), SOURCE_DOMAIN, dtype=torch.long, device=real_s.device)
        d_t = torch.full((real_t.shape[0],), TARGET_DOMAIN, dtype=torch.long, device=real_t.device)

        # 1. The encoder and the decoder, with D frozen.
        self.set_requires_grad(("D",), False)
        with self.autocast():
            c_s, c_t = encode(real_s, d_s), encode(real_t, d_t)
            rec_s, rec_t = decode(c_s, d_s), decode(c_t, d_t)
            fake_t, fake_s = decode(c_s, d_t), decode(c_t, d_s)  # x_ST, x_TS
            c_st, c_ts = encode(fake_t, d_t), encode(fake_s, d_s)
            cycle_s, cycle_t = decode(c_st, d_s), decode(c_ts, d_t)
            losses = {
                "image_S": self.lambda_image * (rec_s - real_s).abs().mean(),
                "image_T": self.lambda_image * (rec_t - real_t).abs().mean(),
                "cycle_S": self.lambda_cycle * (cycle_s - real_s).abs().mean(),
                "cycle_T": self.lambda_cycle * (cycle_t - real_t).abs().mean(),
                "content_S": self.lambda_content * (c_st - c_s).abs().mean(),
                "content_T": self.lambda_content * (c_ts - c_t).abs().mean(),
                "adv_ST": self.lambda_adv * self.critic(fake_t, d_t, True, False),
                "adv_TS": self.lambda_adv * self.critic(fake_s, d_s, True, False),
            }
        g_values = self.step("generator", sum(losses.values()), losses)

        # 2. D, on real images of each domain and the detached translations into it.
        self.set_requires_grad(("D",), True)
        fake_s, fake_t = fake_s.detach(), fake_t.detach()
        with self.autocast():
            d_loss = self.lambda_adv * (
                self.critic(real_s, d_s, True, True)
                + self.critic(real_t, d_t, True, True)
                + self.critic(fake_s, d_s, False, True)
                + self.critic(fake_t, d_t, False, True)
            )
        d_values = self.step("discriminator", d_loss, {"D": d_loss})
        images = {
            "real_S": real_s,
            "rec_S": rec_s,
            "fake_T": fake_t,
            "cycle_S": cycle_s,
            "real_T": real_t,
            "rec_T": rec_t,
            "fake_S": fake_s,
            "cycle_T": cycle_t,
        }
        return {"loss": {**g_values, **d_values}, "images": {k: v.detach() for k, v in images.items()}}
