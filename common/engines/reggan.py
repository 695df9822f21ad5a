"""RegGAN (Kong et al., "Breaking the Dilemma of Medical Image-to-image Translation", NeurIPS
2021) and the three other training modes of its paper, as one MONAI trainer."""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from monai.networks.blocks import Warp
from monai.utils.enums import StrEnum
from torch import nn

from common.engines.base import MultiNetworkTrainer
from common.handlers.image_pool import ImagePool
from common.losses import AdversarialLoss, correction_loss, cycle_loss, smoothness_loss

__all__ = ["RegGANMode", "RegGANTrainer"]


class RegGANMode(StrEnum):
    """The training modes of RegGAN's Table 1."""

    PIX2PIX = "pix2pix"        # supervised: adversarial (conditional D) + 100 x L1 to the target
    CYCLEGAN = "cyclegan"      # C: unsupervised, two generators, adversarial + 10 x cycle
    REGGAN = "reggan"          # NC+R: one generator + registration, adversarial + 20 x correction + 10 x smooth
    CYCLEGAN_R = "cyclegan_r"  # C+R: CycleGAN's losses plus the correction and smoothness losses


class RegGANTrainer(MultiNetworkTrainer):
    """Paired translation of A (``image``) into B (``target``) when the pairs may be misaligned.

    The four modes, as the public code runs them (one iteration each):

    - ``pix2pix``: ``fake_B = G_AB(real_A)``; generator step on
      ``adv(D_B([real_A, fake_B]), real) + lambda_l1 |fake_B - real_B|`` (D_B is conditional:
      it sees the input next to the output); then the fake is recomputed without gradients and
      D_B steps on ``adv(D_B([real_A, fake_B]), fake) + adv(D_B([real_A, real_B]), real)``.
    - ``cyclegan`` (C): ``fake_B = G_AB(real_A)``, ``fake_A = G_BA(real_B)`` and their cycles;
      generator step on both adversarial terms and ``lambda_cycle`` x both cycle L1 terms; then
      D_A and D_B step on real images and fakes drawn through image pools.
    - ``reggan`` (NC+R, the default): ``fake_B = G_AB(real_A)``; the registration network
      predicts ``ddf = R(fake_B, real_B)`` and ``reg_B = warp(fake_B, ddf)``; G_AB and R step
      together on ``adv(D_B(fake_B), real) + lambda_correction |reg_B - real_B| +
      lambda_smooth smooth(ddf)``; then the fake is recomputed without gradients (no pool) and
      D_B steps on it and on ``real_B``.
    - ``cyclegan_r`` (C+R): C's generator step plus the correction and smoothness terms (G_AB,
      G_BA and R step together); the discriminators as in C.

    Every adversarial term is weighted by ``lambda_adv`` and, as in the public code, a
    discriminator's real and fake terms are summed (not halved). The discriminators are frozen
    during the generator step. ``optimizer_g`` holds the generators' and R's parameters.

    Loss names: ``G_AB`` (adversarial), ``L1`` (pix2pix), ``G_BA``, ``cycle_A``, ``cycle_B``
    (cycle modes), ``correction``, ``smooth`` (R modes), ``D_A``, ``D_B``. Image names
    (:attr:`GRID_ROWS`): ``real_A``, ``fake_B``, ``real_B`` and, by mode, ``reg_B``
    (registered translation), ``fake_A``, ``rec_A``, ``rec_B``.

    Args:
        device: where to train.
        max_epochs: epochs to run.
        train_data_loader: batches with A images under ``image_keys[0]`` and their (possibly
            misaligned) B targets under ``image_keys[1]`` (a ``PairedDataset``).
        generator_ab: the A-to-B generator (the network kept for inference).
        discriminator_b: B's discriminator; in ``pix2pix`` mode it takes A and B channels.
        optimizer_g: optimiser over the generators' and, in R modes, R's parameters.
        optimizer_d: optimiser over the discriminators' parameters.
        mode: one of :class:`RegGANMode`.
        generator_ba: the B-to-A generator (cycle modes only).
        discriminator_a: A's discriminator (cycle modes only).
        registration: the registration network ``R(moving, fixed) -> ddf`` (R modes only).
        lambda_adv: adversarial weight (1).
        lambda_l1: pix2pix's L1 weight (100).
        lambda_cycle: cycle weight (10).
        lambda_correction: correction weight (20).
        lambda_smooth: smoothness weight (10).
        pool_size: image pool of the cycle modes' discriminators (50).
        adversarial_criterion: ``lsgan`` (the paper), ``vanilla`` or ``hinge``.
        image_keys: the batch keys of the A images and the B targets.
        kwargs: :class:`MultiNetworkTrainer`'s options (``epoch_length``, ``amp``,
            ``channels_last``, ``train_handlers``, ``non_blocking``).

    Raises:
        ValueError: an unknown mode, or networks missing for the mode or given but unused by it.
    """

    GRID_ROWS = {
        RegGANMode.PIX2PIX: [["real_A", "fake_B", "real_B"]],
        RegGANMode.CYCLEGAN: [["real_A", "fake_B", "rec_A"], ["real_B", "fake_A", "rec_B"]],
        RegGANMode.REGGAN: [["real_A", "fake_B", "reg_B", "real_B"]],
        RegGANMode.CYCLEGAN_R: [["real_A", "fake_B", "rec_A", "reg_B"], ["real_B", "fake_A", "rec_B"]],
    }

    def __init__(
        self,
        device: torch.device | str,
        max_epochs: int,
        train_data_loader: Iterable,
        generator_ab: nn.Module,
        discriminator_b: nn.Module,
        optimizer_g: torch.optim.Optimizer,
        optimizer_d: torch.optim.Optimizer,
        mode: RegGANMode | str = RegGANMode.REGGAN,
        generator_ba: nn.Module | None = None,
        discriminator_a: nn.Module | None = None,
        registration: nn.Module | None = None,
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
        self.cycle = self.mode in (RegGANMode.CYCLEGAN, RegGANMode.CYCLEGAN_R)
        self.register = self.mode in (RegGANMode.REGGAN, RegGANMode.CYCLEGAN_R)
        given = {"generator_ba": generator_ba, "discriminator_a": discriminator_a, "registration": registration}
        needed = {"generator_ba": self.cycle, "discriminator_a": self.cycle, "registration": self.register}
        for name, network in given.items():
            if needed[name] != (network is not None):
                raise ValueError(f"Mode {self.mode.value!r} {'needs' if needed[name] else 'does not use'} `{name}`.")
        networks = {"G_AB": generator_ab, "D_B": discriminator_b, "G_BA": generator_ba, "D_A": discriminator_a,
                    "R": registration}
        super().__init__(
            device, max_epochs, train_data_loader,
            networks={k: v for k, v in networks.items() if v is not None},
            optimizers={"generators": optimizer_g, "discriminators": optimizer_d},
            **kwargs,
        )
        self.lambda_adv, self.lambda_l1, self.lambda_cycle = lambda_adv, lambda_l1, lambda_cycle
        self.lambda_correction, self.lambda_smooth = lambda_correction, lambda_smooth
        self.adversarial = AdversarialLoss(adversarial_criterion)
        self.pool_a, self.pool_b = ImagePool(pool_size), ImagePool(pool_size)
        with warnings.catch_warnings():  # MONAI notes that it uses torch's grid_sample: intended
            warnings.simplefilter("ignore", UserWarning)
            self.warp = Warp(mode="bilinear", padding_mode="border")
        self.key_a, self.key_b = image_keys
        self.discriminators = [n for n in ("D_A", "D_B") if n in self.networks]

    def checkpoint_objects(self) -> dict:
        """Everything a resume checkpoint needs besides the engine: networks, optimisers and, in
        the cycle modes, the image pools.

        Returns:
            ``{name: object with state_dict()}``.
        """
        objects = super().checkpoint_objects()
        if self.cycle:
            objects.update(pool_A=self.pool_a, pool_B=self.pool_b)
        return objects

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
            d_losses = {"D_B": self.lambda_adv * (self.adversarial(d_b(torch.cat([real_a, fake_b], 1)), False)
                                                  + self.adversarial(d_b(torch.cat([real_a, real_b], 1)), True))}
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
            d_losses = {"D_B": self.lambda_adv * (self.adversarial(d_b(fake_b), False)
                                                  + self.adversarial(d_b(real_b), True))}
        d_values = self.step("discriminators", d_losses["D_B"], d_losses)
        return {**g_values, **d_values}, {"real_A": real_a, "fake_B": fake_b, "reg_B": reg_b, "real_B": real_b}

    def _cyclegan(self, real_a: torch.Tensor, real_b: torch.Tensor) -> tuple[dict, dict]:
        g_ab, g_ba, d_a, d_b = (self.networks[n] for n in ("G_AB", "G_BA", "D_A", "D_B"))
        adv = self.adversarial
        self.set_requires_grad(self.discriminators, False)
        with self.autocast():
            fake_b, fake_a = g_ab(real_a), g_ba(real_b)
            rec_a, rec_b = g_ba(fake_b), g_ab(fake_a)
            g_losses = {
                "G_AB": self.lambda_adv * adv(d_b(fake_b), True, False),
                "G_BA": self.lambda_adv * adv(d_a(fake_a), True, False),
                "cycle_A": self.lambda_cycle * cycle_loss(rec_a, real_a),
                "cycle_B": self.lambda_cycle * cycle_loss(rec_b, real_b),
            }
            images = {"real_A": real_a, "fake_B": fake_b, "rec_A": rec_a, "real_B": real_b, "fake_A": fake_a,
                      "rec_B": rec_b}
            if self.register:
                corrected, images["reg_B"] = self._correction(fake_b, real_b)
                g_losses.update(corrected)
        g_values = self.step("generators", sum(g_losses.values()), g_losses)  # both generators (and R)

        self.set_requires_grad(self.discriminators, True)
        with self.autocast():
            d_losses = {
                "D_A": self.lambda_adv * (adv(d_a(real_a), True) + adv(d_a(self.pool_a.query(fake_a)), False)),
                "D_B": self.lambda_adv * (adv(d_b(real_b), True) + adv(d_b(self.pool_b.query(fake_b)), False)),
            }
        d_values = self.step("discriminators", d_losses["D_A"] + d_losses["D_B"], d_losses)
        return {**g_values, **d_values}, images

    def _correction(self, fake_b: torch.Tensor, real_b: torch.Tensor) -> tuple[dict, torch.Tensor]:
        """R registers the translation onto the target: the correction and smoothness terms."""
        ddf = self.networks["R"](fake_b, real_b)
        reg_b = self.warp(fake_b, ddf)
        losses = {"correction": self.lambda_correction * correction_loss(reg_b, real_b),
                  "smooth": self.lambda_smooth * smoothness_loss(ddf)}
        return losses, reg_b
