"""Inference in MONAI's conventions: inputs from a datalist, a folder or a file; the slice-or-image
inferer; the writer that keeps the input's kind and geometry; the way back to a domain's intensities."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from common.data.io import LoadImageByTyped, intensity_transform, output_intensity_transform, write_nifti, write_png
from common.inference import SaveLikeInputd, SliceOrImageInferer, input_files, translate
from common.networks import ResnetGenerator


def test_volume_is_run_slice_by_slice_and_an_image_whole():
    network = ResnetGenerator(1, 1, ngf=4, n_blocks=1).eval()
    volume = torch.rand(1, 16, 16, 5) * 2 - 1
    translated = translate(network, volume, batch_size=2)
    assert translated.shape == volume.shape
    with torch.no_grad():
        torch.testing.assert_close(translated[..., 3], network(volume[None, ..., 3])[0], atol=1e-6, rtol=1e-5)
        image = volume[..., 0]
        torch.testing.assert_close(translate(network, image), network(image[None])[0])
    with pytest.raises(ValueError, match="got a tensor of shape \\(1, 16\\)"):
        SliceOrImageInferer()(torch.zeros(1, 16), network)


def test_output_intensity_inverts_a_range_and_gives_percentile_domains_0_255():
    x = {"pred": torch.tensor([[-1.0, 0.0, 1.0, 1.5]])}
    ct = output_intensity_transform("pred", {"range": [-250.0, 350.0]})(dict(x))["pred"]
    torch.testing.assert_close(torch.as_tensor(ct), torch.tensor([[-250.0, 50.0, 350.0, 350.0]]))  # clipped
    window = intensity_transform("pred", {"range": [-250.0, 350.0]})({"pred": ct})["pred"]
    torch.testing.assert_close(torch.as_tensor(window), torch.tensor([[-1.0, 0.0, 1.0, 1.0]]))  # the inverse
    mr = output_intensity_transform("pred", {"percentiles": [0.5, 99.5]})(dict(x))["pred"]
    torch.testing.assert_close(torch.as_tensor(mr), torch.tensor([[0.0, 127.5, 255.0, 255.0]]))
    with pytest.raises(ValueError, match="exactly one of"):
        output_intensity_transform("pred", {"window": [0, 1]})


def test_save_like_input_writes_png_for_2d_images_and_nifti_with_the_geometry_for_volumes(tmp_path):
    rgb = np.random.default_rng(0).uniform(size=(3, 16, 12)).astype(np.float32)
    write_png(tmp_path / "in" / "frame.png", rgb)
    spacing = (0.8, 0.9, 2.5)
    write_nifti(tmp_path / "in" / "ct.nii.gz", np.zeros((6, 5, 3), np.float32), spacing)
    load = LoadImageByTyped("image")
    frame = load({"image": str(tmp_path / "in" / "frame.png")})["image"]
    volume = load({"image": str(tmp_path / "in" / "ct.nii.gz")})["image"]
    save = SaveLikeInputd("pred", output_dir=tmp_path / "out", output_postfix="seg", output_dtype=np.uint8)
    labels = MetaTensor(torch.arange(6 * 5 * 3).reshape(1, 6, 5, 3) % 5, meta=volume.meta)
    save({"pred": labels})
    written = nib.load(tmp_path / "out" / "ct_seg.nii.gz")
    assert written.get_data_dtype() == np.uint8
    np.testing.assert_array_equal(np.asarray(written.dataobj), labels[0].numpy())
    np.testing.assert_allclose(written.header.get_zooms(), spacing)
    # 8-bit PNG: values rounded and clipped; read back with the project's reader, the same array.
    translated = MetaTensor(torch.as_tensor(np.asarray(frame)) + 0.4, meta=frame.meta)
    translated[0, 0, 0] = 300.0
    SaveLikeInputd("pred", output_dir=tmp_path / "out", output_postfix="trans")({"pred": translated})
    back = load({"image": str(tmp_path / "out" / "frame_trans.png")})["image"]
    expected = np.clip(np.round(np.asarray(translated)), 0, 255)
    np.testing.assert_array_equal(np.asarray(back), expected)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["ct_seg.nii.gz", "frame_trans.png"]
    with pytest.raises(ValueError, match="carries no input file name"):
        save({"pred": torch.zeros(1, 4, 4)})


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
