"""`common.bundle.settings`: the settings a trained bundle records for its inference and the
strict loading of its release weights."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from common.bundle import SETTINGS_FILENAME, bundle_relative, load_release, read_settings, record_settings, trained
from common.engines import Stage, run_stages


def test_recorded_settings_are_plain_json_and_read_back(tmp_path):
    path = record_settings(
        tmp_path,
        {"layers": (3, 4), "rate": np.float32(0.5), "classes": torch.tensor(5), "intensity": {"range": (-1, 2)}},
        "cpu",
    )
    assert path == tmp_path / SETTINGS_FILENAME
    assert json.loads(path.read_text()) == {
        "preset": "cpu",
        "settings": {"layers": [3, 4], "rate": 0.5, "classes": 5, "intensity": {"range": [-1, 2]}},
    }
    assert not list(tmp_path.glob(".*.tmp"))  # written through a temporary file, renamed
    assert path.read_text().startswith('{\n    "preset": "cpu",\n')  # the model zoo's JSON layout
    assert trained(tmp_path, "layers", [9]) == [3, 4]
    assert trained(tmp_path, "absent", "default") == "default"
    assert trained(tmp_path / "untrained", "layers", [9]) == [9] and read_settings(tmp_path / "untrained") is None
    with pytest.raises(ValueError, match=r"Setting 'settings.network' of the release network is a Linear"):
        record_settings(tmp_path, {"network": nn.Linear(1, 1)}, "cpu")


def test_a_damaged_record_is_named(tmp_path):
    (tmp_path / SETTINGS_FILENAME).write_text("{not json")
    with pytest.raises(ValueError, match=rf"{SETTINGS_FILENAME} is not readable JSON"):
        trained(tmp_path, "ngf", 64)
    (tmp_path / SETTINGS_FILENAME).write_text('{"preset": "quick"}')
    with pytest.raises(ValueError, match=rf"{SETTINGS_FILENAME} has no 'settings' object"):
        read_settings(tmp_path)


def test_release_weights_load_strictly_with_a_one_line_error(tmp_path):
    models = tmp_path / "my_bundle" / "models"
    with pytest.raises(ValueError, match=r"model.pt not found: train the bundle 'my_bundle' first"):
        load_release(nn.Linear(2, 3), models)
    source = nn.Sequential(nn.Linear(2, 3), nn.Linear(3, 1))
    models.mkdir(parents=True)
    torch.save(source.state_dict(), models / "model.pt")
    target = nn.Sequential(nn.Linear(2, 3), nn.Linear(3, 1))
    assert load_release(target, models) is target
    for key, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[key], value)
    record_settings(models, {"width": 3}, "quick")
    with pytest.raises(ValueError) as error:
        load_release(nn.Sequential(nn.Linear(2, 4), nn.Linear(4, 1), nn.Linear(1, 1)), models)
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith(f"{models / 'model.pt'} (trained with the preset 'quick') does not fit network_def")
    assert "of the bundle 'my_bundle': missing: 2.weight, 2.bias; size mismatch: 0.weight (3, 2) vs (4, 2)" in message
    (models / SETTINGS_FILENAME).unlink()
    with pytest.raises(ValueError, match=r"\(no model_settings.json\) .*'named': unexpected: 1.weight, 1.bias"):
        load_release(nn.Sequential(nn.Linear(2, 3)), models, bundle="named")


class _Counter(nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))


def test_run_stages_writes_the_settings_beside_the_release_weights(tmp_path):
    network = _Counter()
    run_stages([Stage(name="nothing", trainer=None)], tmp_path, release=network, settings={"size": (1,)}, preset="cpu")
    assert torch.load(tmp_path / "model.pt", weights_only=True).keys() == {"weight"}
    assert read_settings(tmp_path) == {"preset": "cpu", "settings": {"size": [1]}}
    run_stages([Stage(name="nothing", trainer=None)], tmp_path / "plain", release=network)
    assert read_settings(tmp_path / "plain") is None  # no settings given, none written


def test_paths_inside_the_bundle_are_recorded_relative_to_it(tmp_path):
    bundle = tmp_path / "bundle"
    assert bundle_relative(bundle / "data" / "task" / "datalist.json", bundle) == "data/task/datalist.json"
    assert bundle_relative("data/x.json", ".") == "data/x.json"
    assert bundle_relative(tmp_path / "elsewhere.json", bundle) == str(tmp_path / "elsewhere.json")
