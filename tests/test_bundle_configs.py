"""The configs every bundle shares stay one pattern: the ids that mean the same in every bundle
(device, AMP, resume, validation switches, stages, release weights, logging handlers) are
written the same way, the DDP overlay is the same, and presets never hard-code what the
datalist determines."""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

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
    "preset",
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


@pytest.mark.parametrize("bundle", BUNDLES, ids=[b.name for b in BUNDLES])
def test_inference_reads_every_setting_training_records(bundle):
    """Each id of train.yaml's `release_settings` is an id of inference.yaml read from the record
    under its own name (the datalist is inference's default input), and every preset names itself."""
    recorded = config(bundle, "train.yaml")["release_settings"]
    inference = config(bundle, "inference.yaml")
    for key in recorded:
        target = "input" if key == "datalist" else key
        assert f"common.bundle.trained(@ckpt_dir, {key!r}, " in str(inference.get(target)), f"{bundle.name}: {key}"
    for preset in ("quick", "cpu", "gpu"):
        if (bundle / "configs" / f"{preset}.yaml").is_file():
            assert config(bundle, f"{preset}.yaml")["preset"] == preset, bundle.name
    # and nothing in inference.yaml that training does not record is read from the record
    read = set(
        re.findall(r"common\.bundle\.trained\(@ckpt_dir, '(\w+)'", (bundle / "configs" / "inference.yaml").read_text())
    )
    assert read == set(recorded), bundle.name


def test_every_json_file_of_the_bundles_is_as_the_zoo_s_pretty_format_json_writes_it():
    """The model zoo's pre-commit hook `pretty-format-json --autofix --no-sort-keys --indent=4`
    would rewrite any other layout (json.dumps with indent 4 and ASCII escapes, then a newline)."""
    files = sorted(p for b in BUNDLES for p in b.rglob("*.json") if not {"data", "models", "eval"} & set(p.parts))
    assert len(files) > 20
    for path in files:
        text = path.read_text()
        assert text == json.dumps(json.loads(text), indent=4, ensure_ascii=True) + "\n", path


@pytest.mark.parametrize("bundle", BUNDLES, ids=[b.name for b in BUNDLES])
def test_every_shipped_bundle_passes_the_check_with_the_zoo_s_smallest_input(bundle):
    """`common.bundle check` on the bundle as shipped (the paper-size network_def, no weights):
    verify_net_in_out at the model zoo's n = 1 and at n = 16, in evaluation and training mode."""
    from common.bundle import check_bundle

    passed = check_bundle(bundle, export=False)
    assert any("matches network_data_format (n = 1 and 16, evaluation and training mode)" in p for p in passed)


@pytest.mark.parametrize("bundle", BUNDLES, ids=[b.name for b in BUNDLES])
def test_inference_follows_the_model_zoo_workflow_layout(bundle, tmp_path):
    """inference.yaml is MONAI's inference workflow, as the model zoo's bundles and MONAI Label's
    BundleInferTask read it: the parts instantiate to MONAI's types."""
    from monai.bundle import ConfigParser
    from monai.engines import SupervisedEvaluator
    from monai.handlers import CheckpointLoader
    from monai.inferers import SliceInferer
    from monai.transforms import AsDiscreted, Compose, SaveImaged

    from common.data.io import LoadImageByTyped

    parser = ConfigParser()
    parser.read_config(str(bundle / "configs" / "inference.yaml"))
    parser["bundle_root"] = str(tmp_path)  # untrained: the inference.yaml defaults
    parser["input"] = str(tmp_path)
    parser["device"] = "$torch.device('cpu')"
    assert parser["run"] == ["$@evaluator.run()"]
    preprocessing = parser.get_parsed_content("preprocessing")
    assert isinstance(preprocessing, Compose) and isinstance(preprocessing.transforms[0], LoadImageByTyped)
    assert isinstance(parser.get_parsed_content("inferer"), SliceInferer)
    postprocessing = parser.get_parsed_content("postprocessing").transforms
    assert sum(isinstance(t, SaveImaged) for t in postprocessing) == 1
    segmentation = json.loads((bundle / "configs" / "metadata.json").read_text())["network_data_format"]["outputs"]
    if segmentation["pred"]["format"] == "segmentation":
        assert isinstance(postprocessing[0], AsDiscreted) and postprocessing[0].argmax == (True,)
        assert segmentation["pred"]["num_channels"] == len(segmentation["pred"]["channel_def"]) > 1
    # an input the bundle takes (the inputs are checked when the evaluator's data instantiate)
    channels = json.loads((bundle / "configs" / "metadata.json").read_text())["network_data_format"]["inputs"]
    pixels = np.zeros((64, 64, 3) if channels["image"]["num_channels"] == 3 else (64, 64), np.uint8)
    Image.fromarray(pixels).save(tmp_path / "image.png")
    evaluator = parser.get_parsed_content("evaluator")
    assert isinstance(evaluator, SupervisedEvaluator)
    loaders = [h for h in parser.get_parsed_content("handlers") if isinstance(h, CheckpointLoader)]
    assert len(loaders) == 1 and loaders[0].load_path == str(tmp_path / "models" / "model.pt")


def test_ddp_process_group_timeout_comes_from_the_config(monkeypatch):
    """``ddp_timeout_minutes`` reaches ``init_process_group`` in every bundle's multi_gpu_train.yaml."""
    import datetime

    import torch.distributed as dist
    from monai.bundle import ConfigParser

    for bundle in BUNDLES:
        parser = ConfigParser()
        parser.read_config([str(bundle / "configs" / n) for n in ("train.yaml", "multi_gpu_train.yaml")])
        assert parser["ddp_timeout_minutes"] == 5.0, bundle.name
        parser["ddp_timeout_minutes"] = 0.05
        parser["backend"] = "gloo"
        seen = {}
        monkeypatch.setattr(dist, "is_initialized", lambda: False)
        monkeypatch.setattr(dist, "init_process_group", lambda **options: seen.update(options))
        init = next(i for i, e in enumerate(parser["initialize"]) if "init_process_group" in e)
        parser.get_parsed_content(f"initialize#{init}")
        assert seen == {"backend": "gloo", "timeout": datetime.timedelta(seconds=3)}, bundle.name


def _stalled_peer(rank: int, port: int) -> None:
    """Rank 1 joins the group and stops answering; rank 0 waits for it in a collective."""
    import datetime
    import time

    import torch
    import torch.distributed as dist

    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2, timeout=datetime.timedelta(seconds=3)
    )
    if rank == 1:
        time.sleep(60)
        return
    started = time.monotonic()
    try:
        dist.all_reduce(torch.ones(1))
    except RuntimeError as error:
        raise RuntimeError(f"gave up after {time.monotonic() - started:.0f} s: {error}") from None


def test_a_stalled_rank_ends_the_wait_after_the_timeout():
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    context = mp.start_processes(_stalled_peer, args=(port,), nprocs=2, join=False, start_method="spawn")
    with pytest.raises(mp.ProcessRaisedException, match=r"gave up after [0-9] s"):
        while not context.join(timeout=30):
            pass
    for process in context.processes:
        process.kill()
