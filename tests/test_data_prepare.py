"""Preparation of the public datasets (issue 20), on tiny raw trees written in each dataset's
layout, file formats and naming: the raw layout is checked (one line per missing or unreadable
file, nothing written), the datalist has the paper's splits and label mapping, a second run
writes the same files, and a bundle trains on the prepared output."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from bundle_helpers import ENV, bundle_run, copy_bundle
from PIL import Image

from common.data.datalist import load_datalist
from common.data.prepare import RawLayoutError, prepare

BUNDLES = Path(__file__).resolve().parents[1] / "bundles"


def frame(rng: np.random.Generator, size: tuple[int, int]) -> tuple[Image.Image, Image.Image]:
    """An RGB frame (W x H) and its 0/255 polyp mask."""
    width, height = size
    pixels = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    mask = np.zeros((height, width), np.uint8)
    mask[height // 4 : height // 2, width // 3 : width // 2] = 255
    return Image.fromarray(pixels), Image.fromarray(mask)


def cvc_clinic_raw(root: Path, frames: int = 10) -> Path:
    """CVC-ClinicDB's TIFF release: ``Original/<n>.tif``, ``Ground Truth/<n>.tif`` (384 x 288 there)."""
    rng = np.random.default_rng(0)
    for folder in ("Original", "Ground Truth"):
        (root / folder).mkdir(parents=True)
    for n in range(1, frames + 1):
        image, mask = frame(rng, (48, 36))
        image.save(root / "Original" / f"{n}.tif")
        mask.save(root / "Ground Truth" / f"{n}.tif")
    return root


def etis_larib_raw(root: Path, frames: int = 4, png: bool = False) -> Path:
    """ETIS-LaribPolypDB: ``ETIS-LaribPolypDB/<n>.tif`` and ``Ground Truth/p<n>.tif`` (the
    challenge release, 1225 x 966 there), or ``images/<n>.png`` and ``masks/<n>.png``."""
    rng = np.random.default_rng(1)
    frames_dir, masks_dir = ("images", "masks") if png else ("ETIS-LaribPolypDB", "Ground Truth")
    for folder in (frames_dir, masks_dir):
        (root / folder).mkdir(parents=True)
    for n in range(1, frames + 1):
        image, mask = frame(rng, (61, 48))
        if png:
            image.save(root / frames_dir / f"{n}.png")
            mask.save(root / masks_dir / f"{n}.png")
        else:
            image.save(root / frames_dir / f"{n}.tif")
            mask.save(root / masks_dir / f"p{n}.tif")
    return root


def digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*.*")}


@pytest.fixture(scope="module")
def polyp(tmp_path_factory):
    """The polyp task prepared from both raw trees at 32 x 32 (quick.yaml's size)."""
    base = tmp_path_factory.mktemp("polyp")
    cvc, etis, out = cvc_clinic_raw(base / "CVC-ClinicDB"), etis_larib_raw(base / "ETIS"), base / "prepared"
    part = prepare("cvc_clinic", cvc, out, size=(32, 32))
    assert part == out / "cvc_clinic" / "part.json" and not (out / "datalist.json").exists()  # the target is missing
    datalist = prepare("etis_larib", etis, out, size=(32, 32))
    assert datalist == out / "datalist.json"
    return base, out


def test_the_polyp_datalist_has_the_papers_splits(polyp):
    _, out = polyp
    datalist = load_datalist(out / "datalist.json", verify_images=True)
    assert datalist["tensor_dim"] == 2 and datalist["labels"] == {"0": "background", "1": "polyp"}
    assert datalist["domains"]["source"] == {
        "modality": "colonoscopy, CVC-ClinicDB",
        "channels": 3,
        "intensity": {"range": [0.0, 255.0]},
    }
    source, target = datalist["source"], datalist["target"]
    # CVC 80:20 by frame number: frames 1-8 train, 9-10 validate; ETIS: every frame, unlabelled / labelled.
    assert [Path(e["image"]).name for e in source["training"]] == [f"{n:03d}.png" for n in range(1, 9)]
    assert [Path(e["image"]).name for e in source["validation"]] == ["009.png", "010.png"]
    assert set(target) == {"training", "test"} and not any("label" in e for e in target["training"])
    assert [Path(e["label"]).name for e in target["test"]] == ["001.png", "002.png", "003.png", "004.png"]
    label = np.asarray(Image.open(source["training"][0]["label"]))
    image = Image.open(source["training"][0]["image"])
    assert (
        label.shape == (32, 32) and set(np.unique(label)) == {0, 1} and image.mode == "RGB" and image.size == (32, 32)
    )


def test_a_second_run_writes_the_same_files(polyp):
    base, out = polyp
    before = digest(out)
    prepare("cvc_clinic", base / "CVC-ClinicDB", out, size=(32, 32))
    prepare("etis_larib", base / "ETIS", out, size=(32, 32))
    assert digest(out) == before and not list(out.rglob("*.tmp"))


def test_the_png_release_of_etis_larib_gives_the_same_datalist(polyp, tmp_path):
    base, out = polyp
    other = tmp_path / "prepared"
    prepare("cvc_clinic", base / "CVC-ClinicDB", other, size=(32, 32))
    prepare("etis_larib", etis_larib_raw(tmp_path / "ETIS", png=True), other, size=(32, 32))
    assert (other / "datalist.json").read_text() == (out / "datalist.json").read_text()


def test_a_raw_tree_with_missing_or_unreadable_files_is_refused_one_line_each(tmp_path):
    raw = cvc_clinic_raw(tmp_path / "CVC-ClinicDB")
    (raw / "Ground Truth" / "3.tif").unlink()
    (raw / "Original" / "7.tif").unlink()
    (raw / "Original" / "5.tif").write_bytes(b"not a TIFF")
    with pytest.raises(RawLayoutError) as error:
        prepare("cvc_clinic", raw, tmp_path / "out")
    header, *lines = str(error.value).splitlines()
    assert header == f"3 problem(s) with the cvc_clinic download in {raw}, one per line (nothing was written):"
    assert lines[:2] == [
        f"{raw / 'Ground Truth' / '3.tif'}: missing (the mask of {raw / 'Original' / '3.tif'}).",
        f"{raw / 'Original' / '7.tif'}: missing (the frame of {raw / 'Ground Truth' / '7.tif'}).",
    ]
    assert lines[2].startswith(f"{raw / 'Original' / '5.tif'}: cannot be read as an RGB image (UnidentifiedImageError")
    assert not (tmp_path / "out").exists()
    with pytest.raises(RawLayoutError, match=r"Original or .*PNG/Original: missing \(the folder of the frames\)"):
        prepare("cvc_clinic", tmp_path, tmp_path / "out")


def test_the_command_line_prints_the_problems_and_exits_1(tmp_path):
    raw = etis_larib_raw(tmp_path / "ETIS")
    (raw / "Ground Truth" / "p2.tif").unlink()
    command = [
        sys.executable,
        "-m",
        "common.data.prepare",
        "etis_larib",
        "--raw",
        str(raw),
        "--out",
        str(tmp_path / "o"),
    ]
    result = subprocess.run(command, capture_output=True, text=True, env=ENV)
    assert result.returncode == 1 and result.stderr.strip().splitlines()[-1] == (
        f"{raw / 'Ground Truth' / 'p2.tif'}: missing (the mask of {raw / 'ETIS-LaribPolypDB' / '2.tif'})."
    )
    assert not (tmp_path / "o").exists()


def test_mi2gan_trains_and_evaluates_on_the_prepared_polyp_data(polyp, tmp_path):
    _, out = polyp
    root = copy_bundle(tmp_path / "mi2gan", BUNDLES / "mi2gan")
    configs = ["configs/train.yaml", "configs/quick.yaml"]
    log = bundle_run(root, "training", configs, "--datalist", str(out / "datalist.json"))
    assert "Saved the release weights" in log and not (root / "data").exists()  # no synthetic data generated
    bundle_run(root, "evaluating", [*configs, "configs/evaluate.yaml"], "--datalist", str(out / "datalist.json"))
    metrics = json.loads((root / "eval" / "metrics.json").read_text())
    assert [Path(v["volume"]).name for v in metrics["per_volume"]] == ["001.png", "002.png", "003.png", "004.png"]
    assert metrics["classes"] == ["polyp"] and 0 <= metrics["mean"]["dice"] <= 1  # the ETIS test frames, scored
    critic = json.loads((root / "eval" / "critic" / "critic.json").read_text())
    assert critic["split"] == "test" and critic["real_split"] == "validation"  # CVC has no test split


def fundus(rng: np.random.Generator, size: int) -> tuple[Image.Image, Image.Image]:
    """A fundus photograph and its REFUGE mask: background 255, optic disc 128, optic cup 0."""
    pixels = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
    y, x = np.mgrid[:size, :size]
    radius = np.hypot(y - size / 2, x - size / 2)
    mask = np.where(radius < size / 8, 0, np.where(radius < size / 4, 128, 255)).astype(np.uint8)
    return Image.fromarray(pixels), Image.fromarray(mask)


def refuge_raw(root: Path) -> Path:
    """REFUGE's release: Training400 (Zeiss, 2124 x 2056 there; 2 glaucoma and 8 other images here)
    with Annotation-Training400/Disc_Cup_Masks, REFUGE-Validation400 (Canon, 1634 x 1634 there)
    with REFUGE-Validation400-GT/Disc_Cup_Masks."""
    rng = np.random.default_rng(2)
    for grade, prefix, count in (("Glaucoma", "g", 2), ("Non-Glaucoma", "n", 8)):
        for folder in (root / "Training400" / grade, root / "Annotation-Training400" / "Disc_Cup_Masks" / grade):
            folder.mkdir(parents=True)
        for n in range(1, count + 1):
            image, mask = fundus(rng, 64)
            image.save(root / "Training400" / grade / f"{prefix}{n:04d}.jpg")
            mask.save(root / "Annotation-Training400" / "Disc_Cup_Masks" / grade / f"{prefix}{n:04d}.bmp")
    (root / "REFUGE-Validation400").mkdir()
    (root / "REFUGE-Validation400-GT" / "Disc_Cup_Masks").mkdir(parents=True)
    for n in range(1, 4):
        image, mask = fundus(rng, 48)
        image.save(root / "REFUGE-Validation400" / f"V{n:04d}.jpg")
        mask.save(root / "REFUGE-Validation400-GT" / "Disc_Cup_Masks" / f"V{n:04d}.bmp")
    return root


def test_refuge_gives_the_fundus_task_with_its_label_coding(tmp_path):
    raw, out = refuge_raw(tmp_path / "REFUGE"), tmp_path / "fundus"
    assert prepare("refuge", raw, out, size=(32, 32)) == out / "datalist.json"
    datalist = load_datalist(out / "datalist.json", verify_images=True)
    assert datalist["name"] == "refuge-zeiss-to-canon"
    assert datalist["labels"] == {"0": "background", "1": "optic_disc", "2": "optic_cup"}
    assert datalist["regions"] == {"optic_disc": [1, 2], "optic_cup": [2]}  # the paper's disc contains the cup
    assert [d["modality"] for d in datalist["domains"].values()] == ["fundus, Zeiss Visucam 500", "fundus, Canon CR-2"]
    source, target = datalist["source"], datalist["target"]
    # 80:20 within each grade: both glaucoma images and 6 of 8 others train, 2 others validate.
    names = [Path(e["image"]).stem for e in source["training"]]
    assert len(names) == 8 and {"g0001", "g0002"} <= set(names)
    assert len(source["validation"]) == 2 and all(Path(e["image"]).stem.startswith("n") for e in source["validation"])
    assert [Path(e["label"]).stem for e in target["test"]] == ["V0001", "V0002", "V0003"]
    assert not any("label" in e for e in target["training"]) and len(target["training"]) == 3
    label = np.asarray(Image.open(target["test"][0]["label"]))
    assert label.shape == (32, 32) and (label[16, 16], label[16, 10], label[0, 0]) == (2, 1, 0)  # cup, disc, background
    again = tmp_path / "again"
    prepare("refuge", raw, again, size=(32, 32))
    assert (again / "datalist.json").read_text() == (out / "datalist.json").read_text()  # the seeded split
    (raw / "REFUGE-Validation400-GT" / "Disc_Cup_Masks" / "V0002.bmp").unlink()
    (raw / "Training400" / "Glaucoma" / "g0001.jpg").write_bytes(b"broken")
    with pytest.raises(RawLayoutError) as error:
        prepare("refuge", raw, tmp_path / "broken")
    lines = str(error.value).splitlines()[1:]
    assert lines[0] == (
        f"{raw / 'REFUGE-Validation400-GT' / 'Disc_Cup_Masks' / 'V0002.bmp'}: missing (the mask of "
        f"{raw / 'REFUGE-Validation400' / 'V0002.jpg'})."
    )
    assert len(lines) == 2 and lines[1].startswith(f"{raw / 'Training400' / 'Glaucoma' / 'g0001.jpg'}: cannot be read")
    assert not (tmp_path / "broken").exists()


def test_mi2gan_trains_on_the_prepared_fundus_data_and_scores_disc_and_cup(tmp_path):
    out = tmp_path / "fundus"
    prepare("refuge", refuge_raw(tmp_path / "REFUGE"), out, size=(32, 32))
    root = copy_bundle(tmp_path / "mi2gan", BUNDLES / "mi2gan")
    configs = ["configs/train.yaml", "configs/quick.yaml"]
    log = bundle_run(root, "training", configs, "--datalist", str(out / "datalist.json"))
    assert "Saved the release weights" in log
    settings = json.loads((root / "models" / "model_settings.json").read_text())
    assert settings["settings"]["num_classes"] == 3  # background, optic disc, optic cup
    bundle_run(root, "evaluating", [*configs, "configs/evaluate.yaml"], "--datalist", str(out / "datalist.json"))
    metrics = json.loads((root / "eval" / "metrics.json").read_text())
    assert metrics["classes"] == ["optic_disc", "optic_cup"] and len(metrics["per_volume"]) == 3
    assert {"dice_optic_disc", "assd_optic_cup"} <= set(metrics["per_volume"][0])
