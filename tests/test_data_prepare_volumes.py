"""Preparation of the 3D public datasets (issue 20) on tiny raw trees in each release's layout,
formats and label codes: MM-WHS 2017's raw NIfTI volumes and the PnP-AdaNet / SIFA preprocessed
release (TFRecord slices written here byte for byte as TensorFlow writes them, NIfTI test
volumes)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from bundle_helpers import bundle_run, copy_bundle
from PIL import Image
from tensorboard.summary.writer.record_writer import RecordWriter

from common.data.datalist import load_datalist
from common.data.prepare import RawLayoutError
from common.data.prepare import mmwhs as mmwhs_module
from common.data.prepare import prepare
from common.data.prepare.__main__ import main as prepare_command

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


def test_label_codes_outside_a_datasets_coding_are_background_with_a_warning(caplog):
    from common.data.prepare.volumes import map_labels

    codes = mmwhs_module.RAW_CODES
    with caplog.at_level("WARNING"):
        known = map_labels(np.array([0, 205, 420, 500, 550, 600, 820, 850]), codes, Path("known.nii.gz"))
    assert list(known) == [0, 4, 2, 3, 0, 0, 1, 0] and not caplog.records  # RV, RA, PA: background on purpose
    with caplog.at_level("WARNING"):
        odd = map_labels(np.array([421.0, 420.0, 7.0]), codes, Path("odd.nii.gz"))
    assert list(odd) == [0, 2, 0]
    assert caplog.records[-1].getMessage() == (
        "odd.nii.gz: label codes [7, 421] are none of [205, 420, 500, 550, 600, 820, 850]; written as background."
    )


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


def test_synthmix_trains_and_evaluates_on_the_prepared_mmwhs_data(cardiac, tmp_path):
    _, out = cardiac
    root = copy_bundle(tmp_path / "synthmix", BUNDLES / "synthmix")
    configs = ["configs/train.yaml", "configs/quick.yaml"]
    log = bundle_run(root, "training", configs, "--datalist", str(out / "datalist.json"))
    assert "Saved the release weights" in log and not (root / "data").exists()
    settings = json.loads((root / "models" / "model_settings.json").read_text())
    assert settings["settings"]["num_classes"] == 5
    bundle_run(root, "evaluating", [*configs, "configs/evaluate.yaml"], "--datalist", str(out / "datalist.json"))
    metrics = json.loads((root / "eval" / "metrics.json").read_text())
    assert [v["volume"] for v in metrics["per_volume"]] == [f"ct_{n}.nii.gz" for n in (1003, 1008, 1014, 1019)]
    assert metrics["distance_unit"] == "mm" and 0 <= metrics["mean"]["dice"] <= 1


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


def test_mmwhs_sifa_refuses_a_broken_release_one_line_each(tmp_path, capsys):
    raw = sifa_raw(tmp_path / "release")
    (raw / "train&val" / "mr_val_tfs" / "mr_val_slice0.tfrecords").write_bytes(b"not a record")
    (raw / "test_ct_image_n_labels" / "image_ct_1014.nii.gz").unlink()
    (raw / "test_ct_image_n_labels" / "gth_ct_1008.nii.gz").unlink()
    status = prepare_command(["mmwhs_sifa", "--raw", str(raw), "--out", str(tmp_path / "o")])  # the command line
    lines = capsys.readouterr().err.strip().splitlines()
    assert status == 1 and lines[-3:] == [
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


# --- the abdominal task: BTCV (CT, NIfTI) and CHAOS (T2-SPIR MR, DICOM series + PNG masks) ---------


def btcv_raw(root: Path) -> Path:
    """BTCV's ``RawData/Training/{img,label}/{img,label}<nnnn>.nii.gz``, cases 1-10 and 21-40;
    the 13 organ codes as stripes along the first axis (code c at indices 2c to 2c + 1)."""
    rng = np.random.default_rng(5)
    images, labels = root / "RawData" / "Training" / "img", root / "RawData" / "Training" / "label"
    images.mkdir(parents=True)
    labels.mkdir(parents=True)
    for n in (*range(1, 11), *range(21, 41)):
        code = np.zeros((32, 32, 3), np.uint8)
        for organ in range(1, 14):
            code[2 * organ : 2 * organ + 2] = organ
        affine = np.diag([0.8, 0.8, 2.5, 1.0])
        nib.save(
            nib.Nifti1Image(rng.integers(-1000, 1000, (32, 32, 3)).astype(np.int16), affine),
            images / f"img{n:04d}.nii.gz",
        )
        nib.save(nib.Nifti1Image(code, affine), labels / f"label{n:04d}.nii.gz")
    return root


def mr_slice(path: Path, pixels: np.ndarray, z: float, series: str, number: int) -> None:
    """One axial T2-SPIR slice as a DICOM file (pixels ``(rows, columns)``; LPS: +x left, +y posterior)."""
    pydicom = pytest.importorskip("pydicom")
    meta = pydicom.dataset.FileMetaDataset()
    meta.MediaStorageSOPClassUID = pydicom.uid.MRImageStorage
    meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.SeriesInstanceUID, ds.InstanceNumber = "MR", series, number
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.PixelSpacing, ds.SliceThickness = [1.5, 1.5], 6.0
    ds.ImageOrientationPatient, ds.ImagePositionPatient = [1, 0, 0, 0, 1, 0], [-24.0, -24.0, z]
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True)


CHAOS_PATIENTS = (1, 2, 3, 5, 8, 10, 13, 15, 19, 20, 21, 22, 31, 32, 33, 34, 36, 37, 38, 39)


def chaos_raw(root: Path) -> Path:
    """CHAOS's ``Train_Sets/MR/<patient>/T2SPIR/{DICOM_anon,Ground}/IMG-<series>-<k>.{dcm,png}``:
    three 32 x 32 slices, numbered head to feet (positions decreasing: the volume's order is the
    reverse of the names'), slice k's pixels at least 1000 k. Masks: liver (63) rows 0-3, right
    kidney (126) 8-11, left kidney (189) 16-19, spleen (252) 24-27 and, in slice 1 only, 28-31."""
    pydicom = pytest.importorskip("pydicom")
    rng = np.random.default_rng(6)
    for patient in CHAOS_PATIENTS:
        series, ground = root / "Train_Sets" / "MR" / str(patient) / "T2SPIR" / "DICOM_anon", None
        ground = series.parent / "Ground"
        series.mkdir(parents=True)
        ground.mkdir()
        uid = pydicom.uid.generate_uid()
        for k in range(1, 4):
            name = f"IMG-0004-{k:05d}"
            mr_slice(series / f"{name}.dcm", rng.integers(0, 500, (32, 32)) + 1000 * k, 10.0 - 6.0 * k, uid, k)
            mask = np.zeros((32, 32), np.uint8)
            mask[0:4], mask[8:12], mask[16:20], mask[24:28] = 63, 126, 189, 252
            if k == 1:
                mask[28:32] = 252
            Image.fromarray(mask).save(ground / f"{name}.png")
    return root


@pytest.fixture(scope="module")
def abdomen(tmp_path_factory):
    base = tmp_path_factory.mktemp("abdomen")
    btcv, chaos, out = btcv_raw(base / "BTCV"), chaos_raw(base / "CHAOS"), base / "abdomen"
    assert prepare("btcv", btcv, out, size=(32, 32)) == out / "btcv" / "part.json"  # CHAOS still to come
    assert prepare("chaos", chaos, out, size=(32, 32)) == out / "datalist.json"
    return base, out


def test_btcv_and_chaos_give_the_abdominal_task_with_sifas_test_cases(abdomen):
    _, out = abdomen
    datalist = load_datalist(out / "datalist.json", verify_images=True)
    reverse = load_datalist(out / "datalist_mr_to_ct.json", verify_images=True)
    assert (datalist["name"], reverse["name"]) == ("btcv-ct-to-chaos-mr", "chaos-mr-to-btcv-ct")
    assert datalist["labels"] == {
        "0": "background",
        "1": "liver",
        "2": "right_kidney",
        "3": "left_kidney",
        "4": "spleen",
    }
    assert [d["modality"] for d in datalist["domains"].values()] == ["CT", "MR (T2-SPIR)"]
    source, target = datalist["source"], datalist["target"]
    assert [Path(e["image"]).name for e in source["test"]] == [f"ct_{n:04d}.nii.gz" for n in (1, 9, 30, 32, 33, 39)]
    assert [Path(e["image"]).name for e in target["test"]] == [f"mr_{n:02d}.nii.gz" for n in (1, 13, 32, 38)]
    assert [len(source[s]) for s in ("training", "validation", "test")] == [22, 2, 6]
    assert [len(target[s]) for s in ("training", "validation", "test")] == [14, 2, 4]
    assert not any("label" in e for s in ("training", "validation") for e in target[s])
    assert all("label" in e for s in reverse["source"].values() for e in s)  # CHAOS labelled in the reverse task


def test_btcv_keeps_four_of_its_thirteen_organs(abdomen):
    _, out = abdomen
    labels = np.asarray(nib.load(out / "btcv" / "labels" / "ct_0001.nii.gz").dataobj)
    codes = {organ: labels[2 * organ, 0, 0] for organ in range(1, 14)}
    assert codes == {6: 1, 2: 2, 3: 3, 1: 4} | {o: 0 for o in (4, 5, 7, 8, 9, 10, 11, 12, 13)}


def test_chaos_and_btcv_a_second_run_writes_the_same_files(abdomen, tmp_path):
    base, out = abdomen
    prepare("chaos", base / "CHAOS", tmp_path, size=(32, 32))
    prepare("btcv", base / "BTCV", tmp_path, size=(32, 32))
    assert digest(tmp_path) == digest(out) and not list(tmp_path.rglob("*.tmp*"))


def test_chaos_series_are_ordered_by_position_and_oriented_ras_with_their_masks(abdomen):
    base, out = abdomen
    volume = nib.load(out / "chaos" / "images" / "mr_01.nii.gz")
    labels = np.asarray(nib.load(out / "chaos" / "labels" / "mr_01.nii.gz").dataobj)
    assert nib.aff2axcodes(volume.affine) == ("R", "A", "S") and volume.shape == (32, 32, 3)
    np.testing.assert_allclose(volume.affine[:3, :3], np.diag([1.5, 1.5, 6.0]))
    series = base / "CHAOS" / "Train_Sets" / "MR" / "1" / "T2SPIR" / "DICOM_anon"
    import pydicom

    lowest = pydicom.dcmread(series / "IMG-0004-00003.dcm").pixel_array  # z = -8: the first RAS slice
    # LPS rows (+y posterior) and columns (+x left) both run backwards in RAS.
    np.testing.assert_array_equal(np.asarray(volume.dataobj)[..., 0], lowest.T[::-1, ::-1].astype(np.float32))
    # Mask row r lands at RAS index 31 - r on the second axis: liver 28-31, kidneys 20-23 and 12-15, spleen 4-7.
    column = labels[5, :, 1]
    assert list(column[28:32]) == [1] * 4 and list(column[20:24]) == [2] * 4 and list(column[12:16]) == [3] * 4
    assert list(column[4:8]) == [4] * 4 and labels.dtype == np.uint8
    assert [int(labels[5, 0:4, s].max()) for s in range(3)] == [0, 0, 4]  # the marker follows slice IMG-...-00001


def test_chaos_missing_masks_and_unreadable_slices_are_named(tmp_path):
    raw = chaos_raw(tmp_path / "CHAOS")
    patient = raw / "Train_Sets" / "MR" / "13" / "T2SPIR"
    (patient / "Ground" / "IMG-0004-00002.png").unlink()
    (patient / "DICOM_anon" / "IMG-0004-00003.dcm").write_bytes(b"broken")
    (patient / "DICOM_anon" / "IMG-0004-00001.dcm").rename(patient / "DICOM_anon" / "IMG-0004-00009.dcm")
    with pytest.raises(RawLayoutError) as error:
        prepare("chaos", raw, tmp_path / "out")
    lines = str(error.value).splitlines()[1:]
    assert lines[0] == (
        f"{patient / 'Ground' / 'IMG-0004-00002.png'}: missing (the mask of {patient / 'DICOM_anon' / 'IMG-0004-00002.dcm'})."
    )
    assert lines[1].startswith(f"{patient / 'DICOM_anon' / 'IMG-0004-00003.dcm'}: cannot be read as a DICOM slice")
    assert (
        lines[2]
        == f"{patient / 'Ground' / 'IMG-0004-00009.png'}: missing (the mask of {patient / 'DICOM_anon' / 'IMG-0004-00009.dcm'})."
    )
    assert lines[3] == (
        f"{patient / 'Ground' / 'IMG-0004-00001.png'}: has no DICOM slice "
        f"({patient / 'DICOM_anon' / 'IMG-0004-00001.dcm'} is missing)."
    )
    assert len(lines) == 4 and not (tmp_path / "out").exists()


def test_global_local_alignment_trains_on_the_prepared_abdominal_data(abdomen, tmp_path):
    _, out = abdomen
    root = copy_bundle(tmp_path / "gla", BUNDLES / "global_local_alignment")
    log = bundle_run(
        root, "training", ["configs/train.yaml", "configs/quick.yaml"], "--datalist", str(out / "datalist.json")
    )
    assert "Saved the release weights" in log and not (root / "data").exists()


# --- the liver task: LiTS (CT) -> CHAOS T2-SPIR, liver only; 5 subject-wise folds ------------------


def lits_raw(root: Path) -> Path:
    """LiTS 2017: ``Training Batch 1/`` (0-27) and ``Training Batch 2/`` (28-130) holding
    ``volume-<n>.nii`` and ``segmentation-<n>.nii`` (liver 1, tumour 2)."""
    rng = np.random.default_rng(7)
    for n in range(131):
        folder = root / ("Training Batch 1" if n < 28 else "Training Batch 2")
        folder.mkdir(parents=True, exist_ok=True)
        labels = np.zeros((32, 32, 2), np.uint8)
        labels[4:20], labels[8:12] = 1, 2  # a tumour inside the liver
        image = rng.integers(-1000, 1000, (32, 32, 2)).astype(np.int16)
        nib.save(nib.Nifti1Image(image, np.diag([0.7, 0.7, 1.0, 1.0])), folder / f"volume-{n}.nii")
        nib.save(nib.Nifti1Image(labels, np.diag([0.7, 0.7, 1.0, 1.0])), folder / f"segmentation-{n}.nii")
    return root


@pytest.fixture(scope="module")
def liver(tmp_path_factory):
    base = tmp_path_factory.mktemp("liver")
    lits, out = lits_raw(base / "LiTS"), base / "liver"
    prepare("lits", lits, out, size=(32, 32))
    assert prepare("chaos_liver", chaos_raw(base / "CHAOS"), out, size=(32, 32)) == out / "datalist.json"
    return base, out


def test_lits_and_chaos_liver_give_the_liver_task_in_subject_wise_folds(liver):
    base, out = liver
    datalist = load_datalist(out / "datalist.json", verify_images=True)
    assert datalist["name"] == "lits-ct-to-chaos-mr-liver" and datalist["labels"] == {"0": "background", "1": "liver"}
    source, target = datalist["source"], datalist["target"]
    assert set(source) == {"training", "validation", "test"} and set(target) == {"training", "test"}
    # 131 subjects in 5 folds (27, 26, 26, 26, 26): fold 0 tests; 2 of the other 104 validate.
    assert [len(source["training"]), len(source["validation"]), len(source["test"])] == [102, 2, 27]
    assert [len(target["training"]), len(target["test"])] == [16, 4]
    assert not any("label" in e for e in target["training"]) and all("label" in e for e in target["test"])
    labels = np.asarray(nib.load(source["training"][0]["label"]).dataobj)
    assert set(np.unique(labels[4:20])) == {1} and set(np.unique(labels[20:])) == {0}  # tumour merged into liver
    mr = np.asarray(nib.load(target["test"][0]["label"]).dataobj)
    assert set(np.unique(mr)) == {0, 1} and (mr[5, 28:32] == 1).all()  # only the liver of CHAOS's four organs
    other = base / "fold1"
    prepare("lits", base / "LiTS", other, size=(32, 32), fold=1)
    held = {e["image"] for e in json.loads((other / "lits" / "part.json").read_text())["splits"]["test"]}
    assert len(held) == 26 and not held & {e["image"] for e in source["test"]}


def test_a_fold_outside_0_4_or_an_option_a_dataset_lacks_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"--fold must be 0-4, got 5"):
        prepare("lits", tmp_path, tmp_path / "out", fold=5)
    with pytest.raises(ValueError, match=r"--fold does not apply to btcv \(its options: size, seed\)"):
        prepare("btcv", tmp_path, tmp_path / "out", fold=1)
    assert not (tmp_path / "out").exists()


def test_dadr_trains_and_evaluates_on_the_prepared_liver_data(liver, tmp_path):
    _, out = liver
    root = copy_bundle(tmp_path / "dadr", BUNDLES / "dadr")
    configs = ["configs/train.yaml", "configs/quick.yaml"]
    log = bundle_run(root, "training", configs, "--datalist", str(out / "datalist.json"))
    assert "Saved the release weights" in log and not (root / "data").exists()
    bundle_run(root, "evaluating", [*configs, "configs/evaluate.yaml"], "--datalist", str(out / "datalist.json"))
    target = json.loads((root / "eval" / "metrics.json").read_text())
    source = json.loads((root / "eval" / "source" / "metrics.json").read_text())
    assert target["classes"] == ["liver"] and len(target["per_volume"]) == 4  # the CHAOS fold
    assert len(source["per_volume"]) == 27 and 0 <= target["mean"]["dice"] <= 1  # the LiTS fold (Table 2's CT)


# --- RegGAN's pairs: BraTS T1 -> T2 -----------------------------------------------------------------


def brats_raw(root: Path) -> Path:
    """BraTS 2018: ``MICCAI_BraTS_2018_Data_Training/{HGG,LGG}/<subject>/<subject>_{t1,t2,flair,seg}.nii.gz``,
    32 x 32 x 12 volumes whose brain (non-zero) fills slices 2-9 (and a speck in slice 10)."""
    rng = np.random.default_rng(8)
    for grade, count in (("HGG", 4), ("LGG", 2)):
        for k in range(count):
            subject = f"Brats18_TCIA0{k}_{100 + k + 10 * (grade == 'LGG')}_1"
            folder = root / "MICCAI_BraTS_2018_Data_Training" / grade / subject
            folder.mkdir(parents=True)
            for sequence in ("t1", "t2", "flair"):
                volume = np.zeros((32, 32, 12), np.int16)
                volume[4:28, 4:28, 2:10] = rng.integers(1, 800, (24, 24, 8))
                volume[0:2, 0:2, 10] = 5  # 4 of 1024 pixels: below the 10 % kept
                nib.save(
                    nib.Nifti1Image(volume, np.diag([1.0, 1.0, 1.0, 1.0])), folder / f"{subject}_{sequence}.nii.gz"
                )
            nib.save(nib.Nifti1Image(np.zeros((32, 32, 12), np.uint8), np.eye(4)), folder / f"{subject}_seg.nii.gz")
    return root


def test_brats_gives_registered_pairs_of_the_brains_slices(tmp_path):
    raw, out = brats_raw(tmp_path / "BraTS"), tmp_path / "brain"
    assert prepare("brats", raw, out, size=(32, 32)) == out / "datalist.json"
    datalist = load_datalist(out / "datalist.json", verify_images=True)
    assert datalist["name"] == "brats-t1-to-t2" and set(datalist) >= {"paired", "domains"}
    assert "source" not in datalist and [d["modality"] for d in datalist["domains"].values()] == ["T1", "T2"]
    paired = datalist["paired"]
    assert [len(paired[s]) for s in ("training", "validation", "test")] == [
        3,
        2,
        1,
    ]  # 6 subjects: 5 + 1, 2 of 5 validate
    subjects = [Path(e["image"]).name for s in paired.values() for e in s]
    assert len(set(subjects)) == 6
    entry = paired["test"][0]
    assert entry["reference"] == entry["target"] and Path(entry["target"]).parent.name == "t2"
    t1 = nib.load(entry["image"])
    raw_t1 = next(raw.rglob(Path(entry["image"]).name.replace(".nii.gz", "_t1.nii.gz")))
    assert t1.shape == (32, 32, 8) and t1.affine[2, 3] == 2.0  # slices 2-9 kept, the origin moved with them
    np.testing.assert_array_equal(np.asarray(t1.dataobj), np.asarray(nib.load(raw_t1).dataobj)[..., 2:10])
    again = tmp_path / "again"
    prepare("brats", raw, again, size=(32, 32))
    assert digest(again) == digest(out)  # the same subjects, slices and split


def test_reggan_trains_and_evaluates_on_the_prepared_brats_pairs(tmp_path):
    out = tmp_path / "brain"
    prepare("brats", brats_raw(tmp_path / "BraTS"), out, size=(32, 32))
    root = copy_bundle(tmp_path / "reggan", BUNDLES / "reggan")
    configs = ["configs/train.yaml", "configs/quick.yaml"]
    log = bundle_run(root, "training", configs, "--datalist", str(out / "datalist.json"))
    assert "Saved the release weights" in log and not (root / "data").exists()
    bundle_run(root, "evaluating", [*configs, "configs/evaluate.yaml"], "--datalist", str(out / "datalist.json"))
    metrics = json.loads((root / "eval" / "metrics.json").read_text())
    assert len(metrics["per_volume"]) == 1 and metrics["mean"]["psnr"] > 0  # the test subject's T2, scored
    registration = json.loads((root / "eval" / "registration" / "registration.json").read_text())
    assert (registration["pairs"], registration["slices"]) == (1, 8)  # R scored on each slice of the volume


def test_brats_refuses_a_missing_t2_and_a_subject_named_twice(tmp_path):
    raw = brats_raw(tmp_path / "BraTS")
    hgg = raw / "MICCAI_BraTS_2018_Data_Training" / "HGG"
    (hgg / "Brats18_TCIA01_101_1" / "Brats18_TCIA01_101_1_t2.nii.gz").unlink()
    copy = raw / "extra" / "Brats18_TCIA00_100_1"
    copy.mkdir(parents=True)
    for sequence in ("t1", "t2"):
        name = f"Brats18_TCIA00_100_1_{sequence}.nii.gz"
        (copy / name).write_bytes((hgg / "Brats18_TCIA00_100_1" / name).read_bytes())
    with pytest.raises(RawLayoutError) as error:
        prepare("brats", raw, tmp_path / "out")
    assert str(error.value).splitlines()[1:] == [
        f"{hgg / 'Brats18_TCIA01_101_1' / 'Brats18_TCIA01_101_1_t2.nii.gz'}: missing (the T2 volume of "
        "Brats18_TCIA01_101_1).",
        f"{copy / 'Brats18_TCIA00_100_1_t1.nii.gz'}: a second subject named Brats18_TCIA00_100_1 (the first: "
        f"{hgg / 'Brats18_TCIA00_100_1' / 'Brats18_TCIA00_100_1_t1.nii.gz'}).",
    ]
    assert not (tmp_path / "out").exists()
