"""Datalist loading and checking: every error names the file and the entry."""

from __future__ import annotations

import json
import shutil

import nibabel as nib
import numpy as np
import pytest

from common.data.datalist import DatalistError, entries, has_references, load_datalist
from common.data.io import write_nifti


@pytest.fixture
def dataset(synthetic, tmp_path):
    """A private, editable copy of a small abdomen dataset: (datalist path, its JSON)."""
    source = synthetic("abdomen", size=24, subjects=4).parent
    shutil.copytree(source, tmp_path / "data")
    path = tmp_path / "data" / "datalist.json"
    return path, json.loads(path.read_text())


def rewrite(path, datalist):
    path.write_text(json.dumps(datalist))
    return path


def test_loads_and_resolves_paths(dataset):
    path, _ = dataset
    datalist = load_datalist(path, verify_images=True)
    first = entries(datalist, "source", "training")[0]
    assert first["image"].startswith(str(path.parent)) and first["label"].endswith(".nii.gz")
    with pytest.raises(DatalistError, match="no `paired.training` split"):
        entries(datalist, "paired", "training")


def test_target_training_label_is_dropped_with_a_warning(dataset):
    path, datalist = dataset
    datalist["target"]["training"][1]["label"] = datalist["source"]["training"][0]["label"]
    with pytest.warns(UserWarning, match=r"target.training\[1\]: target training entries must not have labels"):
        loaded = load_datalist(rewrite(path, datalist))
    assert all("label" not in e for e in loaded["target"]["training"])


def edit(datalist, change):
    change(datalist)
    return datalist


@pytest.mark.parametrize(
    "change,pattern",
    [
        (lambda d: d.pop("tensor_dim"), r"`tensor_dim` must be 2 or 3, got None"),
        (lambda d: d.update(labels={"liver": "1"}), r"`labels` keys must be integer label values"),
        (lambda d: d["domains"].pop("target"), r"`domains` must describe 'source' and 'target'"),
        (lambda d: [d.pop("source"), d.pop("target")], r"has none of the sections source, target, paired"),
        (lambda d: d["source"].update(training=[]), r"source.training: empty split"),
        (lambda d: d["target"].update(testing=[{"image": "x"}]), r"target.testing: unknown split"),
        (lambda d: d["source"]["training"][0].pop("image"), r"source.training\[0\]: an entry must be an object"),
        (
            lambda d: d["source"]["training"][1].update(label="missing.nii.gz"),
            r"source.training\[1\].label: file not found: .*missing.nii.gz",
        ),
        (lambda d: d["target"]["test"][0].update(image="source"), None),  # a folder: taken as a DICOM series
        (lambda d: d.update(regions={"liver_and_more": [1, 9]}), r"`regions` must map the names .* got \{'liver_and"),
        (lambda d: d.update(regions={"nothing": []}), r"`regions` must map the names of the scored structures"),
    ],
)
def test_layout_errors(dataset, change, pattern):
    path, datalist = dataset
    edited = rewrite(path, edit(datalist, change))
    if pattern is None:
        with pytest.raises(
            DatalistError, match=r"target.test\[0\].image: .*source is a folder, read as a DICOM series, but"
        ):
            load_datalist(edited, verify_images=True)
        return
    with pytest.raises(DatalistError, match=pattern) as error:
        load_datalist(edited)
    assert str(path) in str(error.value)


def test_missing_and_invalid_files(tmp_path):
    with pytest.raises(DatalistError, match="Datalist not found"):
        load_datalist(tmp_path / "none.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(DatalistError, match="bad.json: not valid JSON"):
        load_datalist(tmp_path / "bad.json")


def replace_image(path, relative, array, spacing=(1.0, 1.0, 1.0)):
    target = path.parent / relative
    target.unlink()
    write_nifti(target, array, spacing)


@pytest.mark.parametrize(
    "corrupt,pattern",
    [
        (
            lambda p, e: (p.parent / e["image"]).write_bytes(b"garbage"),
            r"source.training\[0\].image: .*training_000.nii.gz is not gzip-compressed",
        ),
        (
            lambda p, e: replace_image(p, e["label"], np.zeros((5, 5, 5), np.uint8)),
            r"source.training\[0\].label: .* has shape \(5, 5, 5\) .* spatial shape \(24, 24, 12\)",
        ),
        (
            lambda p, e: replace_image(p, e["label"], np.full((24, 24, 12), 7, np.uint8)),
            r"source.training\[0\].label: .* has values \[7\] that are not declared",
        ),
        (
            lambda p, e: nib.save(
                nib.Nifti1Image(np.zeros((24, 24, 12, 2), np.float32), np.eye(4)), p.parent / e["image"]
            ),
            r"source.training\[0\].image: .* has 2 channels, expected 1",
        ),
        (
            lambda p, e: replace_image(p, e["image"], np.zeros((24, 24), np.float32), (1.0, 1.0)),
            r"source.training\[0\].image: .* has 2 spatial dimensions, expected 3",
        ),
        (
            lambda p, e: replace_image(p, e["image"], np.full((24, 24, 12), np.nan, np.float32)),
            r"source.training\[0\].image: .* contains NaN",
        ),
        (
            lambda p, e: replace_image(p, e["label"], np.full((24, 24, 12), 0.5, np.float32)),
            r"source.training\[0\].label: .* has non-integer values",
        ),
    ],
)
def test_image_errors(dataset, corrupt, pattern):
    path, datalist = dataset
    corrupt(path, datalist["source"]["training"][0])
    load_datalist(path)  # the layout is fine ...
    with pytest.raises(DatalistError, match=pattern):
        load_datalist(path, verify_images=True)  # ... the image is not


def test_labels_are_read_as_written(dataset):
    path, _ = dataset
    entry = load_datalist(path)["source"]["training"][0]
    assert np.asarray(nib.load(entry["label"]).dataobj).max() == 4


def test_has_references_is_true_only_when_every_entry_has_one(synthetic):
    datalist = load_datalist(synthetic("cardiac", size=32, subjects=5))
    assert has_references(datalist, "source", "test") and has_references(datalist, "target", "test")
    del datalist["source"]["test"][-1]["reference"]
    assert not has_references(datalist, "source", "test")
    datalist["target"]["test"] = []
    assert not has_references(datalist, "target", "test")
    with pytest.raises(DatalistError, match=r"no `target.holdout` split"):
        has_references(datalist, "target", "holdout")
