"""The README's demo trains and evaluates the CycleGAN bundle and writes what it prints."""

from __future__ import annotations

import json

import pytest

from common.demo import main


def test_demo(tmp_path, capsys):
    metrics = main(["--out", str(tmp_path)])
    printed = capsys.readouterr().out
    assert str(tmp_path / "eval" / "examples.png") in printed
    assert (tmp_path / "eval" / "examples.png").stat().st_size > 10_000
    assert (tmp_path / "models" / "model.pt").is_file()
    saved = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert saved["mean"] == metrics
    assert 0 < metrics["nmae"] < 1 and metrics["identity_nmae"] == pytest.approx(saved["mean"]["identity_nmae"])
    assert f"{metrics['nmae']:.4f}" in printed
