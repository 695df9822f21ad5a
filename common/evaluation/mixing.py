"""What SynthMix's Mixup Inspector separates, on held-out images, and the paper's figure of mixes
and the Inspector's domain maps.

Each test volume of the source is paired with the test volume of the target at the same index,
slice by slice, and every slice pair gets one SynthMix mask ``M`` (a ``k x k`` grid, ratio drawn
from U(0, 1), seeded). The Inspector's cell map is thresholded at probability 0.5 and compared
with the truth, per cell, for five kinds of input:

- ``source`` (every cell 0) and ``target`` (every cell 1): unmixed images;
- ``unaligned``: ``M * x_T + (1 - M) * x_S``, the mixes it is trained on;
- ``source_mix`` (``S_mix = M * G_AB(x_S) + (1 - M) * x_S``) and ``target_mix``
  (``T_mix = M * x_T + (1 - M) * U_BA(E_B(x_T), x_T)``): the aligned mixes the generators are
  trained on, where a cell is "target" when it comes from the target domain, real or translated;
- ``source_mix_oracle`` and ``target_mix_oracle``, where the entries carry a ``reference`` (the
  same subject rendered in the other domain: the synthetic benchmark's oracle translation): the
  same aligned mixes with the oracle in place of the network's translation.

The truth of an aligned mix is what the generators are trained towards (the paper: ``G_S->T``
"must generate on par target appearance images which stands out as target patches"): an
accuracy near 1 means the Inspector takes the translated cells for the domain they were
translated to (the translations pass it), near the share of untranslated cells (about 0.5)
means it takes them for the domain they came from. The oracle rows are the same score for a
perfect translation: what the Inspector can tell at all on aligned mixes.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from monai.data import CacheDataset
from torch import nn

from common.data.datalist import entries, has_references
from common.data.io import domain_transform
from common.data.mixing import MixMode, domain_map, draw_ratios, make_mask, mix
from common.evaluation.report import as_slices, show_image, summarise, write_tables

__all__ = ["evaluate_inspector", "INSPECTOR_INPUTS", "ORACLE_INPUTS"]

logger = logging.getLogger(__name__)

#: The inputs the Inspector is probed on, in the figure's order.
INSPECTOR_INPUTS = ("source", "target", "unaligned", "source_mix", "target_mix")
#: The aligned mixes with the oracle translation, probed where every entry has a ``reference``.
ORACLE_INPUTS = ("source_mix_oracle", "target_mix_oracle")


@torch.no_grad()
def evaluate_inspector(
    inspector: nn.Module,
    generator: nn.Module,
    encoder: nn.Module,
    decoder: nn.Module,
    datalist: dict,
    output_dir: str | Path,
    k: int = 8,
    split: str = "test",
    device: torch.device | str = "cpu",
    examples: int = 3,
    seed: int = 0,
) -> dict:
    """Scores the Inspector's cell maps per pair of test volumes and draws mixes and maps.

    Args:
        inspector: the Mixup Inspector (image -> ``(cell logits (B, 1, k, k), fraction logit)``).
        generator: ``G_AB``, source to target.
        encoder: ``E_B`` (returns the features first).
        decoder: ``U_BA`` (features and the encoded image to the source domain).
        datalist: a loaded datalist (images and, where every entry of the split has one, the
            ``reference`` are read: no labels).
        output_dir: where ``metrics.json``/``metrics.csv`` (``inspector_accuracy_<input>`` per
            volume pair, ``INSPECTOR_INPUTS`` and, with references, ``ORACLE_INPUTS``) and
            ``mixes.png`` go.
        k: cells per side of the mask (the Inspector's).
        split: the split of both domains.
        device: where to run.
        examples: volume pairs drawn (their middle slices).
        seed: of the masks.

    Returns:
        ``{"per_volume": [...], "mean": {...}, "std": {...}}``.
    """
    sources, targets = entries(datalist, "source", split), entries(datalist, "target", split)
    pairs = min(len(sources), len(targets))
    oracle = has_references(datalist, "source", split) and has_references(datalist, "target", split)
    loaded = {
        domain: CacheDataset(
            [{"image": e["image"]} for e in items[:pairs]],
            domain_transform(datalist, domain, ("image",)),
            progress=False,
        )
        for domain, items in (("source", sources), ("target", targets))
    }
    if oracle:  # each subject rendered in the other domain, normalised as that domain
        for domain, other, items in (("source", "target", sources), ("target", "source", targets)):
            loaded[f"{domain}_reference"] = CacheDataset(
                [{"image": e["reference"]} for e in items[:pairs]],
                domain_transform(datalist, other, ("image",)),
                progress=False,
            )
    networks = (inspector, generator, encoder, decoder)
    modes = [n.training for n in networks]
    for network in networks:
        network.to(device).eval()
    random = torch.Generator().manual_seed(seed)
    rows, shown = [], []
    for index in range(pairs):
        x_s = as_slices(loaded["source"][index]["image"]).to(device)
        x_t = as_slices(loaded["target"][index]["image"]).to(device)
        depth = min(len(x_s), len(x_t))
        x_s, x_t = x_s[:depth], x_t[:depth]
        mask = make_mask(MixMode.SYNTHMIX, draw_ratios(depth, generator=random), tuple(x_s.shape[2:]), k, random)
        mask = mask.to(device)
        inputs = {
            "source": (x_s, torch.zeros_like(mask)),
            "target": (x_t, torch.ones_like(mask)),
            "unaligned": (mix(x_s, x_t, mask), mask),
            "source_mix": (mix(x_s, generator(x_s).float(), mask), mask),
            "target_mix": (mix(decoder(encoder(x_t)[0], x_t).float(), x_t, mask), mask),
        }
        if oracle:
            r_s = as_slices(loaded["source_reference"][index]["image"]).to(device)[:depth]
            r_t = as_slices(loaded["target_reference"][index]["image"]).to(device)[:depth]
            inputs["source_mix_oracle"] = (mix(x_s, r_s, mask), mask)
            inputs["target_mix_oracle"] = (mix(r_t, x_t, mask), mask)
        row, maps = {"volume": Path(sources[index]["image"]).name}, {}
        for name, (image, truth) in inputs.items():
            probability = torch.sigmoid(inspector(image)[0].float())
            right = (probability > 0.5) == (domain_map(truth.float(), k) > 0.5)
            row[f"inspector_accuracy_{name}"] = float(right.float().mean())
            maps[name] = (image, F.interpolate(probability, size=tuple(image.shape[2:]), mode="nearest"))
        rows.append(row)
        if len(shown) < examples:
            middle = depth // 2
            shown.append((row["volume"], mask[middle], {n: (i[middle], m[middle]) for n, (i, m) in maps.items()}))
    for network, mode in zip(networks, modes, strict=True):
        network.train(mode)
    result = summarise(rows)
    output_dir = write_tables(result, output_dir)
    _draw(shown, output_dir / "mixes.png")
    logger.info("Inspector on %s: %s", split, {k: round(v, 4) for k, v in result["mean"].items()})
    return result


def _draw(shown: list, path: Path) -> None:
    """Per example: the three mixes, the true mask and the Inspector's map of each mix."""
    if not shown:
        return
    mixes = ("unaligned", "source_mix", "target_mix")
    figure = Figure(figsize=(2 * (2 * len(mixes) + 1), 2.2 * len(shown)))
    axes = figure.subplots(len(shown), 2 * len(mixes) + 1, squeeze=False)
    for row, (volume, mask, maps) in zip(axes, shown, strict=True):
        for column, name in enumerate(mixes):
            show_image(row[column], maps[name][0].cpu(), f"{name} ({volume})" if column == 0 else name, fontsize=8)
        show_image(row[len(mixes)], (mask * 2 - 1).cpu(), "mask (white: target)", fontsize=8)
        for column, name in enumerate(mixes):
            show_image(row[len(mixes) + 1 + column], (maps[name][1] * 2 - 1).cpu(), f"Inspector: {name}", fontsize=8)
    figure.suptitle("SynthMix mixes and the Mixup Inspector's domain maps (white: target)", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    logger.info("Wrote the figure %s", path)
