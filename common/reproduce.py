"""Runs a bundle's experiment matrix through its own configs and writes the results table.

    python -m common.reproduce reggan --preset cpu --out results/reggan_cpu

The matrix is the bundle's ``configs/reproduce.yaml`` (or ``configs/NAME.yaml`` with
``--matrix NAME``, e.g. a comparison of options on a validation split): named ``variants``
(config overrides), ``settings`` crossed with them (config id: values), ``overrides`` common to
every run (optional), ``presets`` (overlays on ``train.yaml``), the ``evaluate`` overlay, the
``metrics`` to report (keys of the evaluation's ``metrics.json`` ``mean``, or of a
sub-evaluation's ``*/metrics.json``, also as ``<sub-folder>/<key>``) and the ``baseline`` whose ``<baseline>_<metric>`` values
are shown as a reference row (default ``identity``, the untranslated input; ``no_adaptation``
for segmentation). Each run trains with
``train.yaml`` + the preset's overlays + its overrides (its own ``models`` and ``eval``
folders under ``--out/runs``), then runs ``evaluating`` with the evaluation overlay. A run
whose ``metrics.json`` exists is not run again, so an interrupted matrix continues where it
stopped (``--force`` reruns; ``--evaluate-only`` scores trained runs again); with ``--resume``
an interrupted run also continues inside, from its stage checkpoints (``resume: true``; its
``training_seconds`` then count only the continued part, and ``results.md`` says which runs). The outputs are
``results.json`` (a list of rows: ``variant``, the settings, every metric, the seconds taken),
``results.csv``, ``results.md`` (one table per metric, variants by setting, with the mean over
seeds when the setting is ``seed``) and ``metrics.png`` (each metric against the first setting).

A variant that trains a stage exactly as another variant does (same settings, same data images;
e.g. DADR's joint-domain U-Net on the disentanglement of the DADR run) may declare it under
``reuse`` (``VARIANT: {from: OTHER, stages: [STAGE, ...]}``): it starts when ``OTHER``'s run
(with the same settings) has finished, with copies of that run's finished stage checkpoints
(``models/STAGE/resume.pt``) and ``resume: true``, so those stages are loaded, not trained again.
The matrix author vouches that the stage's settings are the same; the copied checkpoint must
have reached the stage's iteration count, or the stage continues from it.

``--variants NAME ...`` runs and reports only those variants (e.g. one table of a matrix whose
whole run exceeds a session); a selected variant that reuses an unselected one needs that run's
checkpoints in ``--out`` already.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import logging
import math
import multiprocessing
import os
import platform
import shutil
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path

import numpy as np
import torch
import yaml
from matplotlib.figure import Figure
from monai.bundle import ConfigParser

from common.engines.checkpoints import find_resume
from common.evaluation import show_image
from common.evaluation.report import json_text

__all__ = ["load_matrix", "run_matrix", "write_results", "main"]

logger = logging.getLogger(__name__)
BUNDLES = Path(__file__).resolve().parents[1] / "bundles"
REQUIRED = ("variants", "presets", "evaluate", "metrics")


def load_matrix(bundle: Path, name: str = "reproduce") -> dict:
    """A bundle's ``configs/<name>.yaml``, checked.

    Args:
        bundle: the bundle folder.
        name: the matrix (default ``reproduce``, the paper's tables).

    Returns:
        The matrix with ``settings`` and ``overrides`` defaulting to none.

    Raises:
        ValueError: the file is missing, lacks a key, or overrides a config id that
            ``train.yaml``, the presets' overlays and the evaluation overlay do not define (a
            typo would otherwise silently add an unused id).
    """
    path = bundle / "configs" / f"{name}.yaml"
    if not path.is_file():
        raise ValueError(f"{path} not found: the bundle {bundle.name!r} defines no experiment matrix.")
    matrix = yaml.safe_load(path.read_text()) or {}
    missing = [k for k in REQUIRED if k not in matrix]
    if missing:
        raise ValueError(f"{path}: missing key(s) {', '.join(missing)}; expected {', '.join(REQUIRED)}.")
    matrix.setdefault("settings", {})
    matrix.setdefault("overrides", {})
    matrix.setdefault("lower_is_better", [])
    matrix.setdefault("baseline", "identity")
    matrix.setdefault("reuse", {})
    for name, spec in matrix["reuse"].items():
        source = (spec or {}).get("from") if isinstance(spec, dict) else None
        if (
            name not in matrix["variants"]
            or source not in matrix["variants"]
            or source == name
            or source in matrix["reuse"]
            or not isinstance(spec.get("stages"), list)
            or not spec["stages"]
        ):
            raise ValueError(
                f"{path}: reuse {name!r}: {spec!r}; expected a variant mapped to {{from: <another variant that "
                "reuses nothing>, stages: [<stage name>, ...]}."
            )
    configs = ConfigParser()  # every id a run overrides must exist in train.yaml or an overlay
    presets = (o for p in matrix["presets"].values() for o in p)
    overlays = dict.fromkeys(["configs/train.yaml", *presets, matrix["evaluate"]])
    configs.read_config([str(bundle / f) for f in overlays])
    for where, ids in [
        *((f"variant {name!r}", list(o or {})) for name, o in matrix["variants"].items()),
        ("settings", list(matrix["settings"])),
        ("overrides", list(matrix["overrides"])),
    ]:
        unknown = [i for i in ids if i not in configs]
        if unknown:
            raise ValueError(
                f"{path}: {where} sets {', '.join(map(repr, unknown))}, which neither configs/train.yaml "
                "nor the presets' and the evaluation's overlays define."
            )
    return matrix


def _parse(bundle: Path, files: list[str], overrides: dict) -> ConfigParser:
    parser = ConfigParser()
    parser.read_meta(str(bundle / "configs" / "metadata.json"))
    parser.read_config([str(bundle / f) for f in files])
    parser.update({"bundle_root": str(bundle), **overrides})
    return parser


def _run(parser: ConfigParser, run_id: str) -> None:
    """What ``python -m monai.bundle run RUN_ID`` does: initialize, the run's expressions, finalize."""
    for key in ("initialize", run_id, "finalize"):
        if key in parser:
            parser.get_parsed_content(key)


def _run_name(variant: str, settings: dict) -> str:
    return "_".join([variant, *(f"{k}{v}" for k, v in settings.items())])


def _worker(threads: int) -> None:
    torch.set_num_threads(threads)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s - %(name)s - %(levelname)s - %(message)s")


def _train_and_evaluate(
    bundle: str,
    overlays: list[str],
    evaluate: str,
    overrides: dict,
    folder: str,
    train: bool = True,
    resumed: bool = False,
) -> None:
    """One run: ``training`` (timed, the seconds written to the run folder, with whether it continued
    an interrupted run), then ``evaluating``."""
    bundle_path, folder_path = Path(bundle), Path(folder)
    logger.info("Run %s: %s", folder_path.name, overrides)
    if train:
        tick = time.perf_counter()
        _run(_parse(bundle_path, overlays, overrides), "training")
        seconds = time.perf_counter() - tick
        (folder_path / "seconds.json").write_text(json.dumps({"training_seconds": seconds, "resumed": resumed}))
    _run(_parse(bundle_path, [*overlays, evaluate], overrides), "evaluating")


def run_matrix(
    bundle: str | Path,
    preset: str,
    out: str | Path,
    force: bool = False,
    jobs: int = 1,
    evaluate_only: bool = False,
    matrix_name: str = "reproduce",
    variants: list[str] | None = None,
    resume: bool = False,
) -> list[dict]:
    """Trains and evaluates every run of a bundle's matrix.

    Args:
        bundle: a bundle name under ``bundles/`` or a bundle folder.
        preset: a preset of the matrix (``quick``, ``cpu``, ``gpu``).
        out: the output folder.
        force: rerun runs that already have results.
        jobs: runs in parallel, each in its own process with ``cpu_count // jobs`` threads
            (small networks use two CPU cores better as two runs than as one).
        evaluate_only: evaluate the trained runs again (e.g. after a change of the
            evaluation) without training; every run must have its weights.
        matrix_name: the matrix, ``configs/<matrix_name>.yaml`` (default ``reproduce``).
        variants: run and report only these variants (default: all).
        resume: continue the runs without results from their stage checkpoints (``resume: true``)
            instead of training them from the start.

    Returns:
        The result rows.

    Raises:
        ValueError: an unknown bundle, preset or variant, (``evaluate_only``) a run without weights, or a
            reused stage without its checkpoint.
    """
    bundle = Path(bundle) if Path(bundle).is_dir() else BUNDLES / str(bundle)
    if not (bundle / "configs").is_dir():
        raise ValueError(f"No bundle at {bundle} (expected a folder with configs/).")
    matrix = load_matrix(bundle, matrix_name)
    if preset not in matrix["presets"]:
        raise ValueError(
            f"Unknown preset {preset!r} for {bundle.name}; expected one of {', '.join(matrix['presets'])}."
        )
    if variants is not None:
        unknown = [v for v in variants if v not in matrix["variants"]]
        if unknown or not variants:
            raise ValueError(
                f"Unknown variant(s) {', '.join(map(repr, unknown)) or '(none given)'} for {bundle.name}; "
                f"expected some of {', '.join(matrix['variants'])}."
            )
        matrix["variants"] = {v: o for v, o in matrix["variants"].items() if v in variants}
        matrix["reuse"] = {v: spec for v, spec in matrix["reuse"].items() if v in variants}
    overlays = ["configs/train.yaml", *matrix["presets"][preset]]
    names, values = list(matrix["settings"]), list(matrix["settings"].values())
    runs = [
        (variant, dict(zip(names, combo, strict=True)))
        for combo in itertools.product(*values)
        for variant in matrix["variants"]
    ]
    out = Path(out)
    started = time.perf_counter()
    todo = []
    for variant, settings in runs:
        folder = out / "runs" / _run_name(variant, settings)
        overrides = {
            **matrix["overrides"],
            **matrix["variants"][variant],
            **settings,
            "ckpt_dir": str(folder / "models"),
            "output_dir": str(folder / "eval"),
        }
        if evaluate_only:
            if not (folder / "models" / "model.pt").is_file():
                raise ValueError(
                    f"{folder} has no models/model.pt to evaluate; run the matrix without --evaluate-only."
                )
            todo.append(
                {"folder": folder, "args": (str(bundle), overlays, matrix["evaluate"], overrides, str(folder), False)}
            )
        elif force or not (folder / "eval" / "metrics.json").is_file():
            if resume:
                overrides["resume"] = True
            job = {
                "folder": folder,
                "args": (str(bundle), overlays, matrix["evaluate"], overrides, str(folder), True, resume),
            }
            if variant in matrix["reuse"]:
                spec = matrix["reuse"][variant]
                job["reuse"] = (out / "runs" / _run_name(spec["from"], settings), spec["stages"])
                overrides["resume"] = True
            todo.append(job)
        else:
            logger.info("%s has results; skipped (--force reruns it)", folder.name)
    logger.info("%d of %d runs to do with %d job(s)", len(todo), len(runs), jobs)
    for job in todo:  # generate every run's data (e.g. a multi-phase variant's) before parallel runs race to write it
        _parse(bundle, overlays, job["args"][3]).get_parsed_content("datalist")
    _execute(todo, jobs, started)
    rows, baseline, resumed = [], matrix["baseline"], []
    for variant, settings in runs:
        folder = out / "runs" / _run_name(variant, settings)
        mean = _means(folder / "eval")
        timing = folder / "seconds.json"
        if timing.is_file() and json.loads(timing.read_text()).get("resumed"):
            resumed.append(folder.name)
        rows.append(
            {
                "variant": variant,
                **settings,
                **{m: mean.get(m, math.nan) for m in matrix["metrics"]},  # NaN: not measured (e.g. v1 data)
                **{f"{baseline}_{m}": mean[f"{baseline}_{m}"] for m in matrix["metrics"] if f"{baseline}_{m}" in mean},
                "training_seconds": json.loads(timing.read_text())["training_seconds"] if timing.is_file() else None,
            }
        )
    write_results(
        rows,
        matrix,
        out,
        {
            "bundle": bundle.name,
            "matrix": matrix_name,
            "variants": variants,
            "preset": preset,
            "overlays": overlays,
            "jobs": jobs,
            "seconds": time.perf_counter() - started,
            "evaluate_only": evaluate_only,
            "resumed": resumed,
        },
    )
    return rows


def _copy_stages(job: dict) -> None:
    """Before a reusing run starts: its ``models`` folder from scratch, with copies of the other
    run's finished stage checkpoints."""
    source, stages = job["reuse"]
    models = job["folder"] / "models"
    shutil.rmtree(models, ignore_errors=True)
    for stage in stages:
        found = find_resume(source / "models" / stage)
        if found is None:
            raise ValueError(
                f"{job['folder'].name} reuses stage {stage!r} of {source.name}, but "
                f"{source / 'models' / stage / 'resume.pt'} does not exist (rerun {source.name} with --force)."
            )
        (models / stage).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(found[0], models / stage / ".resume.pt.copy.tmp")
        os.replace(models / stage / ".resume.pt.copy.tmp", models / stage / "resume.pt")
    logger.info("Run %s reuses %s of %s", job["folder"].name, ", ".join(stages), source.name)


def _execute(todo: list[dict], jobs: int, started: float) -> None:
    """Runs the jobs, ``jobs`` at a time; a reusing run starts once the run it reuses has finished."""
    waiting = {job["folder"] for job in todo}
    pending, finished = list(todo), 0

    def ready() -> list[dict]:
        jobs_now = [j for j in pending if "reuse" not in j or j["reuse"][0] not in waiting]
        for job in jobs_now:
            pending.remove(job)
            if "reuse" in job:
                _copy_stages(job)
        return jobs_now

    def done(job: dict) -> None:
        nonlocal finished
        waiting.discard(job["folder"])
        finished += 1
        logger.info("Done %d/%d after %.0f s", finished, len(todo), time.perf_counter() - started)

    if jobs == 1:
        while pending:  # a reused run is never itself reusing: one always becomes ready
            for job in ready():
                _train_and_evaluate(*job["args"])
                done(job)
        return
    threads = max(1, (os.cpu_count() or 1) // jobs)
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(jobs, mp_context=context, initializer=_worker, initargs=(threads,)) as pool:
        futures = {pool.submit(_train_and_evaluate, *job["args"]): job for job in ready()}
        while futures:
            complete, _ = wait(futures, return_when=FIRST_COMPLETED)
            for future in complete:
                future.result()
                done(futures.pop(future))
            futures.update({pool.submit(_train_and_evaluate, *job["args"]): job for job in ready()})


def _means(folder: Path) -> dict:
    """The ``mean`` metrics of an evaluation folder's ``metrics.json`` and of its sub-evaluations
    (``*/metrics.json``, e.g. MI2GAN's ``content/``); the top level wins on a shared key, and a
    sub-evaluation's metrics are also available as ``<folder>/<key>`` (e.g. DADR's ``source/dice``)."""
    means: dict = {}
    for path in [*sorted(folder.glob("*/metrics.json"), reverse=True), folder / "metrics.json"]:
        if path.is_file():
            values = json.loads(path.read_text())["mean"]
            means.update(values)
            if path.parent != folder:
                means.update({f"{path.parent.name}/{k}": v for k, v in values.items()})
    return means


def _baseline_label(matrix: dict) -> str:
    return "identity (untranslated input)" if matrix["baseline"] == "identity" else matrix["baseline"].replace("_", " ")


def write_results(rows: list[dict], matrix: dict, out: str | Path, info: dict) -> None:
    """Writes ``results.json``, ``results.csv``, ``results.md``, ``metrics.png`` and, when the
    runs' evaluations saved example arrays (``eval/examples.npz``), ``examples.png``: the first
    test example translated by every run (variants by setting), with its input and reference.

    Args:
        rows: the result rows.
        matrix: the bundle's matrix.
        out: the output folder.
        info: what the run was (bundle, preset, overlays, jobs, seconds), for the Markdown header.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json_text(rows))
    with open(out / "results.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    measured = [m for m in matrix["metrics"] if any(not _missing(r.get(m)) for r in rows)]
    if measured != matrix["metrics"]:  # e.g. the cardiac classes' Dice in the abdomen table
        logger.info(
            "Not measured by these runs, left out of results.md/metrics.png: %s",
            sorted(set(matrix["metrics"]) - set(measured)),
        )
        matrix = {**matrix, "metrics": measured or matrix["metrics"]}
    (out / "results.md").write_text(_markdown(rows, matrix, info))
    _figure(rows, matrix, out / "metrics.png", info)
    written = [out / "results.json", out / "results.csv", out / "results.md", out / "metrics.png"]
    if _examples(rows, matrix, out, out / "examples.png"):
        written.append(out / "examples.png")
    logger.info("Wrote %s", ", ".join(str(p) for p in written))


def _missing(value: object) -> bool:
    """Whether a result cell holds no measurement (None or NaN)."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def _markdown(rows: list[dict], matrix: dict, info: dict) -> str:
    device = (
        torch.cuda.get_device_name(0)
        if torch.cuda.is_available()
        else (f"CPU ({platform.machine()}, {torch.get_num_threads()} threads)")
    )
    trained = [r["training_seconds"] for r in rows if r.get("training_seconds") is not None]
    which = "" if info.get("matrix", "reproduce") == "reproduce" else f" --matrix {info['matrix']}"
    which += f" --variants {' '.join(info['variants'])}" if info.get("variants") else ""
    lines = [
        f"Generated by `python -m common.reproduce {info['bundle']}{which} --preset {info['preset']}` "
        f"(configs: {', '.join(info['overlays'])}) on {device}. Training time of the {len(trained)} runs, "
        f"summed: {sum(trained) / 60:.1f} min; "
        + (
            f"this invocation re-evaluated the trained runs (`--evaluate-only`, {info['seconds'] / 60:.1f} min)."
            if info.get("evaluate_only")
            else f"this invocation: {info['seconds'] / 60:.1f} min wall clock with {info.get('jobs', 1)} job(s) "
            "in parallel (runs already done are skipped)."
        ),
        "",
    ]
    if info.get("resumed"):
        lines += [
            f"Continued after an interruption (`--resume`; the training time counts only the continued part): "
            f"{', '.join(info['resumed'])}.",
            "",
        ]
    if matrix.get("overrides"):
        common = ", ".join(f"`{k}: {v}`" for k, v in matrix["overrides"].items())
        lines += [f"Every run sets {common}.", ""]
    for variant, spec in matrix.get("reuse", {}).items():
        lines += [
            f"`{variant}` reuses the finished {', '.join(spec['stages'])} stage(s) of `{spec['from']}` "
            "(its training time leaves them out).",
            "",
        ]
    setting = next(iter(matrix["settings"]), None)
    for metric in matrix["metrics"]:
        better = "lower is better" if metric in matrix["lower_is_better"] else "higher is better"
        lines += [f"**{metric.upper()}** ({better})", ""]
        key = f"{matrix['baseline']}_{metric}"
        identity = [r[key] for r in rows if r.get(key) is not None]
        if setting is None:
            lines += ["| variant | value |", "| --- | --- |"]
            lines += [f"| {r['variant']} | {r[metric]:.4f} |" for r in rows]
            if identity:
                lines.append(f"| {_baseline_label(matrix)} | {np.mean(identity):.4f} |")
        else:
            columns = sorted({r[setting] for r in rows})
            repeats = setting == "seed"  # seeds are repeats: their mean is the result
            lines += [
                f"| variant \\ {setting} | "
                + " | ".join(str(c) for c in columns)
                + (" | mean" if repeats else "")
                + " |",
                "| --- |" + " --- |" * (len(columns) + repeats),
            ]
            for variant in matrix["variants"]:
                cells = {r[setting]: r[metric] for r in rows if r["variant"] == variant}
                mean = f" | **{np.mean(list(cells.values())):.4f}**" if repeats else ""
                lines.append(
                    f"| {variant} | "
                    + " | ".join(f"{cells[c]:.4f}" if c in cells else "" for c in columns)
                    + mean
                    + " |"
                )
            if identity and repeats:  # the baseline (e.g. the segmenter) is trained per seed too
                per_seed = {
                    c: np.mean([r[key] for r in rows if r[setting] == c and r.get(key) is not None]) for c in columns
                }
                lines.append(
                    f"| {_baseline_label(matrix)} | "
                    + " | ".join(f"{per_seed[c]:.4f}" for c in columns)
                    + f" | **{np.mean(list(per_seed.values())):.4f}** |"
                )
            elif identity:
                lines.append(
                    f"| {_baseline_label(matrix)} | {np.mean(identity):.4f} (every {setting}) |"
                    + " |" * (len(columns) - 1)
                )
        lines.append("")
    return "\n".join(lines)


def _figure(rows: list[dict], matrix: dict, path: Path, info: dict) -> None:
    metrics = matrix["metrics"]
    setting = next(iter(matrix["settings"]), None)
    fig = Figure(figsize=(4.2 * len(metrics), 3.6), dpi=100)
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    for ax, metric in zip(axes, metrics, strict=True):
        for variant in matrix["variants"]:
            mine = [r for r in rows if r["variant"] == variant]
            if setting is None:
                ax.bar(variant, mine[0][metric])
            else:
                mine.sort(key=lambda r: r[setting])
                ax.plot([r[setting] for r in mine], [r[metric] for r in mine], marker="o", label=variant)
        key = f"{matrix['baseline']}_{metric}"
        identity = [r[key] for r in rows if r.get(key) is not None]
        if identity:
            ax.axhline(float(np.mean(identity)), color="grey", linestyle=":", label=matrix["baseline"])
        ax.set_title(f"{metric.upper()} ({'lower' if metric in matrix['lower_is_better'] else 'higher'} is better)")
        if setting is not None:
            ax.set_xlabel(setting)
        ax.grid(alpha=0.3)
    if axes[0].get_legend_handles_labels()[0]:  # bars without a baseline need no legend
        axes[0].legend(fontsize=8)
    which = "" if info.get("matrix", "reproduce") == "reproduce" else f", matrix {info['matrix']}"
    fig.suptitle(f"{info['bundle']}{which}, preset {info['preset']}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)


def _examples(rows: list[dict], matrix: dict, out: Path, path: Path) -> bool:
    arrays = {}
    for row in rows:
        settings = {k: row[k] for k in matrix["settings"]}
        folder = out / "runs" / _run_name(row["variant"], settings) / "eval"
        file = next((f for f in [folder / "examples.npz", *sorted(folder.glob("*/examples.npz"))] if f.is_file()), None)
        if file is None:
            return False
        with np.load(file) as data:
            arrays[(row["variant"], tuple(settings.values()))] = {k: data[k] for k in data.files}
    columns = sorted({key[1] for key in arrays})
    variants = list(matrix["variants"])
    first = next(iter(arrays.values()))
    fig = Figure(figsize=(max(1.9 * (len(columns) + 1), 6.0), 1.9 * len(variants) + 2.2), dpi=100)
    axes = fig.subplots(len(variants) + 1, len(columns) + 1, squeeze=False)

    for ax in axes.flat:
        ax.axis("off")
    show_image(axes[0, 0], first["source_0"], f"input {first['names'][0]}", fontsize=8)
    show_image(axes[0, 1], first["reference_0"], "reference", fontsize=8)
    setting = ", ".join(matrix["settings"]) or "run"
    for r, variant in enumerate(variants, 1):
        axes[r, 0].text(0.5, 0.5, variant, ha="center", va="center", fontsize=10, transform=axes[r, 0].transAxes)
        for c, column in enumerate(columns, 1):
            if (variant, column) in arrays:
                data = arrays[(variant, column)]
                error = float(np.abs(data["translation_0"] - data["reference_0"]).mean() / 2)
                where = f"{setting} {', '.join(map(str, column))}: " if column else ""
                show_image(axes[r, c], data["translation_0"], f"{where}MAE {error:.3f}", fontsize=8)
    split = (matrix.get("overrides") or {}).get("evaluate_split", "test")
    fig.suptitle(
        f"The first {split} example translated by every run\n(MAE on [0, 1] over the whole image)", fontsize=10
    )
    fig.tight_layout()
    fig.savefig(path)
    return True


def main(argv: list[str] | None = None) -> list[dict]:
    """Command line: ``python -m common.reproduce BUNDLE [--preset P] [--matrix M] [--variants V ...] [--out DIR]
    [--force] [--jobs N] [--evaluate-only] [--resume]``.

    Args:
        argv: the arguments (default: ``sys.argv[1:]``).

    Returns:
        The result rows.
    """
    parser = argparse.ArgumentParser(prog="python -m common.reproduce", description=__doc__.splitlines()[0])
    parser.add_argument("bundle", help="a bundle name under bundles/ or a bundle folder")
    parser.add_argument("--preset", default="cpu", help="quick, cpu or gpu (default cpu)")
    parser.add_argument(
        "--matrix", default="reproduce", help="the matrix: configs/MATRIX.yaml of the bundle (default reproduce)"
    )
    parser.add_argument("--variants", nargs="+", default=None, help="run and report only these variants (default: all)")
    parser.add_argument(
        "--out", type=Path, default=None, help="output folder (default reproduce/BUNDLE_PRESET, BUNDLE_MATRIX_PRESET)"
    )
    parser.add_argument("--force", action="store_true", help="rerun runs that already have results")
    parser.add_argument("--jobs", type=int, default=1, help="runs in parallel (default 1)")
    parser.add_argument("--evaluate-only", action="store_true", help="evaluate the trained runs again, no training")
    parser.add_argument("--resume", action="store_true", help="continue interrupted runs from their stage checkpoints")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s - %(name)s - %(levelname)s - %(message)s")
    which = "" if args.matrix == "reproduce" else f"_{args.matrix}"
    out = args.out or Path("reproduce") / f"{Path(args.bundle).name}{which}_{args.preset}"
    try:
        return run_matrix(
            args.bundle,
            args.preset,
            out,
            args.force,
            args.jobs,
            args.evaluate_only,
            args.matrix,
            args.variants,
            args.resume,
        )
    except ValueError as error:
        parser.error(str(error))


if __name__ == "__main__":
    main()
