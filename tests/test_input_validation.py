"""Bad input is reported before any work starts: every file of the splits a run reads is checked
once, and the run stops with one line per bad file naming it and what was expected; nothing is
trained or written, and that message is the last thing the user sees."""

from __future__ import annotations

import gzip
import json
import re
import shutil
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from bundle_helpers import ENV, bundle_command, copy_bundle
from PIL import Image

from common.data.datalist import DatalistError, check_images, load_datalist
from common.data.io import write_nifti
from common.networks import ResnetGenerator

BUNDLES = Path(__file__).resolve().parents[1] / "bundles"


def volume(path: Path) -> np.ndarray:
    return np.asarray(nib.load(path).dataobj)


@pytest.fixture
def broken(synthetic, tmp_path):
    """A copy of cyclegan's quick dataset (abdomen, 32 pixels, 5 subjects) with one problem in
    each of eight files, and a corrupt target label, which training must never read.

    Returns:
        (datalist path, {file name relative to the data folder: the expected problem (regex)}).
    """
    data = tmp_path / "data"
    shutil.copytree(synthetic("abdomen", size=32, subjects=5).parent, data)
    path = data / "datalist.json"
    shutil.copytree(data, tmp_path / "pristine")  # the files before any was broken
    datalist = json.loads(path.read_text())
    source, target = datalist["source"], datalist["target"]
    shape = volume(data / source["training"][0]["image"]).shape
    expected = {}

    def problem(entry: dict, key: str, regex: str) -> Path:
        expected[entry[key]] = regex
        return data / entry[key]

    problem(source["training"][0], "image", r"training_000.nii.gz is empty \(0 bytes\)\.$")
    (data / source["training"][0]["image"]).write_bytes(b"")
    file = problem(source["training"][1], "image", r"cannot be read \(\w+: .+\)\.$")
    file.write_bytes(file.read_bytes()[: file.stat().st_size // 2])  # truncated
    label = volume(data / source["training"][2]["label"])
    write_nifti(
        problem(source["training"][2], "label", r"has values \[255\] that are not declared in `labels`"),
        (label > 0).astype(np.uint8) * 255,  # a mask saved as 0/255
        (1.0, 1.0, 1.0),
    )
    small = (30, 30, shape[2])  # the generator halves the size twice: 30 -> 15 -> 8 -> 32
    write_nifti(
        problem(source["validation"][0], "image", r"has the in-plane size 30x30; the networks need multiples of 4 "),
        np.zeros(small, np.float32),
        (1.0, 1.0, 1.0),
    )
    write_nifti(data / source["validation"][0]["label"], np.zeros(small, np.uint8), (1.0, 1.0, 1.0))
    nib.save(
        nib.Nifti1Image(np.zeros((*shape, 2), np.float32), np.eye(4)),
        problem(target["training"][0], "image", r"has 2 channels, expected 1"),  # a 4D volume
    )
    target["training"][1]["image"] = "target/images/photo.png"
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(
        problem(target["training"][1], "image", r"has 2 spatial dimensions, expected 3 \(tensor_dim\)")
    )
    problem(target["training"][2], "image", r"is not gzip-compressed, as its name \(.gz\) says it is\.$").write_text(
        "not a NIfTI file"
    )
    nan = volume(data / target["validation"][0]["image"]).astype(np.float32)
    nan[4, 4, 2] = np.nan
    write_nifti(problem(target["validation"][0], "image", r"contains NaN or infinite values"), nan, (1.0, 1.0, 1.0))
    with gzip.open(data / target["test"][0]["label"], "wb") as file:  # read by evaluation only
        file.write(b"corrupt target label")
    path.write_text(json.dumps(datalist))
    return path, expected


def test_training_checks_every_file_it_reads_and_reports_each_bad_one(broken):
    path, expected = broken
    datalist = load_datalist(path)
    generator = ResnetGenerator(1, 1, ngf=8, n_blocks=2)
    with pytest.raises(DatalistError) as error:
        check_images(datalist, path, ("training", "validation"), ("source", "paired"), generator, "source")
    header, *lines = str(error.value).splitlines()
    assert header == f"{len(expected)} problem(s) in {path}, one per line (nothing was run):"
    assert len(lines) == len(expected)
    for name, regex in expected.items():
        line = next(line for line in lines if str(path.parent / name) in line)
        assert re.search(regex, line), line
    assert not any(".test[" in line for line in lines)  # the test split (and its target labels) is not read


def test_a_network_that_keeps_every_size_passes_and_a_good_datalist_passes(synthetic):
    path = synthetic("abdomen", size=32, subjects=5)
    check_images(load_datalist(path), path, network=ResnetGenerator(1, 1, ngf=8, n_blocks=2), network_domain="source")


def train_cyclegan(root: Path, datalist: Path) -> subprocess.CompletedProcess:
    configs = ["configs/train.yaml", "configs/quick.yaml"]
    command = bundle_command("training", configs, "--datalist", str(datalist))
    return subprocess.run(command, cwd=root, capture_output=True, text=True, env=ENV)


def test_training_on_bad_input_stops_before_anything_is_written(broken, tmp_path):
    """The files are checked before anything is built (every problem but the size); the size
    once the networks are built (their random initialisation stays as it was), before training."""
    path, expected = broken
    root = copy_bundle(tmp_path / "bundle", BUNDLES / "cyclegan")
    before = sorted(p.relative_to(root) for p in root.rglob("*"))
    size = [name for name, regex in expected.items() if "in-plane size" in regex]
    result = train_cyclegan(root, path)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()[-len(expected) :]
    assert lines[0] == f"DatalistError: {len(expected) - 1} problem(s) in {path}, one per line (nothing was run):"
    assert sorted(re.match(r"\w+\.\w+\[\d\]\.\w+: (\S+) ", line).group(1) for line in lines[1:]) == sorted(
        str(path.parent / name) for name in expected if name not in size
    )
    assert sorted(p.relative_to(root) for p in root.rglob("*")) == before  # no models, no eval, no data
    # The same datalist with the seven files repaired: the size alone.
    data = json.loads(path.read_text())
    pristine = path.parent.parent / "pristine"
    good = json.loads((pristine / "datalist.json").read_text())
    for section, split in (("source", "training"), ("target", "training"), ("target", "validation")):
        data[section][split] = [{k: str(pristine / v) for k, v in e.items()} for e in good[section][split]]
    path.write_text(json.dumps(data))
    result = train_cyclegan(root, path)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-2:] == [
        f"DatalistError: 1 problem(s) in {path}, one per line (nothing was run):",
        f"source.validation[0].image: {path.parent / size[0]} has the in-plane size 30x30; the networks need "
        "multiples of 4 (e.g. 32x32): resample, crop or pad it.",
    ]
    # Building the trainers opened TensorBoard's event files; nothing else was written.
    written = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.relative_to(root) not in before)
    assert [w for w in written if not w.startswith("eval/tensorboard/events.")] == ["eval", "eval/tensorboard"]


@pytest.fixture
def inputs(tmp_path):
    """A folder of inference inputs for a 1-channel bundle: three good volumes (two of them with
    one name in different folders, so their outputs collide), and one problem in each of five files.

    Returns:
        (the input paths, {input path: the expected problem (regex)}).
    """
    folder = tmp_path / "inputs"
    (folder / "a").mkdir(parents=True)
    (folder / "b").mkdir()
    good = np.random.default_rng(0).uniform(-200, 300, (32, 32, 4)).astype(np.float32)
    for name in ("good.nii.gz", "a/scan.nii.gz", "b/scan.nii.gz"):
        write_nifti(folder / name, good, (1.0, 1.0, 1.0))
    (folder / "empty.nii.gz").write_bytes(b"")
    nan = good.copy()
    nan[0, 0, 0] = np.nan
    write_nifti(folder / "nan.nii.gz", nan, (1.0, 1.0, 1.0))
    write_nifti(folder / "small.nii.gz", good[:30, :30], (1.0, 1.0, 1.0))
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(folder / "photo.png")
    nib.save(nib.Nifti1Image(np.zeros((32, 32, 4, 2), np.float32), np.eye(4)), folder / "series.nii.gz")
    expected = {
        folder / "b/scan.nii.gz": r"and .*a/scan.nii.gz would both be written to .*scan_trans.nii.gz; rename one\.$",
        folder / "empty.nii.gz": r"is empty \(0 bytes\)\.$",
        folder / "nan.nii.gz": r"contains NaN or infinite values",
        folder / "small.nii.gz": r"has the in-plane size 30x30; the networks need multiples of 4 \(e.g. 32x32\)",
        folder / "photo.png": r"has 3 channels, expected 1\.$",
        folder / "series.nii.gz": r"has 2 channels, expected 1\.$",
    }
    files = [str(folder / n) for n in ("a/scan.nii.gz", "b/scan.nii.gz", "good.nii.gz")] + [
        str(p) for p in sorted(folder.glob("*.*")) if p.name != "good.nii.gz"
    ]
    return files, expected


def test_inference_checks_every_input_first(inputs, tmp_path, caplog):
    from common.inference import check_inputs

    files, expected = inputs
    network = ResnetGenerator(1, 1, ngf=8, n_blocks=2)
    with pytest.raises(ValueError) as error:
        check_inputs(files, 1, tmp_path / "out", "trans", network=network, intensity={"range": [-250, 350]})
    header, *lines = str(error.value).splitlines()
    assert header == f"{len(expected)} problem(s) with the inference inputs, one per line (nothing was written):"
    assert len(lines) == len(expected)
    for file, regex in expected.items():
        line = next(line for line in lines if line.startswith(str(file)))
        assert re.search(regex, line), line
    good = [f for f in files if Path(f).name in ("good.nii.gz", "scan.nii.gz")][1:]
    assert check_inputs(good, 1, tmp_path / "out", "trans", network=network) == good
    assert not (tmp_path / "out").exists() and "lie inside the intensity range" not in caplog.text


def test_an_input_that_the_intensity_range_clips_to_a_constant_is_named(tmp_path, caplog):
    from common.inference import check_inputs

    mr = np.random.default_rng(0).integers(0, 2000, (32, 32, 4)).astype(np.float32)  # an MR series, raw values
    write_nifti(tmp_path / "mr.nii.gz", mr, (1.0, 1.0, 1.0))
    check_inputs([str(tmp_path / "mr.nii.gz")], 1, tmp_path / "out", "trans", intensity={"range": [0.0, 1.0]})
    assert f"{tmp_path / 'mr.nii.gz'}: only 0.0 % of its values lie inside the intensity range [0, 1]" in caplog.text
    assert "set --intensity" in caplog.text and "its values span 0 to 1999" in caplog.text


def test_a_non_finite_output_is_never_written(tmp_path):
    import torch
    from monai.data import MetaTensor

    from common.inference import SaveLikeInputd

    output = MetaTensor(torch.full((1, 4, 4, 2), float("nan")), meta={"filename_or_obj": str(tmp_path / "x.nii.gz")})
    with pytest.raises(ValueError, match=r"The output for .*x.nii.gz holds NaN or infinite values; it was not written"):
        SaveLikeInputd("pred", tmp_path / "out", "trans")({"pred": output})
    assert not (tmp_path / "out").exists()


def test_inference_on_bad_inputs_stops_before_anything_is_written(inputs, tmp_path):
    files, expected = inputs
    root = copy_bundle(tmp_path / "bundle", BUNDLES / "cyclegan")
    configs = ["configs/inference.yaml"]
    output = tmp_path / "out"
    folder = tmp_path / "folder"  # the folder mode: every image in it, every sub-folder a DICOM series
    folder.mkdir()
    for file in files:
        if "scan" not in file:
            shutil.copy(file, folder)
    (folder / "not_dicom").mkdir()
    (folder / "not_dicom" / "notes.txt").write_text("no DICOM here")
    expected = {
        **{Path(f).name: r for f, r in expected.items() if "scan" not in str(f)},
        "not_dicom": "is a folder, read as a DICOM series, but holds no readable DICOM series",
    }
    result = subprocess.run(
        bundle_command(None, configs, "--input", str(folder), "--output_dir", str(output)),
        cwd=root,
        capture_output=True,
        text=True,
        env=ENV,
    )
    assert result.returncode == 1
    header, *lines = result.stderr.strip().splitlines()[-len(expected) - 1 :]
    assert header == (
        f"ValueError: {len(expected)} problem(s) with the inference inputs, one per line (nothing was written):"
    )
    for name, regex in expected.items():
        line = next(line for line in lines if line.startswith(str(folder / name) + " "))
        assert re.search(regex, line), line
    assert not output.exists()
