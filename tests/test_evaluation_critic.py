"""What MI2GAN's critic separates: critics whose answers are known."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from common.data.datalist import load_datalist
from common.evaluation import evaluate_mi_critic


class ContentCritic(nn.Module):
    """Scores a pair by how alike its two codes are: it reads the content, not the domain."""

    def pair_scores(self, z: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return -((z - w) ** 2).mean(dim=(1, 2, 3))


class BrightnessCritic(nn.Module):
    """Scores a pair by its second code alone: blind to whether the contents match."""

    def pair_scores(self, z: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return w.mean(dim=(1, 2, 3))


class Brighten(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + 1.0


def test_a_content_critic_separates_matching_pairs(synthetic, tmp_path):
    datalist = load_datalist(synthetic("polyp", size=24, subjects=10))
    result = evaluate_mi_critic(nn.Identity(), nn.Identity(), nn.Identity(), ContentCritic(), datalist, tmp_path)
    # The translation is the image itself: a joint pair scores 0, every other pair below 0.
    assert result["joint"] == 0.0 and result["product"] < 0 and result["real"] < 0
    assert result["content_separation"] == 1.0 and result["translation_separation"] == 1.0
    assert result["images"] == result["other_images"] == 2  # 10 subjects: 2 test images per centre
    assert json.loads((tmp_path / "critic.json").read_text()) == result


def test_a_real_vs_translated_critic_ignores_the_content(synthetic, tmp_path):
    datalist = load_datalist(synthetic("polyp", size=24, subjects=20))
    result = evaluate_mi_critic(Brighten(), nn.Identity(), nn.Identity(), BrightnessCritic(), datalist, tmp_path)
    # It scores translations (brightened by 1) above real images, whatever the content: it tells
    # translated from real every time and matching from non-matching content half of the time.
    assert result["translation_separation"] == 1.0
    assert result["content_separation"] == pytest.approx(0.5)
    assert result["joint"] == pytest.approx(result["product"]) and result["joint"] > result["real"] + 0.9
