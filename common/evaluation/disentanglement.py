"""How domain-invariant DADR's content space is, on held-out images, and the paper's figures
of content-only images (Fig. 4) and diverse translations (Fig. 7).

The synthetic benchmark renders every target test subject also in the source domain (the
entry's ``reference``), so the content codes of the two renderings of one anatomy can be
compared: a shared content space maps them to the same code. The distance between the codes of
*different* subjects gives the scale.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from matplotlib.figure import Figure
from monai.data import CacheDataset
from torch import nn

from common.data.datalist import DatalistError, entries
from common.data.io import domain_transform
from common.evaluation.report import as_slices, show_image, summarise, write_tables
from common.metrics import nmae

__all__ = ["evaluate_disentanglement"]

logger = logging.getLogger(__name__)


def _relative_l1(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().mean() / b.abs().mean().clamp_min(1e-8))


@torch.no_grad()
def evaluate_disentanglement(
    content_encoders: tuple[nn.Module, nn.Module],
    style_encoders: tuple[nn.Module, nn.Module],
    decoders: tuple[nn.Module, nn.Module],
    renderers: tuple[nn.Module, nn.Module],
    datalist: dict,
    output_dir: str | Path,
    split: str = "test",
    device: torch.device | str = "cpu",
    examples: int = 3,
    styles: int = 3,
    seed: int = 0,
) -> dict:
    """Scores the content space on the target ``split`` against the source renderings of the
    same subjects, and draws content-only images and translations.

    Per target image ``x_B`` with reference ``x_A`` (the same anatomy in the source domain):

    - ``content_gap``: ``|Ec_B(x_B) - Ec_A(x_A)|_1 / |Ec_A(x_A)|_1``, 0 for a shared content space;
      ``content_gap_other``: the same against *another* subject's reference (the scale: a gap
      near it means the codes do not share content);
    - ``translation_content_gap``: ``|Ec_B(G_B(c_A, Es_B(x_B))) - c_A|_1 / |c_A|_1`` with
      ``c_A = Ec_A(x_A)``: how much of the source content the translation into the target
      (with the target image's style, swapped as in training) keeps, the latent content
      reconstruction of eq. 4 on held-out images (0: all of it; 1: none, as from a blank image);
    - ``content_only_nmae``: NMAE (whole image) between the content-only images of ``x_B`` and
      ``x_A``; ``identity_nmae``: between ``x_B`` and ``x_A`` themselves (the gap to remove).

    Args:
        content_encoders: ``(Ec_A, Ec_B)``, source then target.
        style_encoders: ``(Es_A, Es_B)``.
        decoders: ``(G_A, G_B)``.
        renderers: the content-only image networks of the source and the target.
        datalist: a loaded datalist whose target ``split`` entries have a ``reference``.
        output_dir: where ``metrics.json``/``metrics.csv``, ``content_only.png`` (source image,
            content-only source, content-only target, target image; the paper's Fig. 4) and
            ``translations.png`` (the source image in the target domain with ``styles`` codes
            drawn from N(0, I) and with the code of the target image; Fig. 7) go.
        split: the split.
        device: where to run.
        examples: subjects drawn.
        styles: sampled style codes per subject in ``translations.png``.
        seed: of the sampled style codes.

    Returns:
        ``{"per_volume": [...], "mean": {...}, "std": {...}}``.

    Raises:
        DatalistError: target entries of the split without a ``reference``.
    """
    items = entries(datalist, "target", split)
    if not items or any("reference" not in e for e in items):
        raise DatalistError(
            f"`target.{split}` entries need a `reference` (the same subject in the source domain) to compare "
            "content codes; the synthetic datalists have them."
        )
    targets = CacheDataset(
        [{"image": e["image"]} for e in items], domain_transform(datalist, "target", ("image",)), progress=False
    )
    references = CacheDataset(
        [{"image": e["reference"]} for e in items], domain_transform(datalist, "source", ("image",)), progress=False
    )
    networks = [*content_encoders, *style_encoders, *decoders, *renderers]
    modes = [n.training for n in networks]
    for network in networks:
        network.to(device).eval()
    (ec_a, ec_b), (_, es_b), (_, g_b), (render_a, render_b) = content_encoders, style_encoders, decoders, renderers
    generator = torch.Generator().manual_seed(seed)
    codes, rows, shown = [], [], []
    for index, entry in enumerate(items):
        x_b = as_slices(targets[index]["image"]).to(device)
        x_a = as_slices(references[index]["image"]).to(device)
        c_b, c_a = ec_b(x_b).float(), ec_a(x_a).float()
        translated = g_b(c_a.to(x_a.dtype), es_b(x_b))  # the source anatomy in the target, target style
        codes.append(c_a.cpu())
        only_b, only_a = render_b(x_b).float(), render_a(x_a).float()
        whole = torch.ones_like(x_a, dtype=torch.bool)
        rows.append(
            {
                "volume": Path(entry["image"]).name,
                "content_gap": _relative_l1(c_b, c_a),
                "translation_content_gap": _relative_l1(ec_b(translated).float(), c_a),
                "content_only_nmae": nmae(only_b, only_a, whole),
                "identity_nmae": nmae(x_b, x_a, whole),
            }
        )
        if len(shown) < examples:
            k = x_a.shape[0] // 2
            sampled = torch.randn(styles, g_b.style_dim, generator=generator).to(device)
            translations = g_b(c_a[k : k + 1].expand(styles, -1, -1, -1), sampled)
            encoded = g_b(c_a[k : k + 1], es_b(x_b[k : k + 1]))
            shown.append((rows[-1]["volume"], x_a[k], only_a[k], only_b[k], x_b[k], translations, encoded[0]))
        rows[-1]["_code"] = c_b.cpu()
    for index, row in enumerate(rows):  # the scale: the target code against another subject's reference code
        other = codes[(index + 1) % len(codes)]
        code = row.pop("_code")
        depth = min(len(code), len(other))
        row["content_gap_other"] = _relative_l1(code[:depth], other[:depth]) if len(codes) > 1 else float("nan")
    for network, mode in zip(networks, modes, strict=True):
        network.train(mode)
    result = summarise(rows)
    output_dir = write_tables(result, output_dir)
    _draw(shown, output_dir, styles)
    logger.info("Disentanglement target.%s: %s", split, {k: round(v, 4) for k, v in result["mean"].items()})
    return result


def _draw(shown: list, output_dir: Path, styles: int) -> None:
    """``content_only.png`` and ``translations.png``."""
    if not shown:
        return
    figure = Figure(figsize=(8, 2.2 * len(shown)))
    axes = figure.subplots(len(shown), 4, squeeze=False)
    for row, (name, x_a, only_a, only_b, x_b, *_) in zip(axes, shown, strict=True):
        for ax, image, title in zip(
            row,
            (x_a, only_a, only_b, x_b),
            ("source (reference)", "content-only source", "content-only target", f"target {name}"),
            strict=True,
        ):
            show_image(ax, image.cpu(), title)
    figure.suptitle("Content-only images: the same anatomy in both domains (DADR Fig. 4)", fontsize=10)
    figure.tight_layout()
    figure.savefig(output_dir / "content_only.png", dpi=100)
    figure = Figure(figsize=(2 * (styles + 3), 2.2 * len(shown)))
    axes = figure.subplots(len(shown), styles + 3, squeeze=False)
    for row, (_, x_a, _, _, x_b, translations, encoded) in zip(axes, shown, strict=True):
        show_image(row[0], x_a.cpu(), "source")
        for k in range(styles):
            show_image(row[1 + k], translations[k].cpu(), f"style ~ N(0, I) #{k + 1}")
        show_image(row[styles + 1], encoded.cpu(), "style of the target image")
        show_image(row[styles + 2], x_b.cpu(), "target image (same anatomy)")
    figure.suptitle("Source content in the target domain with sampled and encoded styles (DADR Fig. 7)", fontsize=10)
    figure.tight_layout()
    figure.savefig(output_dir / "translations.png", dpi=100)
    logger.info("Wrote the figures %s and %s", output_dir / "content_only.png", output_dir / "translations.png")
