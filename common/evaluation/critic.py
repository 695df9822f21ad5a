"""What MI2GAN's mutual-information critic ``D_MI`` separates, on held-out images.

``D_MI`` should score a joint pair (an image's content code with the code of *its own*
translation) above a product-of-marginals pair (the same code with *another* image's
translation). A critic that instead scores translated codes above codes of real images of the
other domain, whatever the content, is a second real-vs-fake discriminator: then the
mutual-information term rewards the generator for looking translated, not for keeping the
content. This evaluation measures both separations.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from monai.data import CacheDataset
from torch import nn

from common.data.datalist import entries
from common.data.io import domain_transform
from common.evaluation.report import write_json

__all__ = ["evaluate_mi_critic"]

logger = logging.getLogger(__name__)


def evaluate_mi_critic(
    generator: nn.Module,
    encoder_x: nn.Module,
    encoder_y: nn.Module,
    critic: nn.Module,
    datalist: dict,
    output_dir: str | Path,
    domain: str = "target",
    split: str = "test",
    device: torch.device | str = "cpu",
) -> dict:
    """The critic's scores of joint, product-of-marginals and real-image pairs, written to
    ``output_dir/critic.json``.

    With ``x_i`` the ``domain`` images of ``split``, ``t_i = generator(x_i)`` and ``r_j`` the
    other domain's images of the same split (of its validation split where it has no such
    split, as CVC-ClinicDB in the polyp task, which has training and validation only):
    ``z_i = encoder_x(x_i)``, ``w_i = encoder_y(t_i)``, ``v_j = encoder_y(r_j)``. Scores
    ``T = critic.pair_scores``: joint ``T(z_i, w_i)``, product ``T(z_i, w_j)`` for every
    ``j != i``, real ``T(z_i, v_j)`` for every ``j``.

    Args:
        generator: ``G`` translating ``domain`` into the other domain.
        encoder_x: the content encoder of ``domain`` (``Enc_A``).
        encoder_y: the content encoder of the other domain (``Enc_B``).
        critic: the estimator (``common.losses.MutualInformationEstimator``, its ``pair_scores``).
        datalist: a loaded datalist.
        output_dir: the folder (created).
        domain: the translated domain (``target`` for MI2GAN's ``G_AB``).
        split: the split (both domains' images of it are used; labels are not read); recorded
            with the other domain's split used (``real_split``).
        device: where to run.

    Returns:
        ``{"joint", "product", "real"}`` mean scores, ``content_separation`` (the fraction of
        ``(i, j != i)`` with ``T(z_i, w_i) > T(z_i, w_j)``: 1 when the critic tells matching from
        non-matching content, 0.5 when it cannot), ``translation_separation`` (the fraction of
        ``(i, j)`` with ``T(z_i, w_i) > T(z_i, v_j)``: 1 when it tells translated from real), and
        the numbers of images.
    """
    device = torch.device(device)
    other = "source" if domain == "target" else "target"
    modules = [m.to(device).eval() for m in (generator, encoder_x, encoder_y, critic)]
    generator, encoder_x, encoder_y, critic = modules

    real_split = split if split in datalist.get(other, {}) else "validation"

    def load(side: str, split: str) -> torch.Tensor:
        items = [{"image": e["image"]} for e in entries(datalist, side, split)]
        data = CacheDataset(items, domain_transform(datalist, side, ("image",)), progress=False)
        return torch.stack([item["image"].as_tensor() for item in data]).to(device)

    with torch.no_grad():
        images, others = load(domain, split), load(other, real_split)
        z, w, v = encoder_x(images), encoder_y(generator(images)), encoder_y(others)
        n, m = len(z), len(v)
        joint = critic.pair_scores(z, w)
        shifted = [critic.pair_scores(z, w.roll(shift, dims=0)) for shift in range(1, n)]
        product = torch.stack(shifted, dim=1) if shifted else None  # one image: no other translation
        real = torch.stack([critic.pair_scores(z, v[[j] * n]) for j in range(m)], dim=1)
    result = {
        "joint": float(joint.mean()),
        "product": float(product.mean()) if product is not None else float("nan"),
        "real": float(real.mean()),
        "content_separation": float((joint[:, None] > product).float().mean()) if product is not None else float("nan"),
        "translation_separation": float((joint[:, None] > real).float().mean()),
        "images": n,
        "other_images": m,
        "split": split,
        "real_split": real_split,
    }
    write_json(result, Path(output_dir) / "critic.json")
    logger.info(
        "D_MI on %s.%s: joint %.3f, product %.3f, real %.3f; joint > product %.1f %%, joint > real %.1f %%",
        domain,
        split,
        result["joint"],
        result["product"],
        result["real"],
        100 * result["content_separation"],
        100 * result["translation_separation"],
    )
    return result
