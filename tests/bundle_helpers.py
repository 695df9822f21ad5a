"""Running a bundle as users do, through `python -m monai.bundle`, for the bundle tests."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import torch

from common.bundle import check_bundle, find_monai_schema, read_settings


def copy_bundle(target: Path, source: Path, keep_data: bool = False) -> Path:
    """A copy of a bundle folder without its outputs (and without its generated data unless ``keep_data``).

    Returns:
        ``target``.
    """
    ignored = ("models", "eval") if keep_data else ("models", "eval", "data")
    shutil.copytree(source, target, dirs_exist_ok=True, ignore=shutil.ignore_patterns(*ignored))
    return target


ENV = {**os.environ, "PYTHONWARNINGS": "ignore"}
# Runs a bundle on the CPU also on a CUDA host, where a test recomputes its output on the CPU and
# compares to 1e-5 (GPU convolutions may use TF32 and differ by about 1e-4).
ON_CPU = ("--device", "$torch.device('cpu')")


def bundle_command(run_id: str | None, configs: list[str], *extra: str, launcher: list[str] | None = None) -> list[str]:
    """The command line of ``python -m monai.bundle run [RUN_ID]`` with the bundle's metadata and logging.

    Returns:
        The arguments.
    """
    return [
        *(launcher or [sys.executable]),
        "-m",
        "monai.bundle",
        "run",
        *([run_id] if run_id else []),
        "--config_file",
        str(configs),
        "--meta_file",
        "configs/metadata.json",
        "--bundle_root",
        ".",
        "--logging_file",
        "configs/logging.conf",
        *extra,
    ]


def bundle_run(
    root: Path, run_id: str | None, configs: list[str], *extra: str, launcher: list[str] | None = None
) -> str:
    """Runs ``python -m monai.bundle run [RUN_ID]`` in ``root``; fails the test on a non-zero exit.

    Returns:
        The combined output.
    """
    result = subprocess.run(
        bundle_command(run_id, configs, *extra, launcher=launcher),
        cwd=root,
        capture_output=True,
        text=True,
        timeout=600,
        env=ENV,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout + result.stderr


def bundle_infer(root: Path, source: Path, output_dir: Path, *overlays: str) -> str:
    """Runs ``inference.yaml`` (with ``overlays``) on ``source`` (a datalist, a folder or a file)
    into ``output_dir``, on the CPU. No preset overlay: the trained bundle's recorded settings
    (``models/model_settings.json``) rebuild its network.

    Returns:
        The combined output.
    """
    configs = ["configs/inference.yaml", *overlays]
    return bundle_run(root, None, configs, "--input", str(source), "--output_dir", str(output_dir), *ON_CPU)


def assert_label_maps(root: Path, datalist_path: Path, output_dir: Path, network: torch.nn.Module) -> None:
    """Runs ``inference.yaml`` on a datalist's target test volumes and checks that it writes one
    label map per volume, with the volume's shape, equal to ``network`` (loaded with
    ``models/model.pt``) applied slice by slice."""
    import nibabel as nib
    import numpy as np

    from common.data.datalist import load_datalist
    from common.data.io import domain_transform
    from common.inference import translate

    bundle_infer(root, datalist_path, output_dir)
    datalist = load_datalist(datalist_path)
    inputs = [Path(e["image"]) for e in datalist["target"]["test"]]
    outputs = sorted(output_dir.glob("*_seg.nii.gz"))
    assert [o.name.replace("_seg", "") for o in outputs] == sorted(i.name for i in inputs)
    written = nib.load(outputs[0])
    assert written.shape == nib.load(inputs[0]).shape
    network.load_state_dict(torch.load(root / "models" / "model.pt", map_location="cpu", weights_only=True))
    image = domain_transform(datalist, "target", ("image",))({"image": str(inputs[0])})["image"]
    np.testing.assert_array_equal(np.asarray(written.dataobj), translate(network.eval(), image)[0].numpy())


def assert_methods_never_read_target_labels(
    root: Path, poisoned: Path, configs: list[str], methods: list[str], *extra: str
) -> None:
    """Trains each method on ``poisoned`` (a datalist whose target labels are corrupt files, from
    :func:`poison_target_labels`), which must succeed, then checks that evaluation, which reads
    them, fails on the poison (so the poison works)."""
    import pytest

    for method in methods:
        log = bundle_run(root, "training", configs, "--datalist", str(poisoned), "--method", method, *extra)
        assert "Saved the release weights" in log and not (root / "data").exists()
    with pytest.raises(AssertionError, match="corrupt"):
        bundle_run(
            root,
            "evaluating",
            [*configs, "configs/evaluate.yaml"],
            "--datalist",
            str(poisoned),
            "--method",
            methods[-1],
        )


def ddp_run(root: Path, configs: list[str], *extra: str, port: int) -> str:
    """Two-process DDP training with torchrun and the bundle's ``multi_gpu_train.yaml`` overlay
    (appended to ``configs``): one GPU per process where there are two, otherwise on CPU with gloo
    (so that the test also runs on a host with a single GPU).

    Returns:
        The combined output.
    """
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={port}"]
    on_cpu = () if torch.cuda.device_count() >= 2 else (*ON_CPU, "--backend", "gloo")
    return bundle_run(root, "training", [*configs, "configs/multi_gpu_train.yaml"], *extra, *on_cpu, launcher=torchrun)


def poison_target_labels(datalist_path: Path, corrupt_name: str) -> Path:
    """A copy of a datalist (``poisoned.json`` beside it) whose every target label (training,
    validation, test, and the oracles' ``oracle_label``) is a corrupt file named ``corrupt_name``:
    reading any of them fails the run.

    Returns:
        The poisoned datalist's path.
    """
    datalist = json.loads(datalist_path.read_text())
    corrupt = datalist_path.parent / corrupt_name
    corrupt.write_text("not an image")
    for split in ("training", "validation", "test"):
        for entry in datalist["target"][split]:
            entry["label"] = str(corrupt)
    for entry in datalist["target"]["training"]:  # the oracles' key too
        entry["oracle_label"] = str(corrupt)
    poisoned = datalist_path.parent / "poisoned.json"
    poisoned.write_text(json.dumps(datalist))
    return poisoned


def assert_check_and_export(
    root: Path, source: Path, network: torch.nn.Module, size: int = 32, in_channels: int | None = None
) -> None:
    """`common.bundle check` passes on a trained bundle copy (project schema, MONAI's schema when
    ``../shared/monai`` is beside ``source``'s repository) and its TorchScript export computes
    what ``network`` loaded with ``models/model.pt`` computes; without the preset's overlay (the
    bundle was trained with ``quick.yaml``, which its recorded settings say)."""
    assert read_settings(root / "models")["preset"] == "quick"
    monai_schema = find_monai_schema(source)
    passed = check_bundle(root, monai_schema=monai_schema)
    assert any("exports to models/model.ts" in line for line in passed)
    assert any("project schema" in line for line in passed)
    if monai_schema is not None:
        assert any("MONAI schema (meta_schema_" in line for line in passed)
    scripted = torch.jit.load(str(root / "models" / "model.ts"))
    network.load_state_dict(torch.load(root / "models" / "model.pt", map_location="cpu", weights_only=True))
    if hasattr(network, "return_logits"):
        network.return_logits = True  # a segmentation network_def returns class logits; postprocessing takes the argmax
    x = torch.rand(1, in_channels or network.model[0].in_channels, size, size) * 2 - 1
    torch.testing.assert_close(scripted(x), network.eval()(x))


def kill_during_checkpoint_write(root: Path, configs: list[str], stage: str, n: int, *extra: str) -> str:
    """Trains the bundle in ``root`` and kills the process (SIGKILL) halfway through writing
    ``stage``'s ``n``-th resume checkpoint (``tests/kill_during_save.py``).

    Returns:
        The output of the killed run.
    """
    driver = Path(__file__).with_name("kill_during_save.py")
    command = bundle_command("training", configs, *extra, launcher=[sys.executable, str(driver), stage, str(n)])
    result = subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=600, env=ENV)
    assert result.returncode == -9, "the run was not killed:\n" + result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout + result.stderr


def resume_in_process(root: Path, configs: list[str], **overrides) -> dict[str, tuple[int, dict]]:
    """Runs the bundle's ``training`` with ``resume: true`` in this process (on the CPU) and
    records, for each stage that trains, its iteration and the state of every checkpoint object
    (networks, optimisers, schedules, image pools) when its first epoch starts, that is right
    after the checkpoint was loaded.

    Returns:
        ``{stage: (iteration, {object name: state_dict})}``.
    """
    import copy

    from ignite.engine import Events
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_meta(root / "configs" / "metadata.json")
    parser.read_config([str(root / c) for c in configs])
    parser.update({"bundle_root": str(root), "resume": True, "device": "$torch.device('cpu')", **overrides})
    seen: dict[str, tuple[int, dict]] = {}

    def record(engine, stage) -> None:
        if stage.name not in seen:
            objects = {k: copy.deepcopy(v.state_dict()) for k, v in stage.objects().items() if k != "trainer"}
            seen[stage.name] = (engine.state.iteration, objects)

    for stage in parser.get_parsed_content("stages"):
        if stage.trainer is not None:
            stage.trainer.add_event_handler(Events.EPOCH_STARTED, record, stage)
    parser.get_parsed_content("training")
    return seen


def assert_same_state(actual, expected, where: str = "") -> None:
    """Nested states (dicts, lists, tensors, numbers) equal, tensors bit for bit."""
    if isinstance(expected, torch.Tensor):
        assert isinstance(actual, torch.Tensor) and torch.equal(actual.cpu(), expected.cpu()), where
    elif isinstance(expected, dict):
        assert set(actual) == set(expected), f"{where}: {sorted(map(str, actual))} != {sorted(map(str, expected))}"
        for key in expected:
            assert_same_state(actual[key], expected[key], f"{where}.{key}")
    elif isinstance(expected, (list, tuple)):
        assert len(actual) == len(expected), where
        for index, (a, e) in enumerate(zip(actual, expected, strict=True)):
            assert_same_state(a, e, f"{where}[{index}]")
    else:
        assert actual == expected, f"{where}: {actual!r} != {expected!r}"
