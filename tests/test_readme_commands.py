"""Docs that work when copied: the first command block of each bundle README's "Commands"
section runs as written, every command in order, in a fresh copy of the bundle (the quick
training first, then resuming, evaluation, inference, check and export with no other argument),
and writes what its comments say. The longer runs below it (the cpu and paper presets, the
experiment matrices, several GPUs) take minutes to hours: a slow test starts each as written and
stops it once it trains."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from bundle_helpers import ENV, copy_bundle

from common.bundle import read_settings
from common.data.io import image_stem, is_plain_image
from common.inference import input_files

BUNDLES = Path(__file__).resolve().parents[1] / "bundles"
NAMES = sorted(p.name for p in BUNDLES.iterdir() if (p / "docs" / "README.md").is_file())
TRANSLATION = {"cyclegan", "reggan"}  # the others segment target images


def readme_commands(readme: Path, block: int = 0) -> list[str]:
    """The commands of the ``block``-th ```bash block after "## Commands" (0: the quick sequence,
    1: the longer runs; continuation lines joined, comments and blank lines left out)."""
    text = readme.read_text()
    section = text[text.index("## Commands") :]
    block = re.findall(r"```bash\n(.*?)```", section, re.S)[block]
    return [
        line for line in block.replace("\\\n", " ").splitlines() if line.strip() and not line.lstrip().startswith("#")
    ]


def test_readme_commands_are_found():
    commands = readme_commands(BUNDLES / "mi2gan" / "docs" / "README.md")
    assert commands[0].startswith("python -m monai.bundle run training") and len(commands) == 6
    assert not [c for c in commands if "/path/to" in c or "torchrun" in c or "--preset cpu" in c]


@pytest.mark.parametrize("name", NAMES)
def test_the_readme_commands_run_as_written(name, tmp_path):
    root = copy_bundle(tmp_path / name, BUNDLES / name)
    commands = readme_commands(BUNDLES / name / "docs" / "README.md")
    assert "'configs/quick.yaml'" in commands[0] and commands[0].startswith("python -m monai.bundle run training")
    env = {**ENV, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{ENV.get('PATH', '')}"}  # `python` is this one
    for command in commands:
        result = subprocess.run(["bash", "-c", command], cwd=root, env=env, capture_output=True, text=True, timeout=900)
        assert result.returncode == 0, f"{name}: {command}\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    # What the comments say the commands write.
    assert read_settings(root / "models")["preset"] == "quick"
    assert json.loads((root / "eval" / "metrics.json").read_text())
    datalist = root / read_settings(root / "models")["settings"]["datalist"]
    inputs = input_files(datalist, domain="source" if name in TRANSLATION else "target")
    suffix = "_trans" if name in TRANSLATION else "_seg"
    expected = sorted(image_stem(p) + suffix + (".png" if is_plain_image(p) else ".nii.gz") for p in inputs)
    assert sorted(p.name for p in (root / "eval" / "inference").iterdir()) == expected
    version = json.loads((root / "configs" / "metadata.json").read_text())["version"]
    assert [p.name for p in (root / "dist").iterdir()] == [f"{name}_v{version}.zip"]
    if name == "mi2gan":  # translate only
        assert sorted(p.name for p in (root / "eval" / "translations").iterdir()) == [
            e.replace("_seg", "_trans") for e in expected
        ]


# What a command prints once it trains: ignite's start of a training run (or its progress bar),
# the experiment runner's plan, the benchmark's start.
STARTED = re.compile(r"Engine run resuming from iteration 0|Epoch \[1/|runs to do with|Benchmarking \w+ on ")
# Commands that need what an earlier longer run writes (the probe reads two finished matrix runs).
NEEDS_FINISHED_RUNS = ("--inspector_from",)


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (torchrun's workers start sessions of their own, so killing the
    command's process group does not reach them)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _stop(process: subprocess.Popen) -> list[int]:
    """Kills the command and every process below it; returns those still alive after 10 s."""
    pids = [process.pid, *_descendants(process.pid)]
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    process.wait()
    deadline = time.monotonic() + 10
    while [pid for pid in pids if _alive(pid)] and time.monotonic() < deadline:
        time.sleep(0.5)
    return [pid for pid in pids if _alive(pid)]


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_the_longer_runs_start_as_written(name, tmp_path):
    """Each command of the second block, as written, in a fresh bundle copy: it starts training
    (or its matrix, or its benchmark) within 10 minutes, and is then stopped."""
    commands = readme_commands(BUNDLES / name / "docs" / "README.md", block=1)
    assert commands
    env = {**ENV, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{ENV.get('PATH', '')}"}
    for index, command in enumerate(commands):
        if any(flag in command for flag in NEEDS_FINISHED_RUNS):
            continue
        root = copy_bundle(tmp_path / f"{name}_{index}", BUNDLES / name)
        log = tmp_path / f"{name}_{index}.log"
        with log.open("w") as out:
            process = subprocess.Popen(
                ["bash", "-c", command], cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
            deadline = time.monotonic() + 600
            try:
                while process.poll() is None and not STARTED.search(log.read_text()) and time.monotonic() < deadline:
                    time.sleep(2)
            finally:
                survivors = _stop(process) if process.poll() is None else []
        assert not survivors, f"{name}: {command}: processes {survivors} survived"
        text = log.read_text()
        assert STARTED.search(text) or process.returncode == 0, f"{name}: {command}\n{text[-3000:]}"
        assert "Traceback" not in text.split("Engine run resuming")[0], f"{name}: {command}\n{text[-3000:]}"
