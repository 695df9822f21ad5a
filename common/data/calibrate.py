"""Calibration of the synthetic benchmark with oracles: can a task show the effect its method claims?

``python -m common.data.calibrate --task TASK`` draws the task's subjects in memory (the
generator of :mod:`common.data.synthetic`, with labels for every subject), trains the
benchmark's fixed segmenter (:func:`common.data.gap.train_segmenter`) once on the labelled
source and once on the labelled target, for each seed, and scores:

- ``source_test``: the source-trained segmenter on the source test subjects;
- ``no_adaptation``: the same segmenter on the target test subjects;
- ``source_rendering``: on the target test subjects rendered in the source domain, the ceiling
  of any translation;
- ``oracle_inverse``: on the target test images passed through the exact inverse of the shift,
  where the task's shift is invertible (``polyp``): the ceiling of an ideal translation;
- ``global_translation``: on the target test subjects rendered with the source's global
  appearance but the target's local effects (``cardiac``): what an ideal *global* translation
  leaves;
- ``supervised_target``: a segmenter trained on the labelled target, scored on the target test
  subjects: the upper bound of unsupervised adaptation.

Each row is the mean and standard deviation over seeds of the mean Dice over test images
(volumes) and foreground classes, with per-class means. Results go to ``OUT/TASK.json``; the
table of every task in ``OUT`` to ``OUT/calibration.md``, the figure to ``OUT/calibration.png``
and, with ``--docs FILE``, the table into FILE between the calibration markers.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch
from monai.utils import set_determinism

from common.data.datasets import SliceDataset
from common.data.gap import score_segmenter, train_segmenter
from common.data.io import intensity_transform
from common.data.synthetic import SPLITS, Task, split_sizes, task_spec

__all__ = ["ROWS", "calibrate", "acceptance", "write_report", "main"]

logger = logging.getLogger(__name__)

ROWS = {
    "source_test": "source-trained, source test",
    "no_adaptation": "source-trained, target test (no adaptation)",
    "source_rendering": "source-trained, target subjects rendered in the source domain (translation ceiling)",
    "oracle_inverse": "source-trained, target test through the oracle inverse of the shift",
    "global_translation": "source-trained, target subjects in the source's global appearance with the target's local effects",
    "supervised_target": "target-trained, target test (supervised upper bound)",
}
MARKERS = ("<!-- calibration:start -->", "<!-- calibration:end -->")


def _stored(array: np.ndarray, spec: Task) -> np.ndarray:
    """The array as the data files hold it: 8-bit values for PNG, float32 for NIfTI."""
    if spec.suffix == ".png":
        return np.round(np.clip(array, 0, 1) * 255).astype(np.float32)
    return array.astype(np.float32)


def _item(array: np.ndarray, label: np.ndarray, spacing, spec: Task, intensity: dict) -> dict:
    """A normalised, channel-first sample, as the bundles' loaders produce it."""
    image = _stored(array, spec)
    image = image if image.ndim == label.ndim + 1 else image[None]
    image = intensity_transform("image", intensity)({"image": torch.as_tensor(image)})["image"]
    return {
        "image": torch.as_tensor(image, dtype=torch.float32),
        "label": torch.as_tensor(label[None]),
        "spacing": spacing,
    }


def draw_subjects(task: str, seed: int, size: int, subjects: int | None, version: int, phases: bool, reverse: bool):
    """The labelled samples of one calibration run, normalised as the bundles normalise them.

    Subjects are drawn as :func:`common.data.synthetic.generate` draws them (the same seeds: the subjects
    of seed 0 are those of the files a bundle trains on), each with its label.

    Returns:
        ``{"training": {"source": [...], "target": [...]}, "test": {row: [...]}}`` and the task.
    """
    spec = task_spec(task, version)
    sizes = split_sizes(subjects or spec.subjects)
    info = [dict(spec.domain_info[0]), dict(spec.domain_info[1])]
    domains = list(spec.domains)
    if reverse:
        domains, info = domains[::-1], info[::-1]
    out: dict = {"training": {"source": [], "target": []}, "test": {row: [] for row in ROWS}}
    for role, domain_index in (("source", 0), ("target", 1)):
        generator_domain = domain_index if not reverse else 1 - domain_index
        for split in ("training", "test"):
            for index in range(sizes[split]):
                rng = np.random.default_rng([seed, generator_domain, SPLITS.index(split), index])
                anatomy = spec.anatomy(size, rng)
                own, other = domains[domain_index], domains[1 - domain_index]
                if phases:  # as generate draws it: the subject's MR rendering is one phase
                    phase = spec.phases[rng.integers(len(spec.phases))]
                    own, other = (phase if own == "mr" else own), (phase if other == "mr" else other)
                image = spec.render(anatomy, own, rng)

                def item(array, domain=domain_index):
                    return _item(array, anatomy.label, anatomy.spacing, spec, info[domain]["intensity"])

                if split == "training":
                    out["training"][role].append(item(image))
                elif role == "source":
                    out["test"]["source_test"].append(item(image))
                else:
                    out["test"]["no_adaptation"].append(item(image))
                    out["test"]["supervised_target"].append(item(image))
                    out["test"]["source_rendering"].append(item(spec.render(anatomy, other, rng), domain=0))
                    if spec.inverse is not None:
                        stored = _stored(image, spec) / (255.0 if spec.suffix == ".png" else 1.0)
                        out["test"]["oracle_inverse"].append(item(spec.inverse(stored, own, other), domain=0))
                    if spec.global_domain is not None and not reverse:
                        out["test"]["global_translation"].append(
                            item(spec.render(anatomy, spec.global_domain, rng), domain=0)
                        )
    out["test"] = {row: items for row, items in out["test"].items() if items}
    return out, spec


def _samples(items: list[dict], tensor_dim: int):
    return SliceDataset(items) if tensor_dim == 3 else items


def calibrate(
    task: str,
    seeds=(0, 1, 2),
    size: int = 64,
    subjects: int | None = None,
    iterations: int = 600,
    batch_size: int = 16,
    version: int = 2,
    phases: bool = False,
    reverse: bool = False,
    device: str | None = None,
) -> dict:
    """The calibration rows of one task and direction, over ``seeds``.

    Args:
        task: a benchmark task.
        seeds: data and training seeds.
        size: in-plane pixels.
        subjects: subjects per domain (default: the task's).
        iterations: training iterations of each segmenter.
        batch_size: images (slices) per iteration.
        version: benchmark version.
        phases: ``abdomen`` v2: the multi-phase MR target.
        reverse: the reverse direction (the task's target domain as the labelled source).
        device: torch device (default: CUDA when available).

    Returns:
        ``{"task", "direction", "options", "rows": {row: {"dice": mean, "std", "per_seed",
        "per_class": {name: mean}}}, "acceptance": {...}, "machine", "seconds"}``.
    """
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    spec = task_spec(task, version)
    labels = {int(k): v for k, v in spec.labels.items()}
    channels = spec.domain_info[0]["channels"]
    runs: dict[str, list[dict]] = {}
    started = time.perf_counter()
    for seed in seeds:
        data, spec = draw_subjects(task, seed, size, subjects, version, phases, reverse)
        networks = {}
        for role in ("source", "target"):
            set_determinism(seed=seed)
            samples = _samples(data["training"][role], spec.tensor_dim)
            networks[role] = train_segmenter(
                samples, channels, max(labels) + 1, iterations, batch_size, device, f"{task} seed {seed}: {role} U-Net"
            )
        for row, items in data["test"].items():
            network = networks["target" if row == "supervised_target" else "source"]
            runs.setdefault(row, []).append(score_segmenter(network, items, labels, device))
        logger.info("%s seed %d: %s", task, seed, {row: round(r[-1]["dice"], 3) for row, r in runs.items()})
    set_determinism(seed=None)
    rows = {}
    for row, scores in runs.items():
        dice = [s["dice"] for s in scores]
        per_class = {name: float(np.mean([s["per_class"][name] for s in scores])) for name in scores[0]["per_class"]}
        rows[row] = {"dice": float(np.mean(dice)), "std": float(np.std(dice)), "per_seed": dice, "per_class": per_class}
    domains = spec.domains[::-1] if reverse else spec.domains
    result = {
        "task": task,
        "direction": f"{domains[0]} -> {domains[1]}",
        "options": {
            "version": version,
            "phases": phases,
            "size": size,
            "subjects": subjects or spec.subjects,
            "seeds": list(seeds),
            "iterations": iterations,
            "batch_size": batch_size,
        },
        "rows": rows,
        "machine": _machine(device),
        "seconds": round(time.perf_counter() - started, 1),
    }
    result["acceptance"] = acceptance(rows)
    return result


def acceptance(rows: dict) -> dict:
    """The benchmark's acceptance criteria, from one direction's rows.

    - ``translation_ceiling``: the best oracle translation (the oracle inverse where the shift
      is invertible, else the source rendering) reaches at least 0.9 x the ceiling (the source
      rendering where an oracle inverse exists, else the source test Dice: the target subjects
      are no harder than the source's once rendered in the source domain);
    - ``gap``: no adaptation stays at or below 0.6 x the supervised upper bound.
    """
    if "oracle_inverse" in rows:
        oracle, ceiling = rows["oracle_inverse"]["dice"], rows["source_rendering"]["dice"]
        oracle_name, ceiling_name = "oracle_inverse", "source_rendering"
    else:
        oracle, ceiling = rows["source_rendering"]["dice"], rows["source_test"]["dice"]
        oracle_name, ceiling_name = "source_rendering", "source_test"
    gap, bound = rows["no_adaptation"]["dice"], rows["supervised_target"]["dice"]
    return {
        "translation_ceiling": {
            "passed": bool(oracle >= 0.9 * ceiling),
            "rule": f"{oracle_name} {oracle:.3f} >= 0.9 x {ceiling_name} {ceiling:.3f}",
        },
        "gap": {
            "passed": bool(gap <= 0.6 * bound),
            "rule": f"no_adaptation {gap:.3f} <= 0.6 x supervised_target {bound:.3f}",
        },
    }


def _machine(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"


def _atomic_write(path: Path, text: str | None = None, figure=None) -> None:
    """Writes ``text`` (or a figure as PNG) to a temporary file beside ``path``, then renames it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        if figure is not None:
            figure.savefig(temporary, format="png", dpi=110, bbox_inches="tight")
        else:
            temporary.write_text(text)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def _results(out: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(out.glob("*.json"))]


def table(results: list[dict]) -> str:
    """The markdown table of calibration results (one line per task and direction)."""
    header = ["task", "direction", *ROWS, "accepted"]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for result in results:
        rows = result["rows"]
        cells = [f"{rows[r]['dice']:.3f} ± {rows[r]['std']:.3f}" if r in rows else "–" for r in ROWS]
        verdict = ", ".join(
            f"{name} {'yes' if check['passed'] else 'NO'}" for name, check in result["acceptance"].items()
        )
        name = result["task"] + (" (multi-phase MR)" if result["options"].get("phases") else "")
        lines.append("| " + " | ".join([name, result["direction"], *cells, verdict]) + " |")
    shared = sorted(
        {
            f"version {o['version']}, seeds {o['seeds']}, size {o['size']}, {o['iterations']} iterations of batch {o['batch_size']}"
            for o in (r["options"] for r in results)
        }
    )
    subjects = dict(sorted((r["task"], r["options"]["subjects"]) for r in results))
    machines = sorted({r["machine"] for r in results})
    lines.append("")
    lines.append(
        "Mean Dice over test images/volumes and foreground classes, mean ± std over seeds; "
        f"{'; '.join(shared)}; subjects per domain {', '.join(f'{t} {n}' for t, n in subjects.items())}; "
        f"measured on {', '.join(machines)}."
    )
    return "\n".join(lines) + "\n"


def figure(results: list[dict]):
    """A bar chart: each task and direction, its calibration rows side by side with the seeds' spread."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(2.6 * max(len(results), 1) + 1.5, 3.8))
    ax = fig.add_subplot()
    width = 0.8 / len(ROWS)
    colours = ["#4c72b0", "#c44e52", "#55a868", "#8172b2", "#ccb974", "#64b5cd"]
    for k, (row, colour) in enumerate(zip(ROWS, colours, strict=True)):
        x = [i + (k - len(ROWS) / 2 + 0.5) * width for i, r in enumerate(results) if row in r["rows"]]
        values = [r["rows"][row] for r in results if row in r["rows"]]
        ax.bar(x, [v["dice"] for v in values], width, yerr=[v["std"] for v in values], color=colour, label=row)
    ax.set_xticks(range(len(results)))
    ax.set_xticklabels(
        [f"{r['task']}\n{r['direction']}" + (" (phases)" if r["options"].get("phases") else "") for r in results]
    )
    ax.set_ylabel("Dice")
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=7, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.18))
    ax.set_title("Benchmark calibration: segmenter Dice with oracles (mean ± std over seeds)")
    return fig


def write_report(out: Path, docs: Path | None = None) -> Path:
    """Writes ``OUT/calibration.md`` and ``OUT/calibration.png`` from every result in ``OUT``,
    and the table into ``docs`` between the calibration markers.

    Raises:
        ValueError: ``docs`` lacks the markers.
    """
    results = _results(out)
    text = table(results)
    legend = "".join(f"- `{row}`: {description}\n" for row, description in ROWS.items())
    _atomic_write(out / "calibration.md", f"# Benchmark calibration\n\n{text}\nRows:\n{legend}")
    _atomic_write(out / "calibration.png", figure=figure(results))
    if docs is not None:
        content = docs.read_text()
        if MARKERS[0] not in content or MARKERS[1] not in content:
            raise ValueError(f"{docs} has no calibration markers {MARKERS[0]} ... {MARKERS[1]}.")
        head, rest = content.split(MARKERS[0], 1)
        _, tail = rest.split(MARKERS[1], 1)
        _atomic_write(docs, f"{head}{MARKERS[0]}\n{text}{MARKERS[1]}{tail}")
    return out / "calibration.md"


def main(argv: list[str] | None = None) -> None:
    """Command line: calibrate one task (both directions with ``--direction both``) and write the report."""
    parser = argparse.ArgumentParser(prog="python -m common.data.calibrate", description=__doc__.splitlines()[0])
    parser.add_argument("--task", required=True, choices=["abdomen", "cardiac", "brain", "polyp"])
    parser.add_argument("--out", type=Path, default=Path("docs/calibration"), help="results folder")
    parser.add_argument("--docs", type=Path, default=None, help="a markdown file whose calibration block to update")
    parser.add_argument("--seeds", type=int, default=3, help="number of seeds (0, 1, ...; default 3)")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--subjects", type=int, default=None, help="subjects per domain (default: the task's)")
    parser.add_argument("--iterations", type=int, default=600, help="training iterations of each segmenter")
    parser.add_argument("--version", type=int, default=2, choices=[1, 2])
    parser.add_argument("--phases", action="store_true", help="abdomen: the multi-phase MR target")
    parser.add_argument("--direction", choices=["forward", "reverse", "both"], default="forward")
    parser.add_argument("--device", default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.phases and args.task != "abdomen":
        parser.error("--phases is an option of the abdomen task only.")
    if args.seeds < 1:
        parser.error("--seeds must be at least 1.")
    for reverse in {"forward": [False], "reverse": [True], "both": [False, True]}[args.direction]:
        result = calibrate(
            args.task,
            seeds=range(args.seeds),
            size=args.size,
            subjects=args.subjects,
            iterations=args.iterations,
            version=args.version,
            phases=args.phases,
            reverse=reverse,
            device=args.device,
        )
        name = f"{args.task}{'_phases' if args.phases else ''}{'_reverse' if reverse else ''}"
        if args.version != 2:
            name += f"_v{args.version}"
        _atomic_write(args.out / f"{name}.json", json.dumps(result, indent=2) + "\n")
        for check in result["acceptance"].values():
            logger.info("%s: %s -> %s", name, check["rule"], "passed" if check["passed"] else "FAILED")
    logger.info("Wrote %s", write_report(args.out, args.docs))


if __name__ == "__main__":
    main()
