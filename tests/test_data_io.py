"""Readers (NIfTI, DICOM file and series, PNG/JPEG/TIFF), writers and intensity normalisation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from common.data.io import LoadImageByTyped, intensity_transform, reader_for, write_nifti, write_png


@pytest.mark.parametrize(
    "name,reader",
    [
        ("a.nii", "NibabelReader"),
        ("a.nii.gz", "NibabelReader"),
        ("a.dcm", "PydicomReader"),
        ("a.png", "PILReader"),
        ("a.JPG", "PILReader"),
        ("a.tiff", "PILReader"),
    ],
)
def test_reader_for(tmp_path, name, reader):
    (tmp_path / name).write_bytes(b"")
    assert reader_for(tmp_path / name) == reader
    assert reader_for(tmp_path) == "ITKReader"  # a folder is a DICOM series


def test_reader_for_errors(tmp_path):
    with pytest.raises(ValueError, match="Image file not found: .*missing.nii.gz"):
        reader_for(tmp_path / "missing.nii.gz")
    (tmp_path / "a.mha").write_bytes(b"")
    with pytest.raises(ValueError, match=r"Unsupported image type: .*a.mha \(expected NIfTI"):
        reader_for(tmp_path / "a.mha")


def test_nifti_round_trip_keeps_values_and_spacing(tmp_path):
    volume = np.random.default_rng(0).normal(size=(8, 6, 4)).astype(np.float32)
    write_nifti(tmp_path / "v.nii.gz", volume, (1.5, 0.8, 3.0))
    loaded = LoadImageByTyped("image")({"image": str(tmp_path / "v.nii.gz")})["image"]
    assert loaded.shape == (1, 8, 6, 4)
    np.testing.assert_array_equal(np.asarray(loaded[0]), volume)
    np.testing.assert_allclose(np.asarray(loaded.pixdim[:3]), (1.5, 0.8, 3.0))


def test_png_round_trip_rgb_and_labels(tmp_path):
    rgb = np.random.default_rng(1).uniform(size=(3, 12, 10)).astype(np.float32)
    label = (np.arange(120).reshape(12, 10) % 3).astype(np.uint8)
    write_png(tmp_path / "i.png", rgb)
    write_png(tmp_path / "l.png", label)
    loaded = LoadImageByTyped(["image", "label"])({"image": str(tmp_path / "i.png"), "label": str(tmp_path / "l.png")})
    assert loaded["image"].shape == (3, 12, 10) and loaded["label"].shape == (1, 12, 10)
    np.testing.assert_array_equal(np.asarray(loaded["image"]), np.round(rgb * 255))
    np.testing.assert_array_equal(np.asarray(loaded["label"][0]), label)


@pytest.mark.parametrize("suffix", [".jpg", ".tif"])
def test_jpeg_and_tiff(tmp_path, suffix):
    pixels = np.full((9, 7, 3), 200, np.uint8)
    Image.fromarray(pixels).save(tmp_path / f"i{suffix}")
    loaded = LoadImageByTyped("image")({"image": str(tmp_path / f"i{suffix}")})["image"]
    assert loaded.shape == (3, 7, 9)
    assert abs(float(loaded.mean()) - 200) < 2


def test_single_dicom_file_through_pydicom():
    pydicom = pytest.importorskip("pydicom")
    path = pydicom.data.get_testdata_file("CT_small.dcm")
    if path is None:
        pytest.skip("pydicom's bundled test files are absent")
    reference = pydicom.dcmread(path)
    loaded = LoadImageByTyped("image")({"image": path})["image"]
    assert loaded.shape[:3] == (1, 128, 128)
    hounsfield = reference.pixel_array * float(reference.RescaleSlope) + float(reference.RescaleIntercept)
    np.testing.assert_allclose(np.asarray(loaded).squeeze(), hounsfield.T, atol=1e-3)


def test_dicom_series_through_itk(tmp_path):
    pydicom = pytest.importorskip("pydicom")
    path = pydicom.data.get_testdata_file("CT_small.dcm")
    if path is None:
        pytest.skip("pydicom's bundled test files are absent")
    series = tmp_path / "series"
    series.mkdir()
    for index in range(4):  # four slices of one series, 5 mm apart
        slice_ = pydicom.dcmread(path)
        slice_.InstanceNumber = index + 1
        slice_.SOPInstanceUID = pydicom.uid.generate_uid()
        slice_.ImagePositionPatient = [-158.0, -179.0, -75.0 + 5.0 * index]
        slice_.SliceLocation = -75.0 + 5.0 * index
        slice_.save_as(series / f"{index}.dcm")
    loaded = LoadImageByTyped("image")({"image": str(series)})["image"]
    assert loaded.shape == (1, 128, 128, 4)
    assert float(loaded.pixdim[2]) == pytest.approx(5.0)


def test_unreadable_image_names_the_key_and_file(tmp_path):
    (tmp_path / "broken.nii.gz").write_bytes(b"not an image")
    with pytest.raises(ValueError, match=r"Could not read `label` image .*broken.nii.gz"):
        LoadImageByTyped("label")({"label": str(tmp_path / "broken.nii.gz")})


def test_intensity_transforms():
    image = torch.tensor([[-500.0, -250.0, 50.0, 350.0, 900.0]])
    scaled = intensity_transform("image", {"range": [-250, 350]})({"image": image})["image"]
    torch.testing.assert_close(torch.as_tensor(scaled), torch.tensor([[-1.0, -1.0, 0.0, 1.0, 1.0]]))
    ramp = torch.arange(101.0)[None]
    scaled = intensity_transform("image", {"percentiles": [10, 90]})({"image": ramp})["image"]
    assert float(scaled[0, 10]) == pytest.approx(-1) and float(scaled[0, 50]) == pytest.approx(0)
    assert float(scaled.min()) == -1 and float(scaled.max()) == 1
    with pytest.raises(ValueError, match="exactly one of 'range' or 'percentiles'"):
        intensity_transform("image", {"range": [0, 1], "percentiles": [1, 99]})
    with pytest.raises(ValueError, match=r"`intensity.range` must be two increasing numbers"):
        intensity_transform("image", {"range": [1, 0]})


def test_image_stem():
    from common.data.io import image_stem

    assert [image_stem(p) for p in ("a/ct.nii.gz", "b.PNG", "series_dir", "x.nii", "s.dcm")] == [
        "ct",
        "b",
        "series_dir",
        "x",
        "s",
    ]
