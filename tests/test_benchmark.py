"""The train-step benchmark measures the bundle's own trainer and reports JSON."""

from __future__ import annotations

import json
from pathlib import Path

from common.benchmark import main, train_step


def test_train_step_reports_the_configured_run(tmp_path):
    result = train_step("cyclegan", size=32, iterations=3, warmup=1, overrides={"ngf": 4, "n_blocks": 1, "ndf": 4})
    assert result["iterations_timed"] == 3 and result["image_size"] == [32, 32]
    assert result["device"] == "cpu" and result["amp_bf16"] is False and result["channels_last"] is False  # GPU only
    assert abs(result["iterations_per_second"] * result["seconds_per_iteration"] - 1) < 1e-9
    assert result["peak_memory_mb"] > 0 and result["overrides"] == {"ngf": 4, "n_blocks": 1, "ndf": 4}


def test_a_segmenting_trainer_gets_source_labels_of_the_given_classes():
    overrides = {"fb": 2, "ngf": 4, "n_blocks": 1, "ndf": 4, "n_layers_d": 2, "inspector_channels": 4}
    result = train_step("synthmix", size=32, batch_size=2, iterations=1, warmup=1, overrides=overrides, classes=3)
    assert result["iterations_timed"] == 1 and set(result["parameters"]) >= {"E_B", "S", "I"}
    assert result["parameters"]["S"] == 64 * 3  # a 1x1 convolution (no bias) from 64 features to the 3 classes
    assert not (Path(__file__).resolve().parents[1] / "bundles" / "synthmix" / "data").exists()  # no datalist read


def test_command_line_writes_json(tmp_path, monkeypatch):
    calls = {}

    def fake(bundle, size, batch_size, iterations, warmup, overrides, channels, classes):
        calls.update(
            bundle=bundle,
            size=size,
            batch_size=batch_size,
            iterations=iterations,
            warmup=warmup,
            overrides=overrides,
            channels=channels,
            classes=classes,
        )
        return {"benchmark": "train-step", "iterations_per_second": 1.5}

    monkeypatch.setattr("common.benchmark.train_step", fake)
    main(
        [
            "train-step",
            "--bundle",
            "reggan",
            "--size",
            "128",
            "--out",
            str(tmp_path / "b.json"),
            "--set",
            "mode=pix2pix",
            "--set",
            "ngf=32",
            "--set",
            "betas=[0.9, 0.99]",
        ]
    )
    assert calls == {
        "bundle": "reggan",
        "size": 128,
        "batch_size": 1,
        "iterations": 20,
        "warmup": 3,
        "overrides": {"mode": "pix2pix", "ngf": 32, "betas": [0.9, 0.99]},
        "channels": 1,
        "classes": 5,
    }  # YAML values
    assert json.loads((tmp_path / "b.json").read_text())["iterations_per_second"] == 1.5


def test_paired_bundle_modes(tmp_path):
    """The paired RegGAN bundle is benchmarked in the mode asked for, with its own networks."""
    small = {"ngf": 4, "n_blocks": 1, "ndf": 4, "reg_channels": 4}
    reggan = train_step("reggan", size=32, iterations=2, warmup=1, overrides={"mode": "reggan", **small})
    pix2pix = train_step("reggan", size=32, iterations=2, warmup=1, overrides={"mode": "pix2pix", **small})
    assert set(reggan["parameters"]) == {"G_AB", "R", "D_B"} and set(pix2pix["parameters"]) == {"G_AB", "D_B"}
    assert reggan["parameters"]["G_AB"] == pix2pix["parameters"]["G_AB"]  # the same generator in both modes
    # pix2pix's conditional discriminator reads T1 and T2: one more input channel in its first convolution.
    first_layer = 4 * 4 * 4  # 4 filters of 4x4 per input channel
    assert pix2pix["parameters"]["D_B"] - reggan["parameters"]["D_B"] == first_layer


def test_set_needs_an_id_and_a_value(capsys):
    import pytest

    with pytest.raises(SystemExit):
        main(["train-step", "--bundle", "reggan", "--set", "mode"])
    assert "--set expects ID=VALUE" in capsys.readouterr().err


def test_mi2gan_methods_on_rgb_images():
    """MI2GAN's trainer with RGB inputs: the method decides which networks are built and timed."""
    small = {"ngf": 4, "n_blocks": 1, "ndf": 4, "ae_channels": 2, "mi_ndf": 4, "mi_layers": 1}
    full = train_step("mi2gan", size=32, iterations=2, warmup=1, overrides=small, channels=3)
    cycle = train_step("mi2gan", size=32, iterations=2, warmup=1, overrides={**small, "method": "cyclegan"}, channels=3)
    assert set(full["parameters"]) == {"G_AB", "G_BA", "D_A", "D_B", "Enc_A", "Dec_A", "Enc_B", "Dec_B", "D_MI"}
    assert set(cycle["parameters"]) == {"G_AB", "G_BA", "D_A", "D_B"} and full["channels"] == 3
    # D_MI reads two content features of 4 * ae_channels = 8 channels each: 16 input channels of 4x4 filters.
    assert full["parameters"]["D_MI"] > 16 * 4 * 4 * 4
    assert full["parameters"]["G_AB"] == cycle["parameters"]["G_AB"]
