"""The local-mask probe of global-local alignment: the mask scored against the prediction error
per target volume, checked with networks whose mask and errors are known; the feature-gap probe
(a fresh D1 on frozen features) with features whose domain gap is known."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from torch import nn

from common.data.datalist import DatalistError, load_datalist
from common.data.io import domain_transform
from common.evaluation import evaluate_feature_gap, evaluate_local_mask
from common.evaluation.report import as_slices
from common.networks import PixelDiscriminator


class Background(nn.Module):
    """S_P that predicts background everywhere: the errors are exactly the labelled pixels."""

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        logits = torch.zeros(features.shape[0], 5, *features.shape[2:])
        logits[:, 0] = 1.0
        return logits


class Foreground(nn.Module):
    """D1 unsure (logit 0: entropy 1) on the labelled pixels of one volume, certain elsewhere."""

    def __init__(self, label: torch.Tensor) -> None:
        super().__init__()
        self.label = label

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return torch.where(self.label > 0, 0.0, 50.0)


@pytest.fixture(scope="module")
def one_volume(synthetic):
    datalist = load_datalist(synthetic("cardiac", size=32, subjects=5))
    datalist["target"]["test"] = datalist["target"]["test"][:1]
    entry = datalist["target"]["test"][0]
    loaded = domain_transform(datalist, "target", ("image", "label"))(
        {"image": entry["image"], "label": entry["label"]}
    )
    return datalist, as_slices(loaded["label"]).round()


@pytest.mark.parametrize("mode, auc", [("entropy", 1.0), ("certainty", 0.0)])
def test_a_mask_on_exactly_the_errors_scores_auc_1(one_volume, tmp_path, mode, auc):
    datalist, label = one_volume
    result = evaluate_local_mask(nn.Identity(), Background(), Foreground(label), datalist, tmp_path, mask=mode)
    mean = result["mean"]
    assert mean["error_rate"] == pytest.approx(float((label > 0).float().mean()))
    assert mean["mask_error_auc"] == pytest.approx(auc, abs=1e-6)
    on, off = (1.0, 0.0) if mode == "entropy" else (0.0, 1.0)
    assert mean["mask_on_error"] == pytest.approx(on, abs=1e-6) and mean["mask_off_error"] == pytest.approx(
        off, abs=1e-6
    )
    # The mask falls on the structures (entropy) or on the background (certainty); D1 says "target"
    # with certainty off the structures and 0.5 on them.
    assert mean["mask_on_structures"] == pytest.approx(on, abs=1e-6)
    assert mean["mask_on_background"] == pytest.approx(off, abs=1e-6)
    assert mean["d1_target"] == pytest.approx(1 - 0.5 * float((label > 0).float().mean()), abs=1e-6)
    assert json.loads((tmp_path / "metrics.json").read_text())["per_volume"][0]["volume"].endswith(".nii.gz")
    assert (tmp_path / "mask_error.png").stat().st_size > 5_000


def test_a_constant_mask_does_not_follow_the_errors(one_volume, tmp_path):
    datalist, label = one_volume

    class Unsure(nn.Module):
        def forward(self, features):
            return torch.zeros_like(features[:, :1])

    mean = evaluate_local_mask(nn.Identity(), Background(), Unsure(), datalist, tmp_path)["mean"]
    assert mean["mask_error_auc"] == pytest.approx(0.5)
    assert mean["mask_on_error"] == mean["mask_off_error"] == pytest.approx(1.0)


def test_unlabelled_target_volumes_are_refused(one_volume, tmp_path):
    datalist = copy.deepcopy(one_volume[0])
    del datalist["target"]["test"][0]["label"]
    with pytest.raises(DatalistError, match="`target.test` entries need a `label`"):
        evaluate_local_mask(nn.Identity(), Background(), Background(), datalist, tmp_path)


class Shift(nn.Module):
    """A translator that moves the source images far from the target's intensities."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + 5.0


class Negate(nn.Module):
    """A "trained" D1 on identity features: the lower the intensity, the more target."""

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return -features


def test_a_fresh_d1_separates_features_with_a_gap_and_leaves_the_template_alone(one_volume, tmp_path):
    datalist, label = one_volume
    template = PixelDiscriminator(1, channels=8)
    before = copy.deepcopy(template.state_dict())
    result = evaluate_feature_gap(
        nn.Identity(),
        Background(),
        template,
        datalist,
        tmp_path,
        translator=Shift(),
        trained=Negate(),
        iterations=300,
        learning_rate=0.01,
        max_slices=64,
    )
    mean = result["mean"]
    # Source features in [4, 6], target in [-1, 1]: one threshold separates every location.
    assert mean["trained_domain_auc"] == pytest.approx(1.0)
    assert mean["fresh_domain_auc"] > 0.99 and mean["fresh_d1_target"] > 0.9
    assert 0 <= mean["fresh_mask_on_structures"] <= 1 and 0 <= mean["fresh_mask_error_auc"] <= 1
    assert all(torch.equal(before[k], v) for k, v in template.state_dict().items())
    assert (tmp_path / "mask_error.png").stat().st_size > 5_000


def test_identical_features_leave_the_fresh_d1_at_chance_and_its_mask_at_1(one_volume, tmp_path):
    datalist, _ = one_volume

    class Constant(nn.Module):
        def forward(self, x):
            return torch.zeros_like(x)

    mean = evaluate_feature_gap(
        Constant(),
        Background(),
        PixelDiscriminator(1, channels=8),
        datalist,
        tmp_path,
        iterations=300,
        learning_rate=0.01,
        max_slices=64,
    )["mean"]
    assert mean["fresh_domain_auc"] == pytest.approx(0.5)
    assert mean["fresh_d1_target"] == pytest.approx(0.5, abs=0.02)
    assert mean["fresh_mask_on_structures"] == pytest.approx(1.0, abs=0.01)
    assert mean["fresh_mask_error_auc"] == pytest.approx(0.5)
    assert "trained_domain_auc" not in mean


def test_the_feature_gap_probe_refuses_unlabelled_target_volumes(one_volume, tmp_path):
    datalist = copy.deepcopy(one_volume[0])
    del datalist["target"]["test"][0]["label"]
    with pytest.raises(DatalistError, match="`target.test` entries need a `label`"):
        evaluate_feature_gap(nn.Identity(), Background(), PixelDiscriminator(1, 8), datalist, tmp_path)
