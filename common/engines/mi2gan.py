"""MI2GAN (Xie et al., MICCAI 2020): CycleGAN plus X-shape dual auto-encoders and a
mutual-information discriminator that keep the content of a translated image."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Any

import torch
from monai.utils.enums import StrEnum

from common.engines.base import MultiNetworkTrainer
from common.engines.cyclegan import CycleGANTrainer
from common.losses import distillation_loss

__all__ = ["MI2GANTrainer", "MIMarginal"]

AUTOENCODERS = ("Enc_A", "Dec_A", "Enc_B", "Dec_B")
TRANSLATION = ("G_AB", "G_BA", "D_A", "D_B")


class MIMarginal(StrEnum):
    """Where ``D_MI``'s marginal pairs come from.

    - ``product``: the product of the marginals of ``Z_a`` and ``Z_ab`` that eq. 6 names: ``z_a``
      with the code of *another* image's translation (the batch's other translations at batch
      >= 2; a queue of recent translations at batch 1);
    - ``real``: the paper's prose, ``z_a`` with the code of a random real image of domain B.
    """

    PRODUCT = "product"
    REAL = "real"


class MI2GANTrainer(CycleGANTrainer):
    """Eq. 7 of MI2GAN, optimised as the paper's section 2.3 says.

    ``L = L_adv(G_BA, D_A) + L_adv(G_AB, D_B) + alpha L_cyc + beta L_dis(G_AB, Enc_A, Dec_A, Dec_B)
    + beta L_dis(G_BA, Enc_B, Dec_B, Dec_A) - I_DV(G_AB, Enc_A, Enc_B, D_MI) - I_DV(G_BA, Enc_A, Enc_B, D_MI)``
    (the DV bound is maximised, so it enters the minimised loss with a minus sign).

    The mutual-information terms (:class:`~common.losses.MutualInformationEstimator`, whose
    estimator the bundle chooses): for ``A -> B``, joint pairs ``(z_a, z_ab)`` with
    ``z_a = Enc_A(I_a)`` and ``z_ab = Enc_B(G_AB(I_a))``, concatenated along the channels for
    ``D_MI``; marginal pairs by ``mi_marginal`` (:class:`MIMarginal`): ``product``, ``z_a`` with
    the ``z_ab`` of other images (the batch rolled at batch >= 2, or every translation in a queue
    of the ``mi_queue_size`` most recent ones at batch 1; the term is skipped until the queue
    holds one), or ``real``, ``z_a`` with ``z_b = Enc_B(I_b)`` of the batch's real B image (the
    paper's prose). ``B -> A`` likewise with the roles swapped and the same ``D_MI``. The DV
    bound of the same critic scores is logged as ``MI_DV_A``/``MI_DV_B`` whatever the estimator.
    ``L_dis`` is eq. 5 (:func:`~common.losses.distillation_loss`).

    The trainer extends :class:`~common.engines.CycleGANTrainer` (its forward pass,
    adversarial and cycle losses and discriminator step). One iteration:

    1. forward: ``fake_B = G_AB(real_A)``, ``rec_A = G_BA(fake_B)``, ``fake_A = G_BA(real_B)``,
       ``rec_B = G_AB(fake_A)``;
    2. generators, with the auto-encoders, ``D_MI``, ``D_A`` and ``D_B`` fixed: adversarial,
       ``alpha`` cycle, ``beta L_dis`` and ``-lambda_mi I_DV`` in both directions;
    3. with the generators fixed (their outputs detached): ``D_A`` and ``D_B`` on real images
       and pooled fakes (CycleGAN's halved LSGAN loss), then the auto-encoders and ``D_MI`` on
       ``beta L_dis - lambda_mi I_DV`` in both directions (with ``mi_encoders`` false, the
       encoders learn from ``L_dis`` alone and only ``D_MI`` ascends the term there).

    The variants (``method``) are the rows of the paper's Table 1 that train a translation:
    ``cyclegan`` (eq. 7 without ``L_dis`` and ``D_MI``), ``mi2gan_no_dmi`` (the ablation "MI2GAN
    w/o D_MI": the auto-encoders but no ``D_MI``) and ``mi2gan``; ``direct`` (no adaptation)
    trains nothing, so it has no trainer and :meth:`networks_for` returns no network for it.

    Losses (``LOSS_NAMES``) besides CycleGAN's: ``dis_A, dis_B`` (the generator step's
    ``beta L_dis``), ``MI_A, MI_B`` (the DV bound in nats, higher is more content kept),
    ``AE_dis_A, AE_dis_B`` and ``D_MI_A, D_MI_B`` (the same terms in the content step).

    Args:
        args: :class:`~common.engines.MultiNetworkTrainer`'s ``device``, ``max_epochs``,
            ``train_data_loader`` (batches with domain A images under ``image_keys[0]`` and
            domain B images under ``image_keys[1]``), ``networks`` (``G_AB``, ``G_BA``, ``D_A``,
            ``D_B`` and by method the auto-encoders ``Enc_A``, ``Dec_A``, ``Enc_B``, ``Dec_B`` and
            ``D_MI``, an estimator owning its critic: :meth:`networks_for` ``(method)``) and
            ``optimizers`` (``generators``, ``discriminators`` and, with the auto-encoders,
            ``content``: the auto-encoders and ``D_MI``).
        method: ``cyclegan``, ``mi2gan_no_dmi`` or ``mi2gan``.
        lambda_cycle: ``alpha`` (10).
        lambda_distillation: ``beta`` (10).
        lambda_mi: weight of the DV terms (1 in eq. 7).
        mi_marginal: ``real`` (the paper's prose, the default) or ``product`` (eq. 6), see above.
        mi_queue_size: translations kept per direction for the product marginal at batch 1.
        mi_encoders: whether the encoders ascend the mutual-information term in the content step.
        lambda_identity: CycleGAN's identity weight relative to ``alpha`` (0: eq. 7 has none).
        pool_size: image pool of the discriminators (50).
        adversarial_criterion: ``lsgan`` (CycleGAN's), ``vanilla`` or ``hinge``.
        image_keys: batch keys of the A and B images. The default makes A the datalist's target
            centre and B its source centre (an ``UnpairedDataset``'s ``target_image`` and
            ``source_image``): ``G_AB`` translates target images into the source domain, where
            the segmenter was trained, as the paper translates its test centre into its training centre.
        kwargs: :class:`~common.engines.MultiNetworkTrainer`'s arguments by name and its options.

    Raises:
        ValueError: an unknown method, or networks/optimisers that do not match it.
    """

    NETWORKS = (*TRANSLATION, *AUTOENCODERS, "D_MI")
    VARIANTS = {
        "direct": (),
        "cyclegan": TRANSLATION,
        "mi2gan_no_dmi": (*TRANSLATION, *AUTOENCODERS),
        "mi2gan": (*TRANSLATION, *AUTOENCODERS, "D_MI"),
    }
    OPTIMIZERS = {**CycleGANTrainer.OPTIMIZERS, "content": (*AUTOENCODERS, "D_MI")}
    LOSS_NAMES = (
        *CycleGANTrainer.LOSS_NAMES,
        "dis_A",
        "dis_B",
        "MI_A",
        "MI_B",
        "MI_DV_A",
        "MI_DV_B",
        "AE_dis_A",
        "AE_dis_B",
        "D_MI_A",
        "D_MI_B",
    )
    VISUAL_NAMES = (
        ("real_A", "fake_B", "rec_A", "ae_rec_A", "ae_cross_B"),
        ("real_B", "fake_A", "rec_B", "ae_rec_B", "ae_cross_A"),
    )

    def __init__(
        self,
        *args: Any,
        method: str = "mi2gan",
        lambda_cycle: float = 10.0,
        lambda_distillation: float = 10.0,
        lambda_mi: float = 1.0,
        mi_marginal: MIMarginal | str = MIMarginal.REAL,
        mi_queue_size: int = 16,
        mi_encoders: bool = True,
        lambda_identity: float = 0.0,
        pool_size: int = 50,
        adversarial_criterion: str = "lsgan",
        image_keys: Sequence[str] = ("target_image", "source_image"),
        **kwargs: Any,
    ) -> None:
        super().__init__(
            *args,
            variant=method,
            lambda_cycle=lambda_cycle,
            lambda_identity=lambda_identity,
            pool_size=pool_size,
            adversarial_criterion=adversarial_criterion,
            image_keys=image_keys,
            **kwargs,
        )
        self.distill, self.mutual_information = "Enc_A" in self.networks, "D_MI" in self.networks
        self.lambda_distillation, self.lambda_mi = lambda_distillation, lambda_mi
        self.content_networks = [name for name in (*AUTOENCODERS, "D_MI") if name in self.networks]
        if mi_marginal not in list(MIMarginal):
            raise ValueError(f"Unknown `mi_marginal` {mi_marginal!r}; expected one of {', '.join(MIMarginal)}.")
        if mi_queue_size < 1:
            raise ValueError(f"`mi_queue_size` must be at least 1, got {mi_queue_size}.")
        self.mi_marginal, self.mi_encoders = MIMarginal(mi_marginal), bool(mi_encoders)
        # Recent translations G_xy(I_x) per direction x, the product marginal's negatives at batch 1.
        self.translation_queues = {x: deque(maxlen=mi_queue_size) for x in ("A", "B")}

    def grid_rows(self) -> list[list[str]]:
        """The image-grid rows: per direction, real, translation, cycle reconstruction and, with
        the auto-encoders, their own and cross reconstructions.

        Returns:
            One list of image names per row.
        """
        return [[n for n in row if self.distill or not n.startswith("ae_")] for row in self.VISUAL_NAMES]

    def content_terms(
        self,
        real_x: torch.Tensor,
        fake_y: torch.Tensor,
        real_y: torch.Tensor,
        x: str,
        y: str,
        train_encoders: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None, dict]:
        """``L_dis`` and the mutual-information estimate of one direction ``x -> y``.

        Args:
            real_x: ``I_x``.
            fake_y: ``G_xy(I_x)``.
            real_y: a real image of domain ``y`` (the ``real`` marginal sample).
            x: ``"A"`` or ``"B"``.
            y: the other.
            train_encoders: let the estimate's gradient reach the encoders and ``fake_y`` (else
                only ``D_MI`` receives it).

        Returns:
            ``(L_dis, estimate or None, DV monitor or None, images)``, unweighted; ``images``
            holds ``Dec_x(z_x)`` and ``Dec_y(z_x)``. The estimate is ``None`` without ``D_MI``,
            and while the batch-1 queue of the product marginal is still empty.
        """
        enc_x, dec_x, enc_y, dec_y = (self.networks[n] for n in (f"Enc_{x}", f"Dec_{x}", f"Enc_{y}", f"Dec_{y}"))
        z_x = enc_x(real_x)
        reconstruction, cross = dec_x(z_x), dec_y(z_x)
        distillation = distillation_loss(real_x, fake_y, reconstruction, cross)
        images = {f"ae_rec_{x}": reconstruction, f"ae_cross_{y}": cross}
        if not self.mutual_information:
            return distillation, None, None, images
        if self.mi_marginal == MIMarginal.REAL:
            marginal = real_y
        elif len(real_x) > 1:
            marginal = None  # the estimator pairs z_x with the batch's other translations
        elif self.translation_queues[x]:
            marginal = torch.cat(list(self.translation_queues[x]))
        else:
            return distillation, None, None, images
        codes = [z_x, enc_y(fake_y), None if marginal is None else enc_y(marginal)]
        if not train_encoders:
            codes = [None if code is None else code.detach() for code in codes]
        bound, monitor = self.networks["D_MI"](*codes, return_dv=True)
        return distillation, bound, monitor, images

    def _iteration(self, engine: MultiNetworkTrainer, batchdata: dict) -> dict:
        """One MI2GAN iteration: forward, generator step, then discriminator and content steps.

        Args:
            engine: this trainer.
            batchdata: a batch from the loader.

        Returns:
            ``{"loss": {name: float}, "images": {name: tensor}}``.
        """
        images = self.translate(self.prepare(batchdata[self.key_a]), self.prepare(batchdata[self.key_b]))
        directions = [
            ("A", "B", images["real_A"], images["fake_B"], images["real_B"]),
            ("B", "A", images["real_B"], images["fake_A"], images["real_A"]),
        ]

        # 1. Generators, with the discriminators, the auto-encoders and D_MI fixed:
        #    adversarial + alpha cycle + beta L_dis - lambda_mi I_DV, both directions.
        fixed = ("D_A", "D_B", *self.content_networks)
        self.set_requires_grad(fixed, False)
        g_losses, bounds, monitors = self.generator_losses(images), {}, {}
        if self.distill:
            with self.autocast():
                for x, y, real_x, fake_y, real_y in directions:
                    distillation, bound, monitor, _ = self.content_terms(real_x, fake_y, real_y, x, y)
                    g_losses[f"dis_{x}"] = self.lambda_distillation * distillation
                    if bound is not None:
                        bounds[f"MI_{x}"], monitors[f"MI_DV_{x}"] = bound, monitor
        total = sum(g_losses.values()) - self.lambda_mi * sum(bounds.values())
        g_losses.update(bounds)  # logged as the estimate (nats), subtracted above
        values = self.step("generators", total, g_losses)
        values.update({name: monitor.item() for name, monitor in monitors.items()})

        # 2. With the generators fixed: the discriminators on real images and pooled fakes, ...
        self.set_requires_grad(fixed, True)
        values.update(self.discriminator_step(images))

        # ... then the auto-encoders and D_MI on beta L_dis - lambda_mi I_DV, both directions.
        if self.distill:
            content_losses, total = {}, 0
            with self.autocast():
                for x, y, real_x, fake_y, real_y in directions:
                    distillation, bound, _, decoded = self.content_terms(
                        real_x, fake_y.detach(), real_y, x, y, train_encoders=self.mi_encoders
                    )
                    content_losses[f"AE_dis_{x}"] = self.lambda_distillation * distillation
                    total = total + content_losses[f"AE_dis_{x}"]
                    if bound is not None:
                        content_losses[f"D_MI_{x}"] = bound
                        total = total - self.lambda_mi * bound
                    images.update(decoded)
            values.update(self.step("content", total, content_losses))
        if self.mutual_information and self.mi_marginal == MIMarginal.PRODUCT:
            for x, _, _, fake_y, _ in directions:  # this batch's translations: later batches' negatives
                self.translation_queues[x].extend(fake_y.detach().split(1))
        return {"loss": values, "images": {k: v.detach() for k, v in images.items()}}
