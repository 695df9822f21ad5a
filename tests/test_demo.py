"""The README's demo computes what it claims and writes its results and figure."""

from __future__ import annotations

import json

import matplotlib.image
import pytest

from common.demo import main


def test_demo(tmp_path):
    results = main(["--out", str(tmp_path), "--steps", "1000"])
    surface, mi = results["surface_metrics"], results["mutual_information"]
    assert surface["assd_mm"] == pytest.approx(surface["assd_continuum_mm"], rel=0.07)
    assert surface["hd95_mm"] == pytest.approx(surface["hd95_continuum_mm"], rel=0.07)
    assert mi["estimate_nats"] == pytest.approx(mi["true_nats"], rel=0.10)
    assert json.loads((tmp_path / "results.json").read_text()) == results
    image = matplotlib.image.imread(tmp_path / "mutual_information.png")
    assert image.shape[0] > 200 and image.shape[1] > 400 and image.std() > 0.05  # a drawn figure, not a blank
