"""The synthetic benchmark: the embedded default data of every bundle.

``python -m common.data.synthetic --task {abdomen,cardiac,brain,polyp} --out DIR`` writes
images, labels and a datalist (DESIGN.md section 6) into ``DIR``, deterministically for a
seed. The tasks mirror the papers' datasets (MMWHS, CHAOS/BTCV, BraTS, CVC/ETIS) in
structure: two domains with a controlled shift, exact labels, and every test subject also
rendered in the other domain (``reference``) so that translations can be scored.

``--preview`` draws the first test subjects of each domain into ``DIR/preview.png``;
``--measure-gap`` then trains a small U-Net on the source domain and reports its Dice on the
source and target test sets: the gap a domain-adaptation method has to close.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from common.data import phantoms
from common.data.io import write_nifti, write_png

__all__ = ["TASKS", "Task", "generate", "ensure_dataset", "main"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Task:
    """How one benchmark task draws and renders subjects and describes itself in the datalist."""

    anatomy: Callable[[int, np.random.Generator], phantoms.Anatomy]
    render: Callable[[phantoms.Anatomy, str, np.random.Generator], np.ndarray]
    domains: tuple[str, str]
    domain_info: tuple[dict, dict]
    labels: dict[int, str]
    tensor_dim: int
    suffix: str
    subjects: int
    description: str


TASKS: dict[str, Task] = {
    "abdomen": Task(
        phantoms.abdomen_anatomy,
        phantoms.render_abdomen,
        ("ct", "mr"),
        (
            {"modality": "CT", "channels": 1, "intensity": {"range": [-250.0, 350.0]}},
            {"modality": "MR", "channels": 1, "intensity": {"percentiles": [0.5, 99.5]}},
        ),
        phantoms.ABDOMEN_LABELS,
        3,
        ".nii.gz",
        12,
        "Synthetic abdominal CT (source) and T2-like MR (target): liver, kidneys, spleen.",
    ),
    "cardiac": Task(
        phantoms.cardiac_anatomy,
        phantoms.render_cardiac,
        ("ct", "mr"),
        (
            {"modality": "CT", "channels": 1, "intensity": {"range": [-400.0, 500.0]}},
            {"modality": "MR", "channels": 1, "intensity": {"percentiles": [0.5, 99.5]}},
        ),
        phantoms.CARDIAC_LABELS,
        3,
        ".nii.gz",
        12,
        "Synthetic cardiac CT (source) and MR (target); aorta and atrium alike, LV cavity and myocardium inverted.",
    ),
    "brain": Task(
        phantoms.brain_anatomy,
        phantoms.render_brain,
        ("t1", "t2"),
        (
            {"modality": "T1", "channels": 1, "intensity": {"range": [0.0, 1.0]}},
            {"modality": "T2", "channels": 1, "intensity": {"range": [0.0, 1.0]}},
        ),
        phantoms.BRAIN_LABELS,
        2,
        ".nii.gz",
        40,
        "Synthetic paired T1-like (source) and T2-like (target) head slices with RegGAN's misalignment.",
    ),
    "polyp": Task(
        phantoms.polyp_anatomy,
        phantoms.render_polyp,
        ("a", "b"),
        (
            {"modality": "endoscopy, centre A", "channels": 3, "intensity": {"range": [0.0, 255.0]}},
            {"modality": "endoscopy, centre B", "channels": 3, "intensity": {"range": [0.0, 255.0]}},
        ),
        phantoms.POLYP_LABELS,
        2,
        ".png",
        60,
        "Synthetic RGB colonoscopy frames with a polyp from two centres (colour, falloff, blur, noise).",
    ),
}

SPLITS = ("training", "validation", "test")


def split_sizes(subjects: int) -> dict[str, int]:
    """Subjects per split: 20 % test and 10 % validation (at least one each), the rest training.

    Raises:
        ValueError: fewer than 3 subjects.
    """
    if subjects < 3:
        raise ValueError(f"`subjects` must be at least 3 (one per split), got {subjects}.")
    test = max(1, round(0.2 * subjects))
    validation = max(1, round(0.1 * subjects))
    return {"training": subjects - test - validation, "validation": validation, "test": test}


def generate(
    task: str,
    out: Path,
    seed: int = 0,
    size: int = 64,
    subjects: int | None = None,
    noise_level: int = 0,
    overwrite: bool = False,
) -> Path:
    """Writes one task's images, labels and ``datalist.json`` into ``out``.

    Args:
        task: ``abdomen``, ``cardiac``, ``brain`` or ``polyp``.
        out: output folder; must be empty or absent unless ``overwrite``.
        seed: random seed; the same seed gives the same files.
        size: in-plane pixels (3D volumes have ``size // 2`` slices).
        subjects: subjects per domain (default: the task's).
        noise_level: ``brain`` only: RegGAN's misalignment level 0-5 of the training pairs.
        overwrite: write into a non-empty folder.

    Returns:
        The path of the datalist.

    Raises:
        ValueError: unknown task, a non-empty folder without ``overwrite``, or invalid sizes.
    """
    if task not in TASKS:
        raise ValueError(f"Unknown task {task!r}; expected one of {', '.join(TASKS)}.")
    if size < 16:
        raise ValueError(f"`size` must be at least 16, got {size}.")
    if noise_level not in range(6):
        raise ValueError(f"`noise_level` must be 0 to 5, got {noise_level}.")
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise ValueError(f"Output folder {out} is not empty; pass --overwrite to write into it.")
    spec = TASKS[task]
    sizes = split_sizes(subjects or spec.subjects)
    datalist: dict = {
        "name": f"synthetic-{task}",
        "description": spec.description,
        "tensor_dim": spec.tensor_dim,
        "labels": {str(k): v for k, v in spec.labels.items()},
        "domains": {"source": dict(spec.domain_info[0]), "target": dict(spec.domain_info[1])},
        "generator": {
            "task": task,
            "seed": seed,
            "size": size,
            "subjects": sum(sizes.values()),
            "noise_level": noise_level if task == "brain" else None,
        },
    }
    jobs = [(domain, split, i) for domain in (0, 1) for split in SPLITS for i in range(sizes[split])]
    if task == "brain":
        jobs = [job for job in jobs if job[0] == 0]  # one subject, two renderings: a pair
    entries: dict = {"source": {s: [] for s in SPLITS}, "target": {s: [] for s in SPLITS}}
    paired: dict = {s: [] for s in SPLITS}
    for domain, split, index in tqdm(jobs, desc=f"synthetic {task}", unit="subject"):
        rng = np.random.default_rng([seed, domain, SPLITS.index(split), index])
        anatomy = spec.anatomy(size, rng)
        name = f"{split}_{index:03d}"
        role = ("source", "target")[domain]
        own, other = spec.domains[domain], spec.domains[1 - domain]
        image = _write(out, f"{role}/images/{name}", spec.render(anatomy, own, rng), anatomy, spec)
        entry = {"image": image}
        if role == "source" or split == "test":  # target labels exist for testing only
            entry["label"] = _write(out, f"{role}/labels/{name}", anatomy.label, anatomy, spec)
        if task == "brain":
            paired[split].append(_brain_pair(out, name, anatomy, entry, noise_level, rng, spec))
            continue
        if split == "test":
            entry["reference"] = _write(
                out, f"{role}/reference/{name}", spec.render(anatomy, other, rng), anatomy, spec
            )
        entries[role][split].append(entry)
    if task == "brain":
        datalist["paired"] = paired
    else:
        datalist.update(entries)
    path = out / "datalist.json"
    path.write_text(json.dumps(datalist, indent=2))
    logger.info("Wrote %d subjects of task %r and %s", len(jobs), task, path)
    return path


def _brain_pair(out, name, anatomy, entry, noise_level, rng, spec) -> dict:
    """The T2 rendering of a T1 subject, aligned (the reference) and misaligned (the training target)."""
    aligned = spec.render(anatomy, "t2", rng)
    reference = _write(out, f"target/images/{name}", aligned, anatomy, spec)
    entry = {**entry, "reference": reference}
    if noise_level:
        moved = phantoms.misalign(aligned, noise_level, rng)
        entry["target"] = _write(out, f"target/misaligned_{noise_level}/{name}", moved, anatomy, spec)
    else:
        entry["target"] = reference
    return entry


def _write(out: Path, stem: str, array: np.ndarray, anatomy: phantoms.Anatomy, spec: Task) -> str:
    relative = stem + spec.suffix
    if spec.suffix == ".png":
        write_png(out / relative, array)
    else:
        write_nifti(out / relative, array, anatomy.spacing)
    return relative


def ensure_dataset(dataset_dir: str | Path, task: str, **options) -> Path:
    """The datalist of ``dataset_dir``, generating the task's data there first if the folder does not exist.

    Args:
        dataset_dir: the bundle's ``dataset_dir``.
        task: the task to generate when the folder is absent.
        options: passed to :func:`generate` (``seed``, ``size``, ``subjects``, ``noise_level``).

    Returns:
        The path of ``datalist.json``.

    Raises:
        ValueError: the folder exists but holds no ``datalist.json``.

    Under ``torch.distributed``, rank 0 generates while the other ranks wait at a barrier.
    """
    dataset_dir = Path(dataset_dir)
    datalist = dataset_dir / "datalist.json"
    distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
    if distributed and torch.distributed.get_rank() != 0:
        torch.distributed.barrier()  # rank 0 generates; the others wait for it
        return datalist
    if not dataset_dir.exists():
        logger.info("Dataset folder %s does not exist: generating the synthetic %r task there.", dataset_dir, task)
        generate(task, dataset_dir, **options)
    if distributed:
        torch.distributed.barrier()
    if not datalist.exists():
        raise ValueError(
            f"{dataset_dir} exists but has no datalist.json; point `datalist` at yours or remove the folder."
        )
    recorded = json.loads(datalist.read_text()).get("generator")
    if recorded is not None:  # synthetic data: it must be what was asked for
        asked = {"task": task, **{k: v for k, v in options.items() if v is not None and k in recorded}}
        different = {k: (recorded.get(k), v) for k, v in asked.items() if recorded.get(k) != v}
        if different:
            changes = ", ".join(f"{k}: {old!r}, asked {new!r}" for k, (old, new) in different.items())
            raise ValueError(
                f"{dataset_dir} holds synthetic data generated with other options ({changes}); "
                "remove the folder or choose another `dataset_dir`."
            )
    return datalist


def main(argv: list[str] | None = None) -> None:
    """Command line: generate a task's data, and optionally measure its domain gap."""
    parser = argparse.ArgumentParser(prog="python -m common.data.synthetic", description=__doc__.splitlines()[0])
    parser.add_argument("--task", required=True, choices=sorted(TASKS))
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=64, help="in-plane pixels (default 64)")
    parser.add_argument("--subjects", type=int, default=None, help="subjects per domain (default: the task's)")
    parser.add_argument("--noise-level", type=int, default=0, choices=range(6), help="brain: misalignment level")
    parser.add_argument("--overwrite", action="store_true", help="write into a non-empty folder")
    parser.add_argument("--preview", action="store_true", help="draw the first test subjects into DIR/preview.png")
    parser.add_argument(
        "--measure-gap",
        action="store_true",
        help="train a U-Net on the source and report Dice on source and target test sets",
    )
    parser.add_argument("--iterations", type=int, default=600, help="--measure-gap: training iterations")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        datalist = generate(args.task, args.out, args.seed, args.size, args.subjects, args.noise_level, args.overwrite)
    except ValueError as error:
        parser.error(str(error))
    if args.preview:
        from common.data.preview import preview

        logger.info("Wrote %s", preview(datalist, args.out / "preview.png"))
    if args.measure_gap:
        from common.data.gap import measure_gap

        result = measure_gap(datalist, iterations=args.iterations, seed=args.seed)
        print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
