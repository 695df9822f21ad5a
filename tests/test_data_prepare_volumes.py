"""Preparation of the 3D public datasets (issue 20) on tiny raw trees in each release's layout,
formats and label codes: MM-WHS 2017's raw NIfTI volumes and the PnP-AdaNet / SIFA preprocessed
release (TFRecord slices written here byte for byte as TensorFlow writes them, NIfTI test
volumes)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from bundle_helpers import ENV, bundle_run, copy_bundle
from tensorboard.summary.writer.record_writer import RecordWriter

from common.data.datalist import load_datalist
from common.data.prepare import RawLayoutError
from common.data.prepare import mmwhs as mmwhs_module
from common.data.prepare import prepare

BUNDLES = Path(__file__).resolve().parents[1] / "bundles"
# MM-WHS label codes: 205 MYO, 420 LAC, 500 LVC, 550 RV, 600 RA, 820 AA, 850 PA.
BOXES = {820: (0, 4), 420: (8, 12), 500: (16, 20), 205: (24, 28), 600: (28, 32)}


def digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*.*")}


def mmwhs_raw(root: Path) -> Path:
    """MM-WHS 2017's training release: ``{ct,mr}_train/{ct,mr}_train_<n>_{image,label}.nii.gz``,
    n = 1001-1020. CT 32 x 32 x 3 stored LPS (the raw CT's orientation), MR 40 x 48 x 3 RAS;
    the structures are stripes along the first axis."""
    rng = np.random.default_rng(3)
    for modality, shape, affine in (
        ("ct", (32, 32, 3), np.diag([-0.8, -0.8, 1.5, 1.0])),
        ("mr", (40, 48, 3), np.diag([1.2, 1.2, 1.2, 1.0])),
    ):
        folder = root / f"{modality}_train"
        folder.mkdir(parents=True)
        for n in range(1001, 1021):
            low, high = (-1000, 1500) if modality == "ct" else (0, 900)
            image = rng.uniform(low, high, shape).astype(np.float32 if modality == "mr" else np.int16)
            labels = np.zeros(shape, np.uint16)
            for code, (start, stop) in BOXES.items():
                labels[start:stop] = code
            nib.save(nib.Nifti1Image(image, affine), folder / f"{modality}_train_{n}_image.nii.gz")
            nib.save(nib.Nifti1Image(labels, affine), folder / f"{modality}_train_{n}_label.nii.gz")
    return root


@pytest.fixture(scope="module")
def cardiac(tmp_path_factory):
    base = tmp_path_factory.mktemp("mmwhs")
    raw, out = mmwhs_raw(base / "MM-WHS 2017"), base / "cardiac"
    assert prepare("mmwhs", raw, out, size=(32, 32)) == out / "datalist.json"
    return raw, out


def test_mmwhs_gives_both_directions_with_sifas_test_cases(cardiac):
    _, out = cardiac
    forward = load_datalist(out / "datalist.json", verify_images=True)
    reverse = load_datalist(out / "datalist_ct_to_mr.json", verify_images=True)
    assert (forward["name"], reverse["name"]) == ("mmwhs-mr-to-ct", "mmwhs-ct-to-mr")
    assert forward["labels"] == {
        "0": "background",
        "1": "ascending_aorta",
        "2": "left_atrium",
        "3": "left_ventricle",
        "4": "myocardium",
    }
    assert forward["tensor_dim"] == 3 and forward["domains"]["source"]["modality"] == "MR"
    assert forward["domains"]["target"] == {"modality": "CT", "channels": 1, "intensity": {"range": [-400.0, 500.0]}}

    def ids(entries):
        return [int(Path(e["image"]).name[3:7]) for e in entries]

    assert ids(forward["target"]["test"]) == [1003, 1008, 1014, 1019]  # SIFA's CT test cases
    assert ids(forward["source"]["test"]) == [1007, 1009, 1018, 1019]
    for datalist in (forward, reverse):
        source, target = datalist["source"], datalist["target"]
        assert [len(source[s]) for s in ("training", "validation", "test")] == [14, 2, 4]
        assert not set(ids(source["training"])) & set(ids(source["validation"]) + ids(source["test"]))
        assert all("label" in e for s in source.values() for e in s)  # the source is labelled
        assert not any("label" in e for s in ("training", "validation") for e in target[s])  # the target is not
        assert all("label" in e for e in target["test"])
    assert forward["source"] == reverse["target"] | {  # the same files, the roles swapped
        s: [e | {"label": e["image"].replace("/images/", "/labels/")} for e in reverse["target"][s]]
        for s in ("training", "validation")
    }


def test_mmwhs_volumes_are_ras_resampled_and_their_codes_mapped(cardiac):
    raw, out = cardiac
    ct = nib.load(out / "mmwhs_ct" / "images" / "ct_1003.nii.gz")
    ct_labels = np.asarray(nib.load(out / "mmwhs_ct" / "labels" / "ct_1003.nii.gz").dataobj)
    raw_ct = np.asarray(nib.load(raw / "ct_train" / "ct_train_1003_image.nii.gz").dataobj)
    assert nib.aff2axcodes(ct.affine) == ("R", "A", "S") and ct.shape == (32, 32, 3)
    np.testing.assert_array_equal(np.asarray(ct.dataobj), raw_ct[::-1, ::-1].astype(np.float32))  # LPS -> RAS
    # Stored LPS, the aorta's stripe (first-axis indices 0-3) is at 28-31 in RAS; the RA (600) is background.
    expected = np.zeros(32, np.uint8)
    expected[28:32], expected[20:24], expected[12:16], expected[4:8] = 1, 2, 3, 4
    np.testing.assert_array_equal(ct_labels[:, 5, 1], expected)
    assert ct_labels.dtype == np.uint8
    mr_labels = np.asarray(nib.load(out / "mmwhs_mr" / "labels" / "mr_1001.nii.gz").dataobj)
    assert mr_labels.shape == (32, 32, 3) and set(np.unique(mr_labels)) == {0, 1, 2, 3, 4}  # 40 x 48 -> 32 x 32


def test_mmwhs_a_second_run_writes_the_same_files(cardiac, tmp_path):
    raw, out = cardiac
    again = tmp_path / "cardiac"
    prepare("mmwhs", raw, again, size=(32, 32))
    assert digest(again) == digest(out) and not list(again.rglob("*.tmp*"))


def test_mmwhs_missing_and_unreadable_volumes_are_named_one_line_each(tmp_path):
    raw = mmwhs_raw(tmp_path / "raw")
    (raw / "ct_train" / "ct_train_1005_label.nii.gz").unlink()
    (raw / "mr_train" / "mr_train_1012_image.nii.gz").write_bytes(b"broken")
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 3), np.uint8), np.eye(4)), raw / "mr_train" / "mr_train_1002_label.nii.gz")
    with pytest.raises(RawLayoutError) as error:
        prepare("mmwhs", raw, tmp_path / "out")
    lines = str(error.value).splitlines()[1:]
    assert lines[0] == (
        f"{raw / 'ct_train' / 'ct_train_1005_label.nii.gz'}: missing (the labels of ct_train_1005_image.nii.gz)."
    )
    assert lines[1] == (
        f"{raw / 'mr_train' / 'mr_train_1002_label.nii.gz'}: its shape (8, 8, 3) differs from its image's "
        f"(40, 48, 3) ({raw / 'mr_train' / 'mr_train_1002_image.nii.gz'})."
    )
    assert lines[2].startswith(f"{raw / 'mr_train' / 'mr_train_1012_image.nii.gz'}: cannot be read as the MR volume")
    assert len(lines) == 3 and not (tmp_path / "out").exists()


def test_synthmix_trains_on_the_prepared_mmwhs_data(cardiac, tmp_path):
    _, out = cardiac
    root = copy_bundle(tmp_path / "synthmix", BUNDLES / "synthmix")
    log = bundle_run(
        root, "training", ["configs/train.yaml", "configs/quick.yaml"], "--datalist", str(out / "datalist.json")
    )
    assert "Saved the release weights" in log and not (root / "data").exists()
    settings = json.loads((root / "models" / "model_settings.json").read_text())
    assert settings["settings"]["num_classes"] == 5


# --- the PnP-AdaNet / SIFA release -----------------------------------------------------------


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        out.append((value & 0x7F) | (0x80 if value > 0x7F else 0))
        value >>= 7
        if not value:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def tf_example(features: dict[str, bytes | int]) -> bytes:
    """A serialised ``tf.train.Example`` (bytes features as BytesList, ints as a packed Int64List)."""
    entries = b""
    for name, value in features.items():
        feature = _field(1, _field(1, value)) if isinstance(value, bytes) else _field(3, _field(1, _varint(value)))
        entries += _field(1, _field(1, name.encode()) + _field(2, feature))
    return _field(1, entries)


def sifa_slice(rng: np.random.Generator, index: int) -> tuple[np.ndarray, np.ndarray]:
    """Three neighbouring 32 x 32 slices (the middle one holding ``index``) and SIFA-coded labels."""
    data = rng.normal(0, 1, (32, 32, 3)).astype(np.float32)
    data[0, 0, 1] = index
    labels = np.zeros((32, 32, 1), np.float32)
    labels[4:8, ..., 0], labels[12:16, ..., 0] = 1, 4  # myocardium, ascending aorta (SIFA's codes)
    return data, labels


def sifa_raw(root: Path, slices: int = 3) -> Path:
    """The release: ``train&val/{ct,mr}_{train,val}_tfs/<...>_slice<k>.tfrecords`` (one Example per
    file, as released) and ``test_ct_image_n_labels/{image,gth}_ct_<n>.nii.gz`` (MR likewise)."""
    rng = np.random.default_rng(4)
    for modality in ("ct", "mr"):
        for split, count in (("train", slices), ("val", 1)):
            folder = root / "train&val" / f"{modality}_{split}_tfs"
            folder.mkdir(parents=True)
            for k in [*range(count)][::-1]:
                data, labels = sifa_slice(rng, k)
                features = {f"dsize_dim{i}": n for i, n in enumerate(data.shape)}
                features |= {f"lsize_dim{i}": n for i, n in enumerate(labels.shape)}
                features |= {"data_vol": data.tobytes(), "label_vol": labels.tobytes()}
                with open(folder / f"{modality}_{split}_slice{k}.tfrecords", "wb") as file:
                    RecordWriter(file).write(tf_example(features))
        tests = root / f"test_{modality}_image_n_labels"
        tests.mkdir()
        for n in (1003, 1008, 1014, 1019) if modality == "ct" else (1007, 1009):
            volume = rng.normal(0, 1, (32, 32, 4)).astype(np.float32)
            labels = np.zeros((32, 32, 4), np.float32)
            labels[0:4, 0:4] = 3  # left ventricle, in the corner the flip moves
            nib.save(nib.Nifti1Image(volume, np.eye(4)), tests / f"image_{modality}_{n}.nii.gz")
            nib.save(nib.Nifti1Image(labels, np.eye(4)), tests / f"gth_{modality}_{n}.nii.gz")
    return root


def test_parse_example_reads_what_tensorflow_writes():
    features = {"dsize_dim0": 256, "big": 2**40, "data_vol": b"\x00\x01\x02"}
    assert mmwhs_module.parse_example(tf_example(features)) == {
        "dsize_dim0": [256],
        "big": [2**40],
        "data_vol": b"\0\1\2",
    }


def test_mmwhs_sifa_gives_the_release_slices_and_test_volumes(tmp_path, monkeypatch):
    monkeypatch.setattr(mmwhs_module, "SLICES_PER_FILE", 2)  # stacked over files: 3 training slices -> 2 + 1
    raw, out = sifa_raw(tmp_path / "PnpAda_release_data"), tmp_path / "cardiac"
    assert prepare("mmwhs_sifa", raw, out) == out / "datalist.json"
    datalist = load_datalist(out / "datalist.json", verify_images=True)
    assert datalist["name"] == "mmwhs-sifa-mr-to-ct"
    assert datalist["domains"]["source"]["intensity"] == {"range": [-1.8, 4.4]}  # SIFA's MR constants
    assert datalist["domains"]["target"]["intensity"] == {"range": [-2.8, 3.2]}
    source, target = datalist["source"], datalist["target"]
    assert [len(source[s]) for s in ("training", "validation", "test")] == [2, 1, 2]
    assert [Path(e["image"]).name for e in target["test"]] == [f"test_{n}.nii.gz" for n in (1003, 1008, 1014, 1019)]
    first, second = (np.asarray(nib.load(e["image"]).dataobj) for e in source["training"])
    assert first.shape == (32, 32, 2) and second.shape == (32, 32, 1)
    assert [first[0, 0, 0], first[0, 0, 1], second[0, 0, 0]] == [0, 1, 2]  # the middle slices, in slice order
    labels = np.asarray(nib.load(source["training"][0]["label"]).dataobj)
    assert labels[5, 5, 0] == 4 and labels[13, 5, 0] == 1 and labels[20, 5, 0] == 0  # MYO 1 -> 4, AA 4 -> 1
    test_labels = np.asarray(nib.load(target["test"][0]["label"]).dataobj)
    assert test_labels[31, 31, 0] == 3 and test_labels[0, 0, 0] == 0  # flipped along both in-plane axes
    assert not any("label" in e for e in target["training"] + target["validation"])


def test_mmwhs_sifa_refuses_a_broken_release_one_line_each(tmp_path):
    raw = sifa_raw(tmp_path / "release")
    (raw / "train&val" / "mr_val_tfs" / "mr_val_slice0.tfrecords").write_bytes(b"not a record")
    (raw / "test_ct_image_n_labels" / "image_ct_1014.nii.gz").unlink()
    (raw / "test_ct_image_n_labels" / "gth_ct_1008.nii.gz").unlink()
    command = [
        sys.executable,
        "-m",
        "common.data.prepare",
        "mmwhs_sifa",
        "--raw",
        str(raw),
        "--out",
        str(tmp_path / "o"),
    ]
    result = subprocess.run(command, capture_output=True, text=True, env=ENV)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and lines[-3:] == [
        f"{raw / 'test_ct_image_n_labels' / 'gth_ct_1008.nii.gz'}: missing (the labels of image_ct_1008.nii.gz).",
        f"{raw}/**/image_ct_1014.nii.gz: missing (a CT test volume).",
        f"{raw / 'train&val' / 'mr_val_tfs' / 'mr_val_slice0.tfrecords'}: cannot be read as a TFRecord file "
        "(its first record header is invalid).",
    ]
    assert not (tmp_path / "o").exists()


def test_global_local_alignment_trains_on_the_sifa_release(tmp_path):
    out = tmp_path / "cardiac"
    prepare("mmwhs_sifa", sifa_raw(tmp_path / "release", slices=6), out)
    root = copy_bundle(tmp_path / "gla", BUNDLES / "global_local_alignment")
    log = bundle_run(
        root, "training", ["configs/train.yaml", "configs/quick.yaml"], "--datalist", str(out / "datalist.json")
    )
    assert "Saved the release weights" in log and not (root / "data").exists()
