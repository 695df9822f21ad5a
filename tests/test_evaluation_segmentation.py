"""Segmentation evaluation per 3D volume and per class: slice-by-slice predictions stacked back
into the volume, scored with `evaluate_segmentation` in mm, baselines beside the model, tables
and figures."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from common.data.datalist import DatalistError, load_datalist
from common.data.io import domain_transform
from common.evaluation import evaluate_segmenter, summarise
from common.metrics import evaluate_segmentation


class Threshold(nn.Module):
    """A 2D "segmenter": class ``k`` where the image exceeds the k-th threshold."""

    def __init__(self, thresholds):
        super().__init__()
        self.thresholds = thresholds
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        assert x.ndim == 4  # slices, not volumes
        return sum((x[:, :1] > t).long() for t in self.thresholds)


def test_volumes_are_scored_whole_in_mm_per_class(synthetic, tmp_path):
    datalist = load_datalist(synthetic("abdomen", size=32, subjects=5))
    model, baseline = Threshold([-0.5, 0.0, 0.3, 0.6]), Threshold([0.9])
    result = evaluate_segmenter(model, datalist, tmp_path, baselines={"no_adaptation": baseline})
    tests = datalist["target"]["test"]
    assert len(result["per_volume"]) == len(tests) and result["distance_unit"] == "mm"
    assert result["classes"] == [v for k, v in datalist["labels"].items() if k != "0"] and len(result["classes"]) == 4
    # The first volume, recomputed directly: the prediction of the whole volume at once, its spacing from the NIfTI.
    item = domain_transform(datalist, "target", ("image", "label"))(
        {"image": tests[0]["image"], "label": tests[0]["label"]}
    )
    image, label = item["image"], np.asarray(item["label"][0]).round().astype(int)
    assert image.ndim == 4 and model.calls >= len(tests)  # volumes went through the 2D network slice by slice
    spacing = tuple(float(s) for s in item["label"].pixdim[:3])
    assert spacing[2] == pytest.approx(2 * spacing[0])  # anisotropic: slices twice as thick
    classes = {k: v for k, v in datalist["labels"].items() if k != "0"}
    row = result["per_volume"][0]
    for prefix, network in (("", model), ("no_adaptation_", baseline)):
        slices = torch.as_tensor(image).movedim(-1, 0)  # (D, C, H, W): every slice at once
        prediction = network(slices)[:, 0].movedim(0, -1).numpy()  # back to (H, W, D)
        expected = evaluate_segmentation(prediction, label, classes, spacing)
        for metric in ("dice", "assd", "hd95"):
            assert row[f"{prefix}{metric}"] == pytest.approx(expected["mean"][metric])
            for name in classes.values():
                assert row[f"{prefix}{metric}_{name}"] == pytest.approx(expected["per_class"][name][metric])
    # Means and standard deviations over volumes; inf (a missed class) stays visible in both.
    for key in ("dice", "assd_liver", "no_adaptation_hd95"):
        values = [r[key] for r in result["per_volume"]]
        if all(math.isfinite(v) for v in values):
            assert result["mean"][key] == pytest.approx(np.mean(values))
            assert result["std"][key] == pytest.approx(np.std(values))
        else:
            assert result["mean"][key] == result["std"][key] == math.inf
    assert json.loads((tmp_path / "metrics.json").read_text())["per_volume"][0]["volume"] == row["volume"]
    with open(tmp_path / "metrics.csv") as handle:
        table = list(csv.DictReader(handle))
    assert [r["volume"] for r in table] == [r["volume"] for r in result["per_volume"]] + ["mean", "std"]
    assert float(table[0]["dice_liver"]) == pytest.approx(row["dice_liver"])
    for figure in ("metrics.png", "examples.png"):
        assert Image.open(tmp_path / figure).size[0] > 300


def test_a_perfect_model_scores_one_and_zero_distance(synthetic, tmp_path):
    """A 2D dataset segmented by its own labels (read back through an index) scores Dice 1, ASSD 0."""
    datalist = load_datalist(synthetic("polyp", size=32, subjects=6))
    tests = datalist["target"]["test"]
    labels = [
        torch.as_tensor(
            np.asarray(
                domain_transform(datalist, "target", ("image", "label"))({"image": e["image"], "label": e["label"]})[
                    "label"
                ]
            )
        )
        for e in tests
    ]

    class Oracle(nn.Module):
        def __init__(self):
            super().__init__()
            self.index = 0

        def forward(self, x):
            self.index += 1
            return labels[self.index - 1][None].round().long()

    result = evaluate_segmenter(Oracle(), datalist, tmp_path)
    assert result["distance_unit"] == "pixels" and result["baselines"] == []
    assert result["mean"]["dice"] == 1.0 and result["mean"]["assd"] == 0.0 and result["mean"]["hd95"] == 0.0


def test_a_split_without_labels_is_refused(synthetic, tmp_path):
    datalist = load_datalist(synthetic("polyp", size=32, subjects=6))
    with pytest.raises(DatalistError, match=r"`target.training\[0\]` has no `label`"):
        evaluate_segmenter(Threshold([0.0]), datalist, tmp_path, split="training")


def test_a_missed_structure_keeps_mean_and_std_infinite():
    result = summarise([{"volume": "a", "assd": 2.0, "dice": 0.5}, {"volume": "b", "assd": math.inf, "dice": 0.0}])
    assert result["mean"] == {"assd": math.inf, "dice": 0.25}
    assert result["std"] == {"assd": math.inf, "dice": 0.25}


def test_a_metric_that_does_not_apply_is_left_out_of_the_mean():
    # NaN: e.g. the NMAE within a lesion on an image without a lesion.
    rows = [
        {"volume": "a", "nmae_lesion": 0.2},
        {"volume": "b", "nmae_lesion": math.nan},
        {"volume": "c", "nmae_lesion": 0.4},
    ]
    result = summarise(rows)
    assert result["mean"]["nmae_lesion"] == pytest.approx(0.3) and result["std"]["nmae_lesion"] == pytest.approx(0.1)
    assert math.isnan(summarise([{"volume": "a", "x": math.nan}])["mean"]["x"])
