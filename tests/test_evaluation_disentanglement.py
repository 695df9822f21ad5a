"""The content-space probe of DADR's evaluation, on networks whose answers are known."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from common.data.datalist import DatalistError, load_datalist
from common.data.io import domain_transform
from common.evaluation import evaluate_disentanglement
from common.metrics import nmae


class ConstantStyleDecoder(nn.Module):
    """Decodes any content into an image of its style code's first value."""

    style_dim = 2

    def forward(self, content: torch.Tensor, style: torch.Tensor | None) -> torch.Tensor:
        return torch.zeros_like(content) + (0 if style is None else style[:, :1, None, None])


class ZeroStyle(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.new_zeros(x.shape[0], 2)


def slices(volume):
    return torch.as_tensor(volume).as_subclass(torch.Tensor).permute(3, 0, 1, 2)


def test_identity_encoders_score_the_images_themselves(tmp_path, synthetic):
    """With identity content encoders and renderers, the content gap is the images' own relative
    L1 distance and the content-only NMAE is the untranslated NMAE."""
    datalist = load_datalist(synthetic("abdomen", size=16, subjects=8))
    identity, decoder = nn.Identity(), ConstantStyleDecoder()
    result = evaluate_disentanglement(
        (identity, identity), (ZeroStyle(), ZeroStyle()), (decoder, decoder), (identity, identity), datalist, tmp_path
    )
    tests = datalist["target"]["test"]
    assert len(result["per_volume"]) == len(tests) == 2
    mr = [slices(domain_transform(datalist, "target", ("image",))({"image": e["image"]})["image"]) for e in tests]
    ct = [slices(domain_transform(datalist, "source", ("image",))({"image": e["reference"]})["image"]) for e in tests]
    for index, row in enumerate(result["per_volume"]):
        expected = float((mr[index] - ct[index]).abs().mean() / ct[index].abs().mean())
        assert row["content_gap"] == pytest.approx(expected, rel=1e-5)
        other = ct[1 - index]
        depth = min(len(other), len(mr[index]))
        expected_other = float((mr[index][:depth] - other[:depth]).abs().mean() / other[:depth].abs().mean())
        assert row["content_gap_other"] == pytest.approx(expected_other, rel=1e-5)
        whole = torch.ones_like(ct[index], dtype=torch.bool)
        assert row["identity_nmae"] == pytest.approx(nmae(mr[index], ct[index], whole), rel=1e-6)
        assert row["content_only_nmae"] == pytest.approx(row["identity_nmae"], rel=1e-6)
        # The decoder draws a blank image for the zero style: nothing of the content survives.
        assert row["translation_content_gap"] == pytest.approx(1.0)
    assert json.loads((tmp_path / "metrics.json").read_text())["mean"]["content_gap"] == pytest.approx(
        np.mean([r["content_gap"] for r in result["per_volume"]])
    )
    for figure in ("content_only.png", "translations.png"):
        assert Image.open(tmp_path / figure).size[0] > 300


def test_a_split_without_references_is_refused(tmp_path, synthetic):
    datalist = load_datalist(synthetic("abdomen", size=16, subjects=8))
    for entry in datalist["target"]["test"]:
        del entry["reference"]
    identity, decoder = nn.Identity(), ConstantStyleDecoder()
    with pytest.raises(DatalistError, match=r"`target.test` entries need a `reference`"):
        evaluate_disentanglement(
            (identity,) * 2, (ZeroStyle(),) * 2, (decoder,) * 2, (identity,) * 2, datalist, tmp_path
        )


class PassThroughDecoder(nn.Module):
    """Decodes a content code into itself, whatever the style."""

    style_dim = 2

    def forward(self, content: torch.Tensor, style: torch.Tensor | None) -> torch.Tensor:
        return content


def test_a_translation_that_keeps_the_content_has_no_translation_gap(tmp_path, synthetic):
    datalist = load_datalist(synthetic("abdomen", size=16, subjects=8))
    identity, decoder = nn.Identity(), PassThroughDecoder()
    result = evaluate_disentanglement(
        (identity, identity), (ZeroStyle(), ZeroStyle()), (decoder, decoder), (identity, identity), datalist, tmp_path
    )
    assert [r["translation_content_gap"] for r in result["per_volume"]] == [0.0, 0.0]
    assert result["per_volume"][0]["content_gap"] > 0.1  # the images themselves still differ
