"""The command line is read strictly: an override of an id that no config defines is refused
(naming the closest ids) before anything is written, and the cause of an error is the last line
a user sees, not MONAI's ``Failed to evaluate ConfigExpression``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from bundle_helpers import ENV, bundle_command, copy_bundle

from common.config import check_command_line, command_line_overrides

BUNDLES = Path(__file__).resolve().parents[1] / "bundles"
BUNDLE_MAIN = str(Path("site-packages") / "monai" / "bundle" / "__main__.py")
QUICK = ["configs/train.yaml", "configs/quick.yaml"]


def test_overrides_are_read_in_both_spellings():
    arguments = ["run", "training", "--config_file", "['a.yaml']", "--epochs=3", "--resume", "--seed", "1"]
    assert command_line_overrides(arguments) == {
        "config_file": "['a.yaml']",
        "epochs": "3",
        "resume": "True",
        "seed": "1",
    }


def test_only_ids_the_configs_define_may_be_overridden(monkeypatch):
    monkeypatch.chdir(BUNDLES / "cyclegan")
    command = [BUNDLE_MAIN, "run", "training", "--config_file", str(QUICK), "--meta_file", "configs/metadata.json"]
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)  # the check installs its summary hook
    check_command_line([*command, "--bundle_root", ".", "--epoch_length", "2", "--train#dataloader#batch_size", "2"])
    with pytest.raises(ValueError) as error:
        check_command_line([*command, "--num_epochs", "1"])
    assert str(error.value) == (
        "Unknown setting --num_epochs: no id of configs/train.yaml, configs/quick.yaml is called 'num_epochs'; "
        "did you mean --epochs, --constant_epochs, --decay_epochs?"
    )
    with pytest.raises(ValueError, match=r"Unknown setting --train#dataloader#batchsize: .*did you mean .*batch_size"):
        check_command_line([*command, "--train#dataloader#batchsize", "2"])
    with pytest.raises(ValueError, match=r"Unknown setting --zzzzzz: no id of .* is called 'zzzzzz'\.$"):
        check_command_line([*command, "--zzzzzz", "2"])
    check_command_line(["python", "-m", "common.reproduce", "--num_epochs", "1"])  # other programs: not checked


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("resume", "flase", r"`resume` must be true or false .*got 'flase'"),
        ("epoch_length", "ten", r"--epoch_length must be an integer \(the config has 6\), got 'ten'"),
        ("constant_epochs", "2.5", r"--constant_epochs must be an integer \(the config has 2\), got '2.5'"),
        ("learning_rate", "fast", r"--learning_rate must be a number \(the config has 0.0002\), got 'fast'"),
    ],
)
def test_boolean_and_numeric_overrides_are_read_strictly(monkeypatch, key, value, message):
    monkeypatch.chdir(BUNDLES / "cyclegan")
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)
    command = [BUNDLE_MAIN, "run", "training", "--config_file", str(QUICK)]
    for good in {"resume": ("false", "yes"), "learning_rate": ("1e-3", "1"), "epoch_length": ("3", "$2 * 3")}.get(
        key, ()
    ):
        check_command_line([*command, f"--{key}", good])
    with pytest.raises(ValueError, match=message):
        check_command_line([*command, f"--{key}", value])


def test_a_misspelt_override_stops_before_anything_is_written(tmp_path):
    root = copy_bundle(tmp_path / "bundle", BUNDLES / "cyclegan")
    before = sorted(p.relative_to(root) for p in root.rglob("*"))
    result = subprocess.run(
        bundle_command("training", QUICK, "--num_epochs", "1"), cwd=root, capture_output=True, text=True, env=ENV
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "ValueError: Unknown setting --num_epochs: no id of configs/train.yaml, configs/quick.yaml is called "
        "'num_epochs'; did you mean --epochs, --constant_epochs, --decay_epochs?"
    )
    assert "Failed to evaluate ConfigExpression" in result.stderr  # MONAI's wrapper is still there, above it
    assert sorted(p.relative_to(root) for p in root.rglob("*")) == before  # no data, no models, no eval


def test_the_cause_of_an_error_in_a_config_expression_is_the_last_line(tmp_path):
    root = copy_bundle(tmp_path / "bundle", BUNDLES / "cyclegan")
    result = subprocess.run(
        bundle_command("training", QUICK, "--datalist", "missing.json"),
        cwd=root,
        capture_output=True,
        text=True,
        env=ENV,
    )
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("DatalistError: ") and "missing.json" in last, result.stderr[-2000:]
    assert not (root / "models").exists()
