"""The README's demo trains and evaluates the RegGAN bundle, beats the untranslated input on
every metric and prints what it measured."""

from __future__ import annotations

import json

import pytest

from common.demo import NOISE_LEVEL, main


def test_demo(tmp_path, capsys):
    metrics = main(["--out", str(tmp_path)])
    printed = capsys.readouterr().out
    assert str(tmp_path / "eval" / "examples.png") in printed
    assert (tmp_path / "eval" / "examples.png").stat().st_size > 10_000
    assert (tmp_path / "models" / "model.pt").is_file()
    saved = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert {k: v for k, v in metrics.items() if k != "registration"} == saved["mean"]
    # What a newcomer should see: the translation beats the untranslated T1 on every metric ...
    assert metrics["nmae"] < 0.8 * metrics["identity_nmae"]
    assert metrics["psnr"] > metrics["identity_psnr"] + 2
    assert metrics["ssim"] > metrics["identity_ssim"]
    # ... and R removes part of the training pairs' misalignment.
    assert metrics["registration"]["residual_fraction"] < 0.9
    for number in (f"{metrics['nmae']:.4f}", f"{metrics['identity_psnr']:.2f}", f"{metrics['ssim']:.3f}"):
        assert number in printed
    assert f"level-{NOISE_LEVEL} misalignment" in printed
    assert metrics["identity_nmae"] == pytest.approx(saved["mean"]["identity_nmae"])
