"""The train-step benchmark measures the bundle's own trainer and reports JSON."""

from __future__ import annotations

import json

from common.benchmark import main, train_step


def test_train_step_reports_the_configured_run(tmp_path):
    result = train_step("cyclegan", size=32, iterations=3, warmup=1, overrides={"ngf": 4, "n_blocks": 1, "ndf": 4})
    assert result["iterations_timed"] == 3 and result["image_size"] == [32, 32]
    assert result["device"] == "cpu" and result["amp_bf16"] is False and result["channels_last"] is False  # GPU only
    assert abs(result["iterations_per_second"] * result["seconds_per_iteration"] - 1) < 1e-9
    assert result["peak_memory_mb"] > 0 and result["overrides"] == {"ngf": 4, "n_blocks": 1, "ndf": 4}


def test_command_line_writes_json(tmp_path, monkeypatch):
    calls = {}

    def fake(bundle, size, batch_size, iterations, warmup):
        calls.update(bundle=bundle, size=size, batch_size=batch_size, iterations=iterations, warmup=warmup)
        return {"benchmark": "train-step", "iterations_per_second": 1.5}

    monkeypatch.setattr("common.benchmark.train_step", fake)
    main(["train-step", "--bundle", "cyclegan", "--size", "128", "--out", str(tmp_path / "b.json")])
    assert calls == {"bundle": "cyclegan", "size": 128, "batch_size": 1, "iterations": 20, "warmup": 3}
    assert json.loads((tmp_path / "b.json").read_text())["iterations_per_second"] == 1.5
