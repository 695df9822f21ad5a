"""Global-local union alignment (Su et al., "Mind the Gap") as two MONAI trainers. Stage 1, the
global alignment (:class:`StyleTransferTrainer`): a style-transfer subnet whose one encoder and
one decoder are conditioned on the domain label. Stage 2, the local alignment
(:class:`LocalAlignmentTrainer`): the segmenter on translated source images and target images
with a feature-space discriminator ``D1``, whose uncertainty masks the target features, and an
output-space discriminator ``D2``.

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
import torch.nn.functional as F

from common.engines.base import MultiNetworkTrainer
from common.losses import AdversarialLoss
from common.networks.global_local import LocalMask, local_feature_mask, reweight_features

__all__ = ["StyleTransferTrainer", "LocalAlignmentTrainer", "SOURCE_DOMAIN", "TARGET_DOMAIN", "GLOBAL_LOCAL_METHODS"]

#: The domain labels: the labelled source is 0, the target 1.
SOURCE_DOMAIN, TARGET_DOMAIN = 0, 1

#: The rows the global-local alignment bundle trains (its `method` id): the full method, the
#: ablations of the paper's Table III, CycleGAN + segmenter (Table I's comparison), and the
#: segmenter alone on source (no adaptation) or on labelled target (supervised, the upper bound).
GLOBAL_LOCAL_METHODS = (
    "full",  # style transfer + D1 (with the local mask) + D2
    "style_only",  # style transfer, then the segmenter on the translations
    "d1_only",  # style transfer + D1
    "d2_only",  # style transfer + D2
    "d1_d2_no_style",  # D1 + D2 on the untranslated source
    "cyclegan",  # CycleGAN in place of the style transfer, then the segmenter on its translations
    "no_adaptation",
    "supervised",
)


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


class LocalAlignmentTrainer(MultiNetworkTrainer):
    """Stage 2, the local alignment: the segmenter ``S = S_P(S_E(.))`` on translated source
    images and target images, with ``D1`` on ``S_E``'s features and ``D2`` on ``S``'s outputs.

    Networks: ``S_E``, ``S_P``, ``D1`` (logit per feature location: target 1, source 0), ``D2``
    (output space, softmax in). Optimisers: ``segmenter`` (``S_E`` and ``S_P``; the paper's
    SGD 0.9, weight decay 5e-4, poly 0.9) and ``discriminators`` (``D1`` and ``D2``; Adam
    (0.9, 0.99)). With ``x_ST`` the source images translated by the frozen stage-1 ``translator``
    (or as they are without one), one iteration is:

    1. segmenter step with ``D1``, ``D2`` frozen: ``f_ST = S_E(x_ST)``, ``p_ST = S_P(f_ST)``,
       ``L_seg`` = cross entropy with the source labels; ``f_T = S_E(x_T)``; the local feature
       mask ``M`` from ``D1(f_T)`` (:func:`~common.networks.local_feature_mask`, detached);
       ``p_T = S_P((1 + M) f_T)``; ``L_adv^D1`` = the mean over locations of
       ``(1 + M) BCE(D1(f_T), source)`` (the local adversarial loss, re-weighted by the mask);
       ``L_adv^D2 = BCE(D2(softmax(p_T)), source)``; minimising
       ``L_seg + lambda_d1 L_adv^D1 + lambda_d2 L_adv^D2``;
    2. discriminator step: ``D1`` on ``f_ST`` (source) and ``f_T`` (target), ``D2`` on
       ``softmax(p_ST)`` and ``softmax(p_T)``, all detached; binary cross entropy
       (AdaptSegNet's criterion, which the paper's output-space term follows).

    Leaving ``D1`` or ``D2`` out of ``networks`` drops it and its terms (the paper's ablations;
    without ``D1`` there is no mask); ``local_mask`` ``none`` keeps ``D1`` and drops the mask
    (plain feature-space alignment). Target labels are never read.

    Args:
        args: :class:`MultiNetworkTrainer`'s ``device``, ``max_epochs``, ``train_data_loader``
            (batches with ``source_image``, ``source_label``, ``target_image`` by default),
            ``networks`` and ``optimizers``.
        translator: the stage-1 source-to-target network (run in eval mode, without gradients;
            no optimiser of this stage holds it), or ``None``.
        lambda_d1: ``L_adv^D1``'s weight (0.01).
        lambda_d2: ``L_adv^D2``'s weight (0.01).
        local_mask: ``entropy`` (default), ``certainty`` or ``none``.
        keys: the batch keys of the source images, source labels and target images.
        kwargs: :class:`MultiNetworkTrainer`'s options.

    Raises:
        ValueError: an unknown mask, or networks/optimisers that do not match the declaration.
    """

    NETWORKS = ("S_E", "S_P", "D1", "D2")
    OPTIONAL_NETWORKS = ("D1", "D2")
    OPTIMIZERS = {"segmenter": ("S_E", "S_P"), "discriminators": ("D1", "D2")}
    LOSS_NAMES = ("seg", "adv_D1", "adv_D2", "D1", "D2")
    VISUAL_NAMES = (("source", "prediction_source"), ("target", "prediction_target", "mask"))

    def __init__(
        self,
        *args: Any,
        translator: torch.nn.Module | None = None,
        lambda_d1: float = 0.01,
        lambda_d2: float = 0.01,
        local_mask: str = "entropy",
        keys: Sequence[str] = ("source_image", "source_label", "target_image"),
        **kwargs: Any,
    ) -> None:
        if local_mask != "none" and local_mask not in list(LocalMask):
            raise ValueError(f"Unknown local_mask {local_mask!r}; expected one of {', '.join(LocalMask)}, none.")
        super().__init__(*args, **kwargs)
        # The same module stage 1 trains (a bundle builds every stage's trainer before stage 1
        # runs): not frozen here; stage 2 only runs it in eval mode without gradients.
        self.translator = translator.to(self.state.device) if translator is not None else None
        self.lambda_d1, self.lambda_d2 = lambda_d1, lambda_d2
        self.use_d1, self.use_d2, self.local_mask = "D1" in self.networks, "D2" in self.networks, local_mask
        self.key_image, self.key_label, self.key_target = keys

    @staticmethod
    def bce(logits: torch.Tensor, source: bool, weight: torch.Tensor | None = None) -> torch.Tensor:
        """Binary cross entropy of discriminator logits against "source" (0) or "target" (1).

        Args:
            logits: ``(B, 1, h, w)``.
            source: the label.
            weight: per-location weights (the local mask's ``1 + M``), or ``None``.

        Returns:
            The mean loss.
        """
        target = torch.zeros_like(logits) if source else torch.ones_like(logits)
        return F.binary_cross_entropy_with_logits(logits.float(), target.float(), weight=weight)

    def _iteration(self, engine: MultiNetworkTrainer, batchdata: dict) -> dict:
        """One stage-2 iteration: the segmenter step, then the discriminators' step.

        Args:
            engine: this trainer.
            batchdata: a batch from the loader.

        Returns:
            ``{"loss": {name: float}, "images": {name: tensor}}``.
        """
        net = self.networks
        source, target = self.prepare(batchdata[self.key_image]), self.prepare(batchdata[self.key_target])
        label = self.prepare(batchdata[self.key_label])[:, 0].round().long()
        if self.translator is not None:
            self.translator.eval()
            with torch.no_grad(), self.autocast():
                source = self.translator(source).float()

        # 1. S_E and S_P, with D1 and D2 frozen.
        self.set_requires_grad(("D1", "D2"), False)
        with self.autocast():
            f_s = net["S_E"](source)
            p_s = net["S_P"](f_s)
            f_t = net["S_E"](target)
            losses = {"seg": F.cross_entropy(p_s.float(), label)}
            mask = None  # no D1, or D1 without the mask: every location weighs 1
            if self.use_d1:
                d1_t = net["D1"](f_t)
                if self.local_mask != "none":
                    mask = local_feature_mask(d1_t, self.local_mask)
                weight = None if mask is None else 1.0 + mask
                losses["adv_D1"] = self.lambda_d1 * self.bce(d1_t, source=True, weight=weight)
            p_t = net["S_P"](f_t if mask is None else reweight_features(f_t, mask))
            if self.use_d2:
                losses["adv_D2"] = self.lambda_d2 * self.bce(net["D2"](p_t.float().softmax(1)), source=True)
        values = self.step("segmenter", sum(losses.values()), losses)

        # 2. D1 and D2 on this iteration's (detached) features and outputs.
        self.set_requires_grad(("D1", "D2"), True)
        d_losses = {}
        with self.autocast():
            if self.use_d1:
                d_losses["D1"] = self.bce(net["D1"](f_s.detach()), True) + self.bce(net["D1"](f_t.detach()), False)
            if self.use_d2:
                q_s, q_t = p_s.detach().float().softmax(1), p_t.detach().float().softmax(1)
                d_losses["D2"] = self.bce(net["D2"](q_s), True) + self.bce(net["D2"](q_t), False)
        if d_losses:
            values.update(self.step("discriminators", sum(d_losses.values()), d_losses))
        classes = max(p_s.shape[1] - 1, 1)  # label maps and the mask shown on [-1, 1]
        shown = torch.zeros_like(f_t[:, :1]).float() if mask is None else mask
        images = {
            "source": source,
            "prediction_source": p_s.argmax(1, keepdim=True).float() / classes * 2 - 1,
            "target": target,
            "prediction_target": p_t.argmax(1, keepdim=True).float() / classes * 2 - 1,
            "mask": F.interpolate(shown, size=tuple(target.shape[2:]), mode="nearest") * 2 - 1,
        }
        return {"loss": values, "images": {k: v.detach() for k, v in images.items()}}
