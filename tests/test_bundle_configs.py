"""The configs every bundle shares stay one pattern: the ids that mean the same in every bundle
(device, AMP, resume, validation switches, stages, release weights, logging handlers) are
written the same way, the DDP overlay is the same, and presets never hard-code what the
datalist determines."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import yaml

BUNDLES = sorted(p for p in (Path(__file__).resolve().parents[1] / "bundles").iterdir() if (p / "configs").is_dir())
SHARED_TRAIN = [
    "imports",
    "bundle_root",
    "ckpt_dir",
    "output_dir",
    "device",
    "seed",
    "amp",
    "channels_last",
    "resume",
    "val_interval",
    "save_best",
    "initialize",
    "training",
    "run",
]
SHARED_DDP = ["backend", "device", "train#sampler", "train#trainer#networks", "initialize", "finalize"]
DATALIST_SIZES = {"in_channels", "out_channels", "channels", "channels_a", "channels_b", "num_classes"}


def config(bundle: Path, name: str) -> dict:
    return yaml.safe_load((bundle / "configs" / name).read_text())


def test_there_are_bundles():
    assert {b.name for b in BUNDLES} >= {"cyclegan", "reggan", "mi2gan"}


@pytest.mark.parametrize("key", SHARED_TRAIN)
def test_shared_train_ids_are_identical(key):
    values = {b.name: config(b, "train.yaml").get(key) for b in BUNDLES}
    assert len({yaml.safe_dump(v) for v in values.values()}) == 1, values


def test_every_bundle_trains_through_stages_and_the_shared_handlers():
    for bundle in BUNDLES:
        train = config(bundle, "train.yaml")
        assert train["stages"] and all(s["_target_"] == "common.engines.Stage" for s in train["stages"]), bundle.name
        assert "release_network" in train, bundle.name
        assert train["train"]["handlers"].startswith(
            "$common.handlers.training_handlers(@output_dir, @log_interval"
        ), bundle.name
        assert "preprocessing" in train["train"], bundle.name  # augmentation can be set in the config
        module, name = train["train"]["trainer"]["_target_"].rsplit(".", 1)
        trainer = getattr(importlib.import_module(module), name)  # train#networks names its declared networks
        assert set(train["train"]["networks"]) == set(trainer.NETWORKS), bundle.name
        assert set(train["train"]["optimizers"]) == set(trainer.OPTIMIZERS), bundle.name


@pytest.mark.parametrize("key", SHARED_DDP)
def test_the_ddp_overlay_is_the_same_in_every_bundle(key):
    values = {b.name: config(b, "multi_gpu_train.yaml").get(key) for b in BUNDLES}
    assert len({yaml.safe_dump(v) for v in values.values()}) == 1, values


def _literal_sizes(node, path=""):
    if isinstance(node, dict):
        for key, value in node.items():
            if key in DATALIST_SIZES and isinstance(value, int):
                yield f"{path}{key}: {value}"
            yield from _literal_sizes(value, f"{path}{key}#")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _literal_sizes(value, f"{path}{index}#")


@pytest.mark.parametrize("bundle", BUNDLES, ids=[b.name for b in BUNDLES])
def test_presets_take_channels_and_classes_from_the_datalist(bundle):
    for preset in ("quick.yaml", "cpu.yaml", "gpu.yaml", "train.yaml"):
        if (bundle / "configs" / preset).is_file():
            assert not list(_literal_sizes(config(bundle, preset))), f"{bundle.name}/{preset}"
