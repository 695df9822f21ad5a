"""Inference on files: inputs from a datalist, a folder or a file; 2D PNGs and 3D NIfTI volumes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from common.data.io import LoadImageByTyped, intensity_transform, write_nifti, write_png
from common.inference import input_files, translate, translate_files
from common.networks import ResnetGenerator


def test_rgb_png_translation_maps_minus_one_one_to_bytes(tmp_path):
    torch.manual_seed(0)
    network = ResnetGenerator(3, 3, ngf=4, n_blocks=1).eval()
    image = np.random.default_rng(0).uniform(size=(3, 16, 12)).astype(np.float32)
    write_png(tmp_path / "in" / "frame.png", image)
    written = translate_files(network, input_files(tmp_path / "in"), tmp_path / "out", {"range": [0, 255]})
    assert [p.endswith("frame_trans.png") for p in written] == [True]
    loaded = LoadImageByTyped("image")({"image": written[0]})["image"]
    source = intensity_transform("image", {"range": [0, 255]})(
        LoadImageByTyped("image")({"image": str(tmp_path / "in" / "frame.png")})
    )["image"]
    expected = (translate(network, source) + 1) / 2 * 255
    assert loaded.shape == (3, 16, 12)
    np.testing.assert_allclose(np.asarray(loaded), np.asarray(expected), atol=1.0)  # 8-bit rounding


def test_volume_is_translated_slice_by_slice(tmp_path):
    network = ResnetGenerator(1, 1, ngf=4, n_blocks=1).eval()
    volume = torch.rand(1, 16, 16, 5) * 2 - 1
    translated = translate(network, volume)
    assert translated.shape == volume.shape
    with torch.no_grad():
        torch.testing.assert_close(translated[..., 3], network(volume[None, ..., 3])[0], atol=1e-6, rtol=1e-5)


def test_input_files(tmp_path, synthetic):
    datalist = synthetic("abdomen", size=24, subjects=4)
    assert [p.endswith("test_000.nii.gz") for p in input_files(datalist)] == [True]
    write_nifti(tmp_path / "b.nii.gz", np.zeros((4, 4, 2), np.float32), (1, 1, 1))
    write_nifti(tmp_path / "a.nii.gz", np.zeros((4, 4, 2), np.float32), (1, 1, 1))
    (tmp_path / "notes.txt").write_text("not an image")
    assert [p.split("/")[-1] for p in input_files(tmp_path)] == ["a.nii.gz", "b.nii.gz"]
    assert input_files(tmp_path / "a.nii.gz") == [str(tmp_path / "a.nii.gz")]
    with pytest.raises(ValueError, match="Inference input not found"):
        input_files(tmp_path / "missing")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="No image in"):
        input_files(empty)
