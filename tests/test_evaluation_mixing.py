"""The Inspector probe: per-cell accuracy on unmixed images and on unaligned and aligned mixes,
checked with Inspectors whose answers are known."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from common.data.datalist import load_datalist
from common.evaluation import INSPECTOR_INPUTS, ORACLE_INPUTS, evaluate_inspector

K = 4


class ConstantInspector(nn.Module):
    """Calls every cell target (``logit > 0``) or source (``logit < 0``)."""

    def __init__(self, logit: float) -> None:
        super().__init__()
        self.logit = logit

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.full((x.shape[0], 1, K, K), self.logit), torch.full((x.shape[0], 1), self.logit)


class Encoder(nn.Module):
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x, x


class Decoder(nn.Module):
    def forward(self, features: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        return image


@pytest.fixture(scope="module")
def datalist(synthetic):
    return load_datalist(synthetic("cardiac", size=32, subjects=5))


def probe(datalist, logit, tmp_path):
    inspector = ConstantInspector(logit)
    return evaluate_inspector(inspector, nn.Identity(), Encoder(), Decoder(), datalist, tmp_path, k=K, seed=3)


def test_constant_inspectors_score_the_share_of_each_domains_cells(datalist, tmp_path):
    target = probe(datalist, 5.0, tmp_path / "target")["mean"]
    source = probe(datalist, -5.0, tmp_path / "source")["mean"]
    assert set(target) == {f"inspector_accuracy_{name}" for name in INSPECTOR_INPUTS + ORACLE_INPUTS}
    assert target["inspector_accuracy_source"] == 0 and target["inspector_accuracy_target"] == 1
    assert source["inspector_accuracy_source"] == 1 and source["inspector_accuracy_target"] == 0
    # On a mix, "always target" is right on the target cells, "always source" on the others.
    share = target["inspector_accuracy_unaligned"]
    assert 0.2 < share < 0.8 and source["inspector_accuracy_unaligned"] == pytest.approx(1 - share)
    # The same seeded masks for every kind of mix: the aligned mixes' truth is the same mask.
    assert target["inspector_accuracy_source_mix"] == target["inspector_accuracy_target_mix"] == share
    assert target["inspector_accuracy_source_mix_oracle"] == target["inspector_accuracy_target_mix_oracle"] == share
    assert (tmp_path / "target" / "mixes.png").stat().st_size > 10_000
    assert len(probe(datalist, 5.0, tmp_path / "again")["per_volume"]) == len(datalist["target"]["test"])


def test_the_oracle_mixes_need_every_entry_s_reference(datalist, tmp_path):
    # Real data have no oracle translation: the five inputs only, nothing else read.
    plain = copy.deepcopy(datalist)
    del plain["source"]["test"][0]["reference"]
    means = probe(plain, 5.0, tmp_path)["mean"]
    assert set(means) == {f"inspector_accuracy_{name}" for name in INSPECTOR_INPUTS}


class IsReference(nn.Module):
    """Calls a cell target where the image equals the source subject's target-domain rendering:
    right on every cell of the source's oracle mix only."""

    def __init__(self, reference: torch.Tensor) -> None:
        super().__init__()
        self.reference = reference

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        same = (x - self.reference).abs().amax(1, keepdim=True) < 1e-6
        cells = torch.nn.functional.adaptive_avg_pool2d(same.float(), K) * 20 - 10
        return cells, cells.mean((2, 3))


def test_the_oracle_mix_puts_the_reference_on_the_mask_s_target_cells(datalist, tmp_path):
    from common.data.io import domain_transform
    from common.evaluation.report import as_slices

    one = copy.deepcopy(datalist)
    for domain in ("source", "target"):
        one[domain]["test"] = one[domain]["test"][:1]
    entry = one["source"]["test"][0]
    reference = as_slices(domain_transform(one, "target", ("image",))({"image": entry["reference"]})["image"])
    means = evaluate_inspector(IsReference(reference), nn.Identity(), Encoder(), Decoder(), one, tmp_path, k=K)["mean"]
    assert means["inspector_accuracy_source_mix_oracle"] == 1
    assert means["inspector_accuracy_source"] == 1 and means["inspector_accuracy_target"] == 0
