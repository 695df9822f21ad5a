"""SIFA (Chen et al., "Unsupervised Bidirectional Cross-Modality Adaptation via Deeply Synergistic
Image and Feature Alignment", IEEE TMI 2020) as a MONAI trainer, with the losses, weights and
update order of its public code (cchen-cc/SIFA, ``main.py``: ``compute_losses`` and ``train``)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch

from common.engines.base import MultiNetworkTrainer
from common.handlers.image_pool import ImagePool
from common.losses import AdversarialLoss, cycle_loss
from common.losses.adversarial import discriminator_logits
from common.losses.segmentation import SIFATaskLoss

__all__ = ["SIFATrainer"]


class SIFATrainer(MultiNetworkTrainer):
    """Image alignment (source A -> target B) and feature alignment through a shared encoder.

    Networks (A = the labelled source, B = the target): ``G_AB`` (the generator, residual output),
    ``E_B`` (the shared encoder: features and low-level features), ``S`` and ``S_ll`` (the
    segmenters on them), ``U_BA`` (the decoder from ``E_B``'s features back to A, residual with
    the encoded image), ``D_A`` (two output channels: real/fake A and the auxiliary
    "cycle-reconstructed A or translated B"), ``D_B``, and the output-space discriminators
    ``D_P`` and ``D_P_ll`` (on ``S``'s and ``S_ll``'s logits). Optimisers: ``generator``
    (``G_AB``), ``decoder`` (``U_BA``), ``segmenter`` (``E_B``, ``S``, ``S_ll``) and
    ``discriminators`` (all four; Adam keeps one state per parameter, and each step freezes every
    network but its own, so this is the code's one optimiser per network).

    With ``fake_B = G_AB(x_A)``, ``fake_A = U_BA(E_B(x_B), x_B)``, ``cyc_A = U_BA(E_B(fake_B), fake_B)``,
    ``cyc_B = G_AB(fake_A)``, ``cycle = lambda_cycle * (|x_A - cyc_A|_1 + |x_B - cyc_B|_1)``, one
    iteration is the code's seven steps, each on a forward pass with the current weights:

    1. ``G_AB``: ``cycle + lsgan(D_B(fake_B), real)``;
    2. ``D_B``: ``(lsgan(D_B(x_B), real) + lsgan(D_B(pool(fake_B)), fake)) / 2``;
    3. ``E_B, S, S_ll``: ``ce + dice`` of ``S(E_B(fake_B))`` against the source label,
       ``+ lambda_ll * (ce + dice)`` of ``S_ll``, ``+ l2 * sum(w^2) / 2`` over their weights,
       ``+ lambda_seg_gan * (cycle + lsgan(D_A(fake_A), real))``, ``+ lambda_p * lsgan(D_P(S(E_B(x_B))), real)``
       ``+ lambda_p_ll * lsgan(D_P_ll(S_ll(...)), real) + lambda_aux * lsgan(D_A_aux(fake_A), real)``;
    4. ``U_BA``: ``cycle + lsgan(D_A(fake_A), real)``;
    5. ``D_A``: ``(lsgan(D_A(x_A), real) + lsgan(D_A(pool(fake_A)), fake)) / 2`` plus the auxiliary
       head's ``(lsgan(D_A_aux(cyc_A), real) + lsgan(D_A_aux(pool(fake_A)), fake)) / 2``;
    6. ``D_P``: ``S``'s logits on translated sources are "real", on targets "fake" (halved sum);
    7. ``D_P_ll``: the same for ``S_ll``.

    The task loss is SIFA's (:class:`~common.losses.segmentation.SIFATaskLoss`); every
    adversarial term is least squares on raw outputs (the code's ``lsgan_loss_*``).

    Args:
        args: :class:`MultiNetworkTrainer`'s ``device``, ``max_epochs``, ``train_data_loader``
            (batches with the source image and label and the target image under ``keys``),
            ``networks`` and ``optimizers``.
        lambda_cycle: cycle-consistency weight (``_LAMBDA_A`` = ``_LAMBDA_B`` = 10).
        lambda_ll: weight of the low-level segmenter's task loss (0.1).
        lambda_seg_gan: weight of the decoder's loss in the segmenter step (0.1).
        lambda_p: weight of ``D_P``'s adversarial term for the segmenter (0.1).
        lambda_p_ll: weight of ``D_P_ll``'s (0.01).
        lambda_aux: weight of ``D_A``'s auxiliary term for the segmenter (0.1).
        l2: weight decay of the segmenter step, on ``sum(w^2) / 2`` (TensorFlow's ``l2_loss``; 1e-4).
        pool_size: image pool size (50).
        keys: the batch keys of the source image, the source label and the target image.
        kwargs: :class:`MultiNetworkTrainer`'s options (``lr_schedule``, ``epoch_length``, ``amp``,
            ``channels_last``, ``train_handlers``, ``non_blocking``).
    """

    NETWORKS = ("G_AB", "E_B", "S", "S_ll", "U_BA", "D_A", "D_B", "D_P", "D_P_ll")
    OPTIMIZERS = {
        "generator": ("G_AB",),
        "decoder": ("U_BA",),
        "segmenter": ("E_B", "S", "S_ll"),
        "discriminators": ("D_A", "D_B", "D_P", "D_P_ll"),
    }
    LOSS_NAMES = (
        "G_AB_cycle",
        "G_AB_adv",
        "D_B",
        "seg_ce",
        "seg_dice",
        "seg_ll",
        "seg_l2",
        "seg_decoder",
        "seg_adv_P",
        "seg_adv_P_ll",
        "seg_adv_aux",
        "U_BA_cycle",
        "U_BA_adv",
        "D_A",
        "D_A_aux",
        "D_P",
        "D_P_ll",
    )
    VISUAL_NAMES = (("real_A", "fake_B", "cyc_A"), ("real_B", "fake_A", "cyc_B"))
    STATE = {"pool_A": "pool_a", "pool_B": "pool_b"}

    def __init__(
        self,
        *args: Any,
        lambda_cycle: float = 10.0,
        lambda_ll: float = 0.1,
        lambda_seg_gan: float = 0.1,
        lambda_p: float = 0.1,
        lambda_p_ll: float = 0.01,
        lambda_aux: float = 0.1,
        l2: float = 1e-4,
        pool_size: int = 50,
        keys: Sequence[str] = ("source_image", "source_label", "target_image"),
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.lambda_cycle, self.lambda_ll, self.lambda_seg_gan = lambda_cycle, lambda_ll, lambda_seg_gan
        self.lambda_p, self.lambda_p_ll, self.lambda_aux, self.l2 = lambda_p, lambda_p_ll, lambda_aux, l2
        self.adversarial, self.task = AdversarialLoss("lsgan"), SIFATaskLoss()
        self.pool_a, self.pool_b = ImagePool(pool_size), ImagePool(pool_size)
        self.key_image, self.key_label, self.key_target = keys

    # --- pieces of the steps -------------------------------------------------------------------
    def train_only(self, names: Iterable[str]) -> None:
        """Unfreezes the named networks and freezes every other one, so a step changes only its own.

        Args:
            names: the networks the next step trains.
        """
        names = set(names)
        self.set_requires_grad([n for n in self.networks if n not in names], False)
        self.set_requires_grad(names, True)

    def adv(self, output: Any, real: bool, channel: int | None = None, for_discriminator: bool = False) -> torch.Tensor:
        """Least squares on a discriminator's output.

        Args:
            output: the discriminator's output (logits or ``PatchDiscriminator``'s list).
            real: whether it should be judged real.
            channel: one channel of the logits (``D_A``: 0 real/fake, 1 auxiliary), or all.
            for_discriminator: ``True`` for the discriminator's own loss.

        Returns:
            The scalar loss.
        """
        logits = discriminator_logits(output)
        logits = logits if channel is None else logits[:, channel : channel + 1]
        return self.adversarial(logits, real, for_discriminator=for_discriminator)

    def cycles(self, real_a: torch.Tensor, real_b: torch.Tensor) -> dict[str, torch.Tensor]:
        """Both translations and cycle reconstructions with the current weights, and the cycle loss.

        Args:
            real_a: source images.
            real_b: target images.

        Returns:
            ``fake_B, fake_A, cyc_A, cyc_B`` and ``cycle`` (weighted).
        """
        net = self.networks
        fake_b = net["G_AB"](real_a)
        fake_a = net["U_BA"](net["E_B"](real_b)[0], real_b)
        cyc_a = net["U_BA"](net["E_B"](fake_b)[0], fake_b)
        cyc_b = net["G_AB"](fake_a)
        cycle = self.lambda_cycle * (cycle_loss(cyc_a, real_a) + cycle_loss(cyc_b, real_b))
        return {"fake_B": fake_b, "fake_A": fake_a, "cyc_A": cyc_a, "cyc_B": cyc_b, "cycle": cycle}

    def segment(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The main and the low-level segmenters' logits at the image's size.

        Args:
            image: target-domain images (real or translated).

        Returns:
            ``S``'s and ``S_ll``'s logits, each ``(B, classes, H, W)``.
        """
        features, low = self.networks["E_B"](image)
        size = image.shape[2:]
        return self.networks["S"](features, size), self.networks["S_ll"](low, size)

    def discriminator_step(self, name: str, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        """``(lsgan(D(real), real) + lsgan(D(fake), fake)) / 2`` on channel 0 of ``D``.

        Args:
            name: the discriminator.
            real: inputs it should judge real.
            fake: inputs it should judge fake (detached).

        Returns:
            The scalar loss.
        """
        d = self.networks[name]
        return 0.5 * (self.adv(d(real), True, 0, True) + self.adv(d(fake), False, 0, True))

    def extra_losses(
        self, step: str, images: dict[str, torch.Tensor], real_a: torch.Tensor, real_b: torch.Tensor
    ) -> dict:
        """Further terms of the ``generator`` or ``decoder`` step (none in SIFA; SynthMix adds its
        Inspector's), computed inside the step's autocast on its forward pass.

        Args:
            step: ``generator`` or ``decoder``.
            images: the step's :meth:`cycles` output.
            real_a: source images.
            real_b: target images.

        Returns:
            Named loss terms (weighted).
        """
        return {}

    # --- the seven steps ------------------------------------------------------------------------
    def generator_step(self, real_a: torch.Tensor, real_b: torch.Tensor) -> tuple[dict, dict]:
        """1. ``G_AB``: cycle consistency and ``D_B``'s verdict on its translations.

        Args:
            real_a: source images.
            real_b: target images.

        Returns:
            The step's :meth:`cycles` (before the update) and its losses as floats.
        """
        self.train_only(["G_AB"])
        with self.autocast():
            images = self.cycles(real_a, real_b)
            losses = {"G_AB_cycle": images["cycle"]}
            if "D_B" in self.networks:  # absent only in SynthMix's "Inspector replaces D_S, D_T"
                losses["G_AB_adv"] = self.adv(self.networks["D_B"](images["fake_B"]), True)
            losses |= self.extra_losses("generator", images, real_a, real_b)
        return images, self.step("generator", sum(losses.values()), losses)

    def target_discriminator_step(self, real_b: torch.Tensor, fake_b: torch.Tensor) -> dict:
        """2. ``D_B``: target images against pooled translations.

        Args:
            real_b: target images.
            fake_b: step 1's translations.

        Returns:
            The loss as a float.
        """
        self.train_only(["D_B"])
        with self.autocast():
            losses = {"D_B": self.discriminator_step("D_B", real_b, self.pool_b.query(fake_b.detach()))}
        return self.step("discriminators", losses["D_B"], losses)

    def segmenter_step(self, real_a: torch.Tensor, label_a: torch.Tensor, real_b: torch.Tensor) -> dict:
        """3. ``E_B, S, S_ll``: task losses on translated sources, the decoder's loss, output-space
        and auxiliary adversarial terms on targets, weight decay.

        Args:
            real_a: source images.
            label_a: their label maps ``(B, 1, H, W)``.
            real_b: target images.

        Returns:
            The losses as floats.
        """
        net = self.networks
        self.train_only(["E_B", "S", "S_ll"])
        with self.autocast():
            images = self.cycles(real_a, real_b)
            pred_fake_b, pred_fake_b_ll = self.segment(images["fake_B"])
            pred_b, pred_b_ll = self.segment(real_b)
            ce, dice = self.task(pred_fake_b, label_a)
            ce_ll, dice_ll = self.task(pred_fake_b_ll, label_a)
            image_adv = "D_A" in net
            decoder_adv = self.adv(net["D_A"](images["fake_A"]), True, channel=0) if image_adv else 0
            weights = [p for n in ("E_B", "S", "S_ll") for p in net[n].parameters()]
            losses = {
                "seg_ce": ce,
                "seg_dice": dice,
                "seg_ll": self.lambda_ll * (ce_ll + dice_ll),
                "seg_l2": self.l2 * sum((w.float() ** 2).sum() for w in weights) / 2,
                "seg_decoder": self.lambda_seg_gan * (images["cycle"] + decoder_adv),
                "seg_adv_P": self.lambda_p * self.adv(net["D_P"](pred_b), True),
                "seg_adv_P_ll": self.lambda_p_ll * self.adv(net["D_P_ll"](pred_b_ll), True),
            }
            if image_adv:
                losses["seg_adv_aux"] = self.lambda_aux * self.adv(net["D_A"](images["fake_A"]), True, channel=1)
        return self.step("segmenter", sum(losses.values()), losses)

    def decoder_step(self, real_a: torch.Tensor, real_b: torch.Tensor) -> tuple[dict, dict]:
        """4. ``U_BA``: cycle consistency and ``D_A``'s verdict on its translations.

        Args:
            real_a: source images.
            real_b: target images.

        Returns:
            The step's :meth:`cycles` (before the update) and its losses as floats.
        """
        self.train_only(["U_BA"])
        with self.autocast():
            images = self.cycles(real_a, real_b)
            losses = {"U_BA_cycle": images["cycle"]}
            if "D_A" in self.networks:
                losses["U_BA_adv"] = self.adv(self.networks["D_A"](images["fake_A"]), True, 0)
            losses |= self.extra_losses("decoder", images, real_a, real_b)
        return images, self.step("decoder", sum(losses.values()), losses)

    def source_discriminator_step(self, real_a: torch.Tensor, images: dict) -> dict:
        """5. ``D_A``: source images against pooled translations; its auxiliary head,
        cycle-reconstructed sources (with the updated decoder) against the same translations.

        Args:
            real_a: source images.
            images: step 4's :meth:`cycles`.

        Returns:
            The losses as floats.
        """
        net = self.networks
        self.train_only(["D_A"])
        with self.autocast():
            with torch.no_grad():
                fake_b = images["fake_B"].detach()
                cyc_a = net["U_BA"](net["E_B"](fake_b)[0], fake_b)
            pooled = self.pool_a.query(images["fake_A"].detach())
            d_a = net["D_A"]
            losses = {
                "D_A": self.discriminator_step("D_A", real_a, pooled),
                "D_A_aux": 0.5 * (self.adv(d_a(cyc_a), True, 1, True) + self.adv(d_a(pooled), False, 1, True)),
            }
        return self.step("discriminators", losses["D_A"] + losses["D_A_aux"], losses)

    def output_discriminator_steps(self, real_a: torch.Tensor, real_b: torch.Tensor) -> dict:
        """6-7. ``D_P``, then ``D_P_ll``: predictions on translated sources are "real", on targets "fake".

        Args:
            real_a: source images.
            real_b: target images.

        Returns:
            The losses as floats.
        """
        values = {}
        with torch.no_grad(), self.autocast():
            pred_fake_b, pred_fake_b_ll = self.segment(self.networks["G_AB"](real_a))
            pred_b, pred_b_ll = self.segment(real_b)
        for name, real, fake in (("D_P", pred_fake_b, pred_b), ("D_P_ll", pred_fake_b_ll, pred_b_ll)):
            self.train_only([name])
            with self.autocast():
                losses = {name: self.discriminator_step(name, real, fake)}
            values |= self.step("discriminators", losses[name], losses)
        return values

    def _iteration(self, engine: MultiNetworkTrainer, batchdata: dict) -> dict:
        """SIFA's seven steps, in the code's order, each on a forward pass with the current weights.

        Args:
            engine: this trainer.
            batchdata: a batch from the loader.

        Returns:
            ``{"loss": {name: float}, "images": {name: tensor}}``.
        """
        real_a, real_b = self.prepare(batchdata[self.key_image]), self.prepare(batchdata[self.key_target])
        label_a = self.prepare(batchdata[self.key_label])
        images, values = self.generator_step(real_a, real_b)
        if "D_B" in self.networks:
            values |= self.target_discriminator_step(real_b, images["fake_B"])
        values |= self.segmenter_step(real_a, label_a, real_b)
        images, decoder = self.decoder_step(real_a, real_b)
        values |= decoder
        if "D_A" in self.networks:
            values |= self.source_discriminator_step(real_a, images)
        values |= self.output_discriminator_steps(real_a, real_b)
        self.train_only(self.networks)
        shown = {"real_A": real_a, "real_B": real_b, **{k: images[k] for k in ("fake_B", "fake_A", "cyc_A", "cyc_B")}}
        return {"loss": values, "images": {k: v.detach() for k, v in shown.items()}}
