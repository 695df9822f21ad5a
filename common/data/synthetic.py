"""The synthetic benchmark: the embedded default data of every bundle.

``python -m common.data.synthetic --task {abdomen,cardiac,brain,polyp} --out DIR`` writes
images, labels and a datalist (DESIGN.md section 6) into ``DIR``, deterministically for a
seed. The tasks mirror the papers' datasets (MMWHS, CHAOS/BTCV, BraTS, CVC/ETIS) in
structure: two domains with a controlled shift, exact labels, and every test subject also
rendered in the other domain (``reference``) so that translations can be scored.

``--version 2`` (the default) is the calibrated benchmark (``python -m common.data.calibrate``
shows with oracles that each task contains the shift its method removes); ``--version 1`` writes
the first release byte for byte. ``--phases`` gives the abdomen task a multi-phase MR target.
``--labelled-validation`` also labels the target validation split (with references), so that a
method's options can be chosen on it rather than on the test split.

``--preview`` draws the first test subjects of each domain into ``DIR/preview.png``;
``--measure-gap`` then trains a small U-Net on the source domain and reports its Dice on the
source and target test sets: the gap a domain-adaptation method has to close.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from common.data import phantoms
from common.data.io import write_nifti, write_png

__all__ = ["TASKS", "TASKS_V1", "VERSIONS", "Task", "task_spec", "generate", "ensure_dataset", "main"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Task:
    """How one benchmark task draws and renders subjects and describes itself in the datalist.

    Version 2 adds what the calibration (:mod:`common.data.calibrate`) uses: ``inverse(image,
    domain, to)``, the oracle translation where the shift is invertible; ``global_domain``, the
    rendering that keeps the target's local effects in the source's global appearance (what an
    ideal global translation yields); ``phases``, the target renderings of a multi-phase option.
    """

    anatomy: Callable[[int, np.random.Generator], phantoms.Anatomy]
    render: Callable[[phantoms.Anatomy, str, np.random.Generator], np.ndarray]
    domains: tuple[str, str]
    domain_info: tuple[dict, dict]
    labels: dict[int, str]
    tensor_dim: int
    suffix: str
    subjects: int
    description: str
    inverse: Callable[[np.ndarray, str, str], np.ndarray] | None = None
    global_domain: str | None = None
    phases: tuple[str, ...] = ()


TASKS_V1: dict[str, Task] = {
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

TASKS: dict[str, Task] = {
    "abdomen": replace(
        TASKS_V1["abdomen"],
        render=phantoms.render_abdomen_v2,
        phases=tuple(phantoms.ABDOMEN_MR_PHASES),
    ),
    "cardiac": replace(
        TASKS_V1["cardiac"],
        render=phantoms.render_cardiac_v2,
        description=(
            "Synthetic cardiac CT (source) and MR (target); aorta and atrium alike, LV cavity and myocardium "
            "inverted; MR-only myocardial texture, wall contrast and partial-volume boundaries."
        ),
        global_domain="ct_local",
    ),
    "brain": replace(
        TASKS_V1["brain"],
        anatomy=phantoms.brain_anatomy_v2,
        render=phantoms.render_brain_v2,
        labels=phantoms.BRAIN_LABELS_V2,
        description=(
            "Synthetic paired T1-like (source) and T2-like (target) head slices with oedema-like lesions "
            "(bright in T2, faint in T1) and RegGAN's misalignment."
        ),
    ),
    "polyp": replace(
        TASKS_V1["polyp"],
        render=phantoms.render_polyp_v2,
        description=(
            "Synthetic RGB colonoscopy frames with a polyp from two centres (invertible colour, tone and "
            "illumination change; small blur and noise)."
        ),
        inverse=phantoms.polyp_inverse,
    ),
}
VERSIONS: dict[int, dict[str, Task]] = {1: TASKS_V1, 2: TASKS}
MULTIPHASE_INFO = {"modality": "MR (T1, multi-phase)", "channels": 1, "intensity": {"percentiles": [0.5, 99.5]}}


def task_spec(task: str, version: int = 2) -> Task:
    """The specification of ``task`` in benchmark ``version`` (1 or 2).

    Raises:
        ValueError: unknown task or version.
    """
    if version not in VERSIONS:
        raise ValueError(f"Unknown benchmark version {version!r}; expected one of {sorted(VERSIONS)}.")
    if task not in VERSIONS[version]:
        raise ValueError(f"Unknown task {task!r}; expected one of {', '.join(VERSIONS[version])}.")
    return VERSIONS[version][task]


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
    version: int = 2,
    phases: bool = False,
    labelled_validation: bool = False,
    oracle_labels: bool = False,
    reverse: bool = False,
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
        version: benchmark version: 2 (calibrated, the default) or 1 (the first release, reproduced
            byte for byte).
        phases: ``abdomen`` version 2 only: a multi-phase T1-weighted MR target (each target image
            one of pre-contrast, arterial or portal-venous, recorded as the entry's ``phase``)
            instead of the T2-like one.
        labelled_validation: also label the target domain's validation split and give it
            references, for choosing among a method's options without touching the test split
            (the images are the same as without it; unsupervised training never reads target
            labels).
        oracle_labels: also write the labels of the target domain's *training* images, under the
            entries' ``oracle_label`` key, for the oracles of a paper's tables only (a
            segmenter trained on labelled target data, joint-domain learning); the images are the
            same as without it, and no unsupervised method reads that key.
        reverse: the reverse direction: the task's target domain is the labelled source and its
            source domain the unlabelled target (the same images and labels as without it, the
            roles swapped; e.g. cardiac CT -> MR; calibrated as ``--direction reverse``).

    Returns:
        The path of the datalist.

    Raises:
        ValueError: unknown task or version, a non-empty folder without ``overwrite``, invalid
            sizes, ``phases`` for a task without phases, or ``reverse`` with ``phases`` or for
            the paired brain task.
    """
    spec = task_spec(task, version)
    if phases and not spec.phases:
        raise ValueError(f"`phases` is an option of the version 2 abdomen task only, not of {task!r} v{version}.")
    if reverse and (phases or task == "brain"):
        raise ValueError("`reverse` swaps two unpaired domains: not for the paired brain task nor with `phases`.")
    if size < 16:
        raise ValueError(f"`size` must be at least 16, got {size}.")
    if noise_level not in range(6):
        raise ValueError(f"`noise_level` must be 0 to 5, got {noise_level}.")
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise ValueError(f"Output folder {out} is not empty; pass --overwrite to write into it.")
    sizes = split_sizes(subjects or spec.subjects)
    datalist: dict = {
        "name": f"synthetic-{task}",
        "description": spec.description,
        "tensor_dim": spec.tensor_dim,
        "labels": {str(k): v for k, v in spec.labels.items()},
        "domains": {
            "source": dict(spec.domain_info[int(reverse)]),
            "target": dict(MULTIPHASE_INFO if phases else spec.domain_info[1 - int(reverse)]),
        },
        "generator": {
            "task": task,
            "seed": seed,
            "size": size,
            "subjects": sum(sizes.values()),
            "noise_level": noise_level if task == "brain" else None,
            "version": version,
            "phases": phases,
            "labelled_validation": labelled_validation,
            "oracle_labels": oracle_labels,
            "reverse": reverse,
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
        role = ("source", "target")[domain ^ int(reverse)]  # reverse: the same subjects, roles swapped
        own, other = spec.domains[domain], spec.domains[1 - domain]
        if phases:  # the MR rendering of this subject is one of the phases, drawn per subject
            phase = spec.phases[rng.integers(len(spec.phases))]
            own, other = (phase, other) if role == "target" else (own, phase)
        image = _write(out, f"{role}/images/{name}", spec.render(anatomy, own, rng), anatomy, spec)
        entry = {"image": image}
        if phases and role == "target":
            entry["phase"] = phase
        scored = split == "test" or (labelled_validation and split == "validation" and role == "target")
        if role == "source" or scored:  # target labels exist for testing (and choosing options) only
            entry["label"] = _write(out, f"{role}/labels/{name}", anatomy.label, anatomy, spec)
        elif oracle_labels and split == "training":  # for oracles only, under a key UDA never reads
            entry["oracle_label"] = _write(out, f"{role}/labels/{name}", anatomy.label, anatomy, spec)
        if task == "brain":
            paired[split].append(_brain_pair(out, name, anatomy, entry, noise_level, rng, spec))
            continue
        if scored:
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


def ensure_dataset(dataset_dir: str | Path, task: str, version: int = 2, **options) -> Path:
    """The datalist of ``dataset_dir``, generating the task's data there first if the folder does not exist.

    Args:
        dataset_dir: the bundle's ``dataset_dir``.
        task: the task to generate when the folder is absent.
        version: the benchmark version (data written before versions existed is version 1).
        options: passed to :func:`generate` (``seed``, ``size``, ``subjects``, ``noise_level``, ``phases``,
            ``labelled_validation``, ``oracle_labels``, ``reverse``).

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
        # Generated beside it and renamed into place: an interrupted generation leaves no partial folder.
        partial = dataset_dir.with_name(f".{dataset_dir.name}.partial-{os.getpid()}")
        shutil.rmtree(partial, ignore_errors=True)
        try:
            generate(task, partial, version=version, **options)
        except BaseException:  # interrupted or failed: nothing half-written stays behind
            shutil.rmtree(partial, ignore_errors=True)
            raise
        try:
            partial.rename(dataset_dir)
        except OSError:  # another process finished first: keep its data
            shutil.rmtree(partial, ignore_errors=True)
            if not dataset_dir.exists():
                raise
    if distributed:
        torch.distributed.barrier()
    if not datalist.exists():
        raise ValueError(
            f"{dataset_dir} exists but has no datalist.json; point `datalist` at yours or remove the folder."
        )
    recorded = json.loads(datalist.read_text()).get("generator")
    if recorded is not None:  # synthetic data: it must be what was asked for
        recorded = {
            "version": 1,
            "phases": False,
            "labelled_validation": False,
            "oracle_labels": False,
            "reverse": False,
            **recorded,
        }  # older: v1
        asked = {"task": task, "version": version}
        asked.update({k: v for k, v in options.items() if v is not None and k in recorded})
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
    parser.add_argument(
        "--version", type=int, default=2, choices=sorted(VERSIONS), help="benchmark version (default 2; 1 = v1)"
    )
    parser.add_argument("--phases", action="store_true", help="abdomen: multi-phase T1-weighted MR target")
    parser.add_argument(
        "--labelled-validation",
        action="store_true",
        help="label the target validation split too (for choosing options; never the test split)",
    )
    parser.add_argument(
        "--oracle-labels",
        action="store_true",
        help="label the target training images under `oracle_label` (for supervised/joint oracles only)",
    )
    parser.add_argument(
        "--reverse", action="store_true", help="the reverse direction: the task's target domain as the labelled source"
    )
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
        datalist = generate(
            args.task,
            args.out,
            args.seed,
            args.size,
            args.subjects,
            args.noise_level,
            args.overwrite,
            version=args.version,
            phases=args.phases,
            labelled_validation=args.labelled_validation,
            oracle_labels=args.oracle_labels,
            reverse=args.reverse,
        )
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
