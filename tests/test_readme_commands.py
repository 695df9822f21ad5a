"""Docs that work when copied: the first command block of each bundle README's "Commands"
section runs as written, every command in order, in a fresh copy of the bundle (the quick
training first, then resuming, evaluation, inference, check and export with no other argument),
and writes what its comments say. The longer runs below it (the cpu and paper presets, the
experiment matrices, several GPUs) are not run here."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from bundle_helpers import ENV, copy_bundle

from common.bundle import read_settings
from common.data.io import image_stem, is_plain_image
from common.inference import input_files

BUNDLES = Path(__file__).resolve().parents[1] / "bundles"
NAMES = sorted(p.name for p in BUNDLES.iterdir() if (p / "docs" / "README.md").is_file())
TRANSLATION = {"cyclegan", "reggan"}  # the others segment target images


def readme_commands(readme: Path) -> list[str]:
    """The commands of the first ```bash block after "## Commands" (continuation lines joined,
    comments and blank lines left out)."""
    text = readme.read_text()
    section = text[text.index("## Commands") :]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
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
