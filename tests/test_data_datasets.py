"""Unpaired and paired datasets, slice sampling and exact reassembly of per-slice predictions."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import CacheDataset, DataLoader
from monai.utils import set_determinism

from common.data.datalist import load_datalist
from common.data.datasets import PairedDataset, SliceDataset, UnpairedDataset, VolumeAssembler
from common.data.io import domain_transform


def test_unpaired_dataset_visits_every_source_and_draws_targets():
    source = [{"image": i, "label": -i} for i in range(6)]
    target = [{"image": 100 + i} for i in range(4)]
    dataset = UnpairedDataset(source, target, seed=0)
    assert len(dataset) == 6
    epochs = [[dataset[i] for i in range(len(dataset))] for _ in range(20)]
    for epoch in epochs:
        assert [item["source_image"] for item in epoch] == list(range(6))
        assert all(set(item) == {"source_image", "source_label", "target_image"} for item in epoch)
    drawn = [item["target_image"] for epoch in epochs for item in epoch]
    assert set(drawn) == {100, 101, 102, 103}  # every target sample is drawn ...
    assert len({tuple(item["target_image"] for item in epoch) for epoch in epochs}) > 1  # ... anew each epoch
    again = UnpairedDataset(source, target, seed=0)
    assert [again[i]["target_image"] for i in range(6)] == [item["target_image"] for item in epochs[0]]
    with pytest.raises(ValueError, match="The target domain has no samples"):
        UnpairedDataset(source, [])


def test_unpaired_dataset_on_a_datalist_never_sees_target_labels(synthetic):
    datalist = load_datalist(synthetic("abdomen", size=24, subjects=4))
    source = CacheDataset(datalist["source"]["training"], domain_transform(datalist, "source"), progress=False)
    target = CacheDataset(
        datalist["target"]["training"], domain_transform(datalist, "target", ("image",)), progress=False
    )
    batch = next(iter(DataLoader(UnpairedDataset(source, target), batch_size=2)))
    assert not any(key.startswith("target_label") for key in batch)
    assert batch["source_image"].shape == batch["target_image"].shape == (2, 1, 24, 24, 12)
    for key in ("source_image", "target_image"):  # both normalised to [-1, 1]
        assert batch[key].min() >= -1 and batch[key].max() <= 1 and batch[key].max() > 0


def test_paired_dataset_misaligns_both_images_independently():
    yy, xx = np.mgrid[:32, :32]
    square = np.where((abs(yy - 16) < 8) & (abs(xx - 16) < 8), 1.0, -1.0).astype(np.float32)[None]
    data = [{"image": torch.as_tensor(square), "target": torch.as_tensor(square), "name": "s"}]
    assert PairedDataset(data, 0)[0]["target"] is data[0]["target"]
    dataset = PairedDataset(data, misalignment_level=4, seed=1)
    first, second = dataset[0], dataset[0]
    for key in ("image", "target"):  # both images move, as in RegGAN's public code ...
        assert not torch.equal(first[key], data[0][key])
        assert not torch.equal(first[key], second[key])  # a new draw every access
        assert float(first[key].min()) == -1.0  # the background outside the field of view
    # ... each with its own transform: the same image under both keys comes out differently.
    same = PairedDataset([{"image": data[0]["target"], "target": data[0]["target"]}], 4, seed=1)[0]
    assert not torch.equal(same["image"], same["target"])
    assert first["name"] == "s"
    torch.testing.assert_close(PairedDataset(data, 4, seed=1)[0]["target"], first["target"])
    target_only = PairedDataset(data, 4, seed=1, keys=("target",))[0]
    torch.testing.assert_close(target_only["image"], data[0]["image"])
    assert not torch.equal(target_only["target"], data[0]["target"])
    with pytest.raises(ValueError, match="`misalignment_level` must be 0 to 5"):
        PairedDataset(data, 6)
    with pytest.raises(ValueError, match="at least one image"):
        PairedDataset(data, 2, keys=())


def test_slices_round_trip_exactly_through_a_shuffled_loader():
    set_determinism(seed=0)
    volumes = [
        {"image": torch.randn(2, 5, 4, depth), "label": torch.randint(0, 3, (1, 5, 4, depth))} for depth in (3, 7, 1)
    ]
    dataset = SliceDataset(volumes)
    assert len(dataset) == 11
    item = dataset[4]
    assert item["image"].shape == (2, 5, 4) and (item["volume_id"], item["slice_index"]) == (1, 1)
    assembler = VolumeAssembler()
    for batch in DataLoader(dataset, batch_size=3, shuffle=True):
        assembler.add(batch["volume_id"], batch["slice_index"], batch["image"])
    assert assembler.volume_ids == [0, 1, 2]
    for volume_id, volume in enumerate(volumes):
        assert torch.equal(assembler.volume(volume_id), volume["image"])


def test_slice_and_assembler_errors():
    with pytest.raises(ValueError, match=r"Volume 0: 'image' must be \(C, H, W, D\)"):
        SliceDataset([{"image": torch.zeros(1, 4, 4), "label": torch.zeros(1, 4, 4)}])
    with pytest.raises(ValueError, match="Volume 0 has no key 'label'"):
        SliceDataset([{"image": torch.zeros(1, 4, 4, 2)}])
    with pytest.raises(ValueError, match="different depths"):
        SliceDataset([{"image": torch.zeros(1, 4, 4, 2), "label": torch.zeros(1, 4, 4, 3)}])
    assembler = VolumeAssembler()
    assembler.add([0, 0], [0, 2], torch.zeros(2, 1, 4, 4))
    with pytest.raises(ValueError, match=r"Volume 0 is missing slices \[1\]"):
        assembler.volume(0)
    with pytest.raises(ValueError, match="Slice 2 of volume 0 was added twice"):
        assembler.add([0], [2], torch.zeros(1, 1, 4, 4))
    with pytest.raises(ValueError, match="No slices were added for volume 5"):
        assembler.volume(5)
    with pytest.raises(ValueError, match="one entry per slice"):
        assembler.add([1, 1], [0], torch.zeros(2, 1, 4, 4))
