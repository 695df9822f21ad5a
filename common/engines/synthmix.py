"""SynthMix on SIFA (Zhang et al., "SynthMix: Mixing up Aligned Synthesis for Medical
Cross-Modality Domain Adaptation", ISBI 2023, eq. 2): SIFA's trainer plus a Mixup Inspector.

The paper gives the inputs, the weight (lambda_I = 0.1) and the mask, not the loss types, the
ratio's distribution or where the terms enter SIFA's update order (its code is not public);
the reconstruction, each part switchable:

- ``L_adv^mix`` is added to the step of the generator it judges: ``G_AB``'s (step 1) on
  ``S_mix = M * G_AB(x_A) + (1 - M) * x_A`` (the source with its own translation: aligned), and
  the decoder's (step 4) on ``T_mix = M * x_B + (1 - M) * U_BA(E_B(x_B), x_B)``; each generator
  wants the Inspector to find the true mask ``M`` (its translated cells judged of the domain they
  were translated to);
- ``L_cls`` trains the Inspector in an eighth step, after SIFA's seven, on unmixed source
  (all cells 0), unmixed target (all 1) and unaligned mixes ``M * x_B + (1 - M) * x_A`` of the
  batch's unpaired images (target: ``M``);
- both terms score the ``k x k`` map against the mask's cell fractions and the auxiliary logit
  against the mask's mean; ``inspector_loss`` ``bce`` (binary cross entropy with logits, the
  default) or ``lsgan`` (least squares on the logits);
- a mask's ratio is drawn per image from U(0, 1) (``ratio_alpha=None``) or Beta(alpha, alpha).

``mix_mode`` ``mixup`` and ``cutmix`` are the paper's baselines through the same Inspector (the
paper used a ResNet classifier for them: the cell map's targets are then fractions). Without the
image discriminators ``D_A`` and ``D_B`` (leave both out of ``networks``), the Inspector replaces
them (the paper's Table 4 ablation): SIFA's steps 2 and 5 and every term of theirs are dropped.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from monai.utils.enums import StrEnum

from common.data.mixing import MixMode, domain_map, draw_ratios, make_mask, mix
from common.engines.base import MultiNetworkTrainer
from common.engines.sifa import SIFATrainer

__all__ = ["SynthMixTrainer", "InspectorLoss", "SYNTHMIX_METHODS"]

#: The rows of the paper's Tables 1-3 the SynthMix bundle trains (its `method` id): SIFA with
#: SynthMix, Mixup or CutMix (one trainer, ``mix_mode``), SIFA alone, and the encoder and
#: segmenter alone on labelled source (no adaptation) or target (the supervised upper bound);
#: configs check it with :func:`~common.engines.check_choice`.
SYNTHMIX_METHODS = ("synthmix", "mixup", "cutmix", "sifa", "no_adaptation", "supervised")


class InspectorLoss(StrEnum):
    """How the Inspector's outputs are scored against a mask's targets."""

    BCE = "bce"  # binary cross entropy with logits (soft targets for fractional cells)
    LSGAN = "lsgan"  # least squares on the logits, the adversarial criterion of the rest of SIFA


class SynthMixTrainer(SIFATrainer):
    """:class:`~common.engines.SIFATrainer` with SynthMix's Inspector ``I`` (its own optimiser
    ``inspector``) and ``L_I = lambda_I L_adv^mix + lambda_I L_cls`` (see the module docstring).

    Args:
        args: :class:`~common.engines.SIFATrainer`'s arguments; ``networks`` adds ``I`` (a
            :class:`~common.networks.MixupInspector` with the same ``k``), ``optimizers`` adds
            ``inspector``.
        lambda_inspector: lambda_I (0.1).
        k: cells per side of the mask (8).
        mix_mode: ``synthmix``, or the baselines ``mixup`` and ``cutmix``.
        ratio_alpha: ``None`` draws the target fraction from U(0, 1), a number from Beta(alpha, alpha).
        inspector_loss: :class:`InspectorLoss`.
        kwargs: :class:`~common.engines.SIFATrainer`'s options.

    Raises:
        ValueError: an unknown ``mix_mode`` or ``inspector_loss``, or one image discriminator without the other.
    """

    NETWORKS = (*SIFATrainer.NETWORKS, "I")
    OPTIONAL_NETWORKS = ("D_A", "D_B")  # both or neither: "Inspector replaces D_S, D_T"
    OPTIMIZERS = {**SIFATrainer.OPTIMIZERS, "inspector": ("I",)}
    LOSS_NAMES = (*SIFATrainer.LOSS_NAMES, "G_AB_mix", "U_BA_mix", "I_cls", "I_aux")
    VISUAL_NAMES = (*SIFATrainer.VISUAL_NAMES, ("mix_unaligned", "mask", "inspector_map"))

    def __init__(
        self,
        *args: Any,
        lambda_inspector: float = 0.1,
        k: int = 8,
        mix_mode: MixMode | str = MixMode.SYNTHMIX,
        ratio_alpha: float | None = None,
        inspector_loss: InspectorLoss | str = InspectorLoss.BCE,
        **kwargs: Any,
    ) -> None:
        if mix_mode not in list(MixMode):
            raise ValueError(f"Unknown mix_mode {mix_mode!r}; expected one of {', '.join(MixMode)}.")
        if inspector_loss not in list(InspectorLoss):
            raise ValueError(f"Unknown inspector_loss {inspector_loss!r}; expected one of {', '.join(InspectorLoss)}.")
        super().__init__(*args, **kwargs)
        if ("D_A" in self.networks) != ("D_B" in self.networks):
            raise ValueError(
                "SynthMixTrainer takes both image discriminators D_A and D_B, or neither (the Inspector "
                f"replaces them); got {'D_A' if 'D_A' in self.networks else 'D_B'} alone."
            )
        self.lambda_inspector, self.k, self.ratio_alpha = lambda_inspector, k, ratio_alpha
        self.mix_mode, self.inspector_loss = MixMode(mix_mode), InspectorLoss(inspector_loss)

    def draw_mask(self, like: torch.Tensor) -> torch.Tensor:
        """A mask per image of a batch.

        Args:
            like: the batch ``(B, C, H, W)``.

        Returns:
            ``(B, 1, H, W)`` masks on its device.
        """
        ratios = draw_ratios(like.shape[0], self.ratio_alpha)
        return make_mask(self.mix_mode, ratios, tuple(like.shape[2:]), self.k).to(like.device)

    def inspect(self, image: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The Inspector's cell-map and target-fraction losses for images whose truth is a mask.

        Args:
            image: the images (unmixed or mixed).
            mask: their masks (1: target domain).

        Returns:
            The cell-map loss and the target-fraction loss.
        """
        cells, fraction = self.networks["I"](image)
        targets = (domain_map(mask.float(), self.k), mask.float().mean((1, 2, 3))[:, None])
        if self.inspector_loss == InspectorLoss.BCE:
            score = F.binary_cross_entropy_with_logits
        else:
            score = F.mse_loss
        return score(cells.float(), targets[0]), score(fraction.float(), targets[1])

    def extra_losses(
        self, step: str, images: dict[str, torch.Tensor], real_a: torch.Tensor, real_b: torch.Tensor
    ) -> dict:
        """``L_adv^mix`` of the generator (step 1, ``S_mix``) or the decoder (step 4, ``T_mix``).

        Args:
            step: ``generator`` or ``decoder``.
            images: the step's forward pass.
            real_a: source images.
            real_b: target images.

        Returns:
            ``{"G_AB_mix": ...}`` or ``{"U_BA_mix": ...}``, weighted by lambda_I.
        """
        mask = self.draw_mask(real_a)
        if step == "generator":  # the source with its translation: target cells from G_AB
            name, mixed = "G_AB_mix", mix(real_a, images["fake_B"], mask)
        else:  # the target with its translation: source cells from the decoder
            name, mixed = "U_BA_mix", mix(images["fake_A"], real_b, mask)
        cells, fraction = self.inspect(mixed, mask)
        return {name: self.lambda_inspector * (cells + fraction)}

    def inspector_step(self, real_a: torch.Tensor, real_b: torch.Tensor) -> tuple[dict, dict]:
        """8. The Inspector on unmixed source, unmixed target and unaligned mixes (``L_cls``).

        Args:
            real_a: source images.
            real_b: target images.

        Returns:
            The losses as floats, and the images to show (the unaligned mix, its mask, the
            Inspector's map).
        """
        self.train_only(["I"])
        mask = self.draw_mask(real_a)
        unaligned = mix(real_a, real_b, mask)
        with self.autocast():
            terms = [
                self.inspect(real_a, torch.zeros_like(mask)),
                self.inspect(real_b, torch.ones_like(mask)),
                self.inspect(unaligned, mask),
            ]
            losses = {
                "I_cls": self.lambda_inspector * sum(t[0] for t in terms),
                "I_aux": self.lambda_inspector * sum(t[1] for t in terms),
            }
        values = self.step("inspector", losses["I_cls"] + losses["I_aux"], losses)
        with torch.no_grad():
            cells = torch.sigmoid(self.networks["I"](unaligned)[0].float())
        size = tuple(real_a.shape[2:])
        shown = {
            "mix_unaligned": unaligned,
            "mask": mask * 2 - 1,
            "inspector_map": F.interpolate(cells, size=size, mode="nearest") * 2 - 1,
        }
        return values, shown

    def _iteration(self, engine: MultiNetworkTrainer, batchdata: dict) -> dict:
        """SIFA's seven steps (with ``L_adv^mix`` in steps 1 and 4), then the Inspector's.

        Args:
            engine: this trainer.
            batchdata: a batch from the loader.

        Returns:
            ``{"loss": {name: float}, "images": {name: tensor}}``.
        """
        output = super()._iteration(engine, batchdata)
        real_a, real_b = output["images"]["real_A"], output["images"]["real_B"]
        values, shown = self.inspector_step(real_a, real_b)
        self.train_only(self.networks)
        return {"loss": output["loss"] | values, "images": output["images"] | {k: v.detach() for k, v in shown.items()}}
