"""RegGAN (Kong et al., "Breaking the Dilemma of Medical Image-to-image Translation", NeurIPS
2021) and the three other training modes of its paper, as one MONAI trainer."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from monai.networks.blocks import Warp
from monai.utils.enums import StrEnum

from common.engines.base import MultiNetworkTrainer
from common.engines.cyclegan import CycleGANTrainer, DiscriminatorReduction
from common.losses import correction_loss, smoothness_loss

__all__ = ["RegGANMode", "RegGANTrainer"]


class RegGANMode(StrEnum):
    """The training modes of RegGAN's Table 1."""

    PIX2PIX = "pix2pix"  # supervised: adversarial (conditional D) + 100 x L1 to the target
    CYCLEGAN = "cyclegan"  # C: unsupervised, two generators, adversarial + 10 x cycle
    REGGAN = "reggan"  # NC+R: one generator + registration, adversarial + 20 x correction + 10 x smooth
    CYCLEGAN_R = "cyclegan_r"  # C+R: CycleGAN's losses plus the correction and smoothness losses


class RegGANTrainer(CycleGANTrainer):
    """Paired translation of A (``image``) into B (``target``) when the pairs may be misaligned.

    The four modes, as the public code runs them (one iteration each):

    - ``pix2pix``: ``fake_B = G_AB(real_A)``; generator step on
      ``adv(D_B([real_A, fake_B]), real) + lambda_l1 |fake_B - real_B|`` (D_B is conditional:
      it sees the input next to the output); then the fake is recomputed without gradients and
      D_B steps on ``adv(D_B([real_A, fake_B]), fake) + adv(D_B([real_A, real_B]), real)``.
    - ``cyclegan`` (C): :class:`~common.engines.CycleGANTrainer`'s forward pass, generator losses
      (no identity loss) and discriminator step with image pools; the one difference is that a
      discriminator's real and fake terms are summed, not halved (``discriminator_reduction``).
    - ``reggan`` (NC+R, the default): ``fake_B = G_AB(real_A)``; the registration network
      predicts ``ddf = R(fake_B, real_B)`` and ``reg_B = warp(fake_B, ddf)``; G_AB and R step
      together on ``adv(D_B(fake_B), real) + lambda_correction |reg_B - real_B| +
      lambda_smooth smooth(ddf)``; then the fake is recomputed without gradients (no pool) and
      D_B steps on it and on ``real_B``.
    - ``cyclegan_r`` (C+R): C's generator step plus the correction and smoothness terms (G_AB,
      G_BA and R step together); the discriminators as in C.

    Every adversarial term is weighted by ``lambda_adv``; the discriminators are frozen during
    the generator step. The ``generators`` optimiser holds the generators' and R's parameters.

    Args:
        args: :class:`~common.engines.MultiNetworkTrainer`'s ``device``, ``max_epochs``,
            ``train_data_loader`` (batches with A images under ``image_keys[0]`` and their
            (possibly misaligned) B targets under ``image_keys[1]``: a ``PairedDataset``),
            ``networks`` (``G_AB``, kept for inference, and ``D_B``, which in ``pix2pix`` mode takes
            A and B channels, plus by mode ``G_BA`` and ``D_A`` (cycle modes) and ``R``, the
            registration network ``R(moving, fixed) -> ddf`` (R modes): :meth:`networks_for`
            ``(mode)``) and ``optimizers`` (``generators``: the generators and R; ``discriminators``).
        mode: one of :class:`RegGANMode`.
        lambda_adv: adversarial weight (1).
        lambda_l1: pix2pix's L1 weight (100).
        lambda_cycle: cycle weight (10).
        lambda_correction: correction weight (20).
        lambda_smooth: smoothness weight (10).
        pool_size: image pool of the cycle modes' discriminators (50).
        adversarial_criterion: ``lsgan`` (the paper), ``vanilla`` or ``hinge``.
        image_keys: the batch keys of the A images and the B targets.
        kwargs: :class:`~common.engines.MultiNetworkTrainer`'s arguments by name and its options
            (``lr_schedule``, ``epoch_length``, ``amp``, ``channels_last``, ``train_handlers``,
            ``non_blocking``).

    Raises:
        ValueError: an unknown mode, or networks missing for the mode or given but unused by it.
    """

    NETWORKS = ("G_AB", "G_BA", "D_A", "D_B", "R")
    VARIANTS = {
        RegGANMode.PIX2PIX.value: ("G_AB", "D_B"),
        RegGANMode.CYCLEGAN.value: ("G_AB", "G_BA", "D_A", "D_B"),
        RegGANMode.REGGAN.value: ("G_AB", "R", "D_B"),
        RegGANMode.CYCLEGAN_R.value: ("G_AB", "G_BA", "R", "D_A", "D_B"),
    }
    OPTIMIZERS = {"generators": ("G_AB", "G_BA", "R"), "discriminators": ("D_A", "D_B")}
    LOSS_NAMES = ("G_AB", "L1", "G_BA", "cycle_A", "cycle_B", "correction", "smooth", "D_A", "D_B")
    GRID_ROWS = {
        RegGANMode.PIX2PIX: [["real_A", "fake_B", "real_B"]],
        RegGANMode.CYCLEGAN: [["real_A", "fake_B", "rec_A"], ["real_B", "fake_A", "rec_B"]],
        RegGANMode.REGGAN: [["real_A", "fake_B", "reg_B", "real_B"]],
        RegGANMode.CYCLEGAN_R: [["real_A", "fake_B", "rec_A", "reg_B"], ["real_B", "fake_A", "rec_B"]],
    }

    def __init__(
        self,
        *args: Any,
        mode: RegGANMode | str = RegGANMode.REGGAN,
        lambda_adv: float = 1.0,
        lambda_l1: float = 100.0,
        lambda_cycle: float = 10.0,
        lambda_correction: float = 20.0,
        lambda_smooth: float = 10.0,
        pool_size: int = 50,
        adversarial_criterion: str = "lsgan",
        image_keys: Sequence[str] = ("image", "target"),
        **kwargs: Any,
    ) -> None:
        if mode not in list(RegGANMode):
            raise ValueError(f"Unknown RegGAN mode {mode!r}; expected one of {', '.join(RegGANMode)}.")
        self.mode = RegGANMode(mode)
        super().__init__(
            *args,
            variant=self.mode.value,
            lambda_cycle=lambda_cycle,
            lambda_identity=0.0,
            lambda_adv=lambda_adv,
            discriminator_reduction=DiscriminatorReduction.SUM,
            pool_size=pool_size,
            adversarial_criterion=adversarial_criterion,
            image_keys=image_keys,
            **kwargs,
        )
        self.cycle, self.register = "G_BA" in self.networks, "R" in self.networks
        if not self.cycle:
            self.pool_a = self.pool_b = None
        self.lambda_l1, self.lambda_correction, self.lambda_smooth = lambda_l1, lambda_correction, lambda_smooth
        with warnings.catch_warnings():  # MONAI notes that it uses torch's grid_sample: intended
            warnings.simplefilter("ignore", UserWarning)
            self.warp = Warp(mode="bilinear", padding_mode="border")
        self.discriminators = [n for n in ("D_A", "D_B") if n in self.networks]

    def grid_rows(self) -> list[list[str]]:
        """The image-grid rows of the mode.

        Returns:
            One list of image names per row.
        """
        return self.GRID_ROWS[self.mode]

    def _iteration(self, engine: MultiNetworkTrainer, batchdata: dict) -> dict:
        """One iteration of the configured mode: generator (and R) step, then discriminator step.

        Args:
            engine: this trainer.
            batchdata: a batch from the loader.

        Returns:
            ``{"loss": {name: float}, "images": {name: tensor}}``.
        """
        real_a, real_b = self.prepare(batchdata[self.key_a]), self.prepare(batchdata[self.key_b])
        if self.mode == RegGANMode.PIX2PIX:
            losses, images = self._pix2pix(real_a, real_b)
        elif self.cycle:
            losses, images = self._cyclegan(real_a, real_b)
        else:
            losses, images = self._reggan(real_a, real_b)
        return {"loss": losses, "images": {k: v.detach() for k, v in images.items()}}

    def _pix2pix(self, real_a: torch.Tensor, real_b: torch.Tensor) -> tuple[dict, dict]:
        g_ab, d_b = self.networks["G_AB"], self.networks["D_B"]
        self.set_requires_grad(self.discriminators, False)
        with self.autocast():
            fake_b = g_ab(real_a)
            g_losses = {
                "G_AB": self.lambda_adv * self.adversarial(d_b(torch.cat([real_a, fake_b], 1)), True, False),
                "L1": self.lambda_l1 * F.l1_loss(fake_b.float(), real_b.float()),
            }
        g_values = self.step("generators", sum(g_losses.values()), g_losses)

        self.set_requires_grad(self.discriminators, True)
        with torch.no_grad(), self.autocast():
            fake_b = g_ab(real_a)  # recomputed by the updated generator
        with self.autocast():
            d_losses = {
                "D_B": self.lambda_adv
                * (
                    self.adversarial(d_b(torch.cat([real_a, fake_b], 1)), False)
                    + self.adversarial(d_b(torch.cat([real_a, real_b], 1)), True)
                )
            }
        d_values = self.step("discriminators", d_losses["D_B"], d_losses)
        return {**g_values, **d_values}, {"real_A": real_a, "fake_B": fake_b, "real_B": real_b}

    def _reggan(self, real_a: torch.Tensor, real_b: torch.Tensor) -> tuple[dict, dict]:
        g_ab, d_b = self.networks["G_AB"], self.networks["D_B"]
        self.set_requires_grad(self.discriminators, False)
        with self.autocast():
            fake_b = g_ab(real_a)
            corrected, reg_b = self._correction(fake_b, real_b)
            g_losses = {"G_AB": self.lambda_adv * self.adversarial(d_b(fake_b), True, False), **corrected}
        g_values = self.step("generators", sum(g_losses.values()), g_losses)  # G_AB and R together

        self.set_requires_grad(self.discriminators, True)
        with torch.no_grad(), self.autocast():
            fake_b = g_ab(real_a)  # recomputed by the updated generator; no pool
        with self.autocast():
            d_losses = {
                "D_B": self.lambda_adv * (self.adversarial(d_b(fake_b), False) + self.adversarial(d_b(real_b), True))
            }
        d_values = self.step("discriminators", d_losses["D_B"], d_losses)
        return {**g_values, **d_values}, {"real_A": real_a, "fake_B": fake_b, "reg_B": reg_b, "real_B": real_b}

    def _cyclegan(self, real_a: torch.Tensor, real_b: torch.Tensor) -> tuple[dict, dict]:
        images = self.translate(real_a, real_b)
        self.set_requires_grad(self.discriminators, False)
        g_losses = self.generator_losses(images)
        if self.register:
            with self.autocast():
                corrected, images["reg_B"] = self._correction(images["fake_B"], real_b)
            g_losses.update(corrected)
        g_values = self.step("generators", sum(g_losses.values()), g_losses)  # both generators (and R)
        return {**g_values, **self.discriminator_step(images)}, images

    def _correction(self, fake_b: torch.Tensor, real_b: torch.Tensor) -> tuple[dict, torch.Tensor]:
        """R registers the translation onto the target: the correction and smoothness terms."""
        ddf = self.networks["R"](fake_b, real_b)
        reg_b = self.warp(fake_b, ddf)
        losses = {
            "correction": self.lambda_correction * correction_loss(reg_b, real_b),
            "smooth": self.lambda_smooth * smoothness_loss(ddf),
        }
        return losses, reg_b
