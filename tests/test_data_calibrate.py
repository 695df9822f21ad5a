"""Benchmark v2 and its calibration: v1 reproduced byte for byte, the designed v2 shifts, the oracles."""

from __future__ import annotations

import hashlib
import json

import nibabel as nib
import numpy as np
import pytest
from PIL import Image
from scipy.ndimage import distance_transform_edt

from common.data import phantoms
from common.data.calibrate import ROWS, acceptance, calibrate, draw_subjects, main, write_report
from common.data.datalist import load_datalist
from common.data.synthetic import ensure_dataset, generate

# SHA-256 of every image and label array (sorted by path) of ``generate(task, seed=5, size=24,
# subjects=4, version=1)`` (brain at noise level 2), recorded before version 2 existed.
V1_ARRAYS = {
    "abdomen": "595927ee191b3aed68a360c87865f5b9e26dbd4440b159741d336155b9c9b1ff",
    "cardiac": "65ac0d3782072905aab1feb5f407d7e68e18e4e2a8e08f39e9f59dd8a5e5c7e5",
    "brain": "0d6d068d803ac40e121eee9a9ae36c2a7d2f9cbc38ee135815b60d8b9fa53e46",
    "polyp": "b0c2f51a5c830aada4fbda549008fd0ac19430e6dfd0a4e1c4b8cdcd2502c72e",
}


def array_digest(root) -> str:
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.suffix == ".png":
            digest.update(np.ascontiguousarray(np.asarray(Image.open(path))).tobytes())
        elif path.name.endswith(".nii.gz"):
            digest.update(np.ascontiguousarray(np.asarray(nib.load(path).dataobj)).tobytes())
    return digest.hexdigest()


@pytest.mark.parametrize("task", sorted(V1_ARRAYS))
def test_version_1_is_reproduced_exactly(tmp_path, task):
    options = {"noise_level": 2} if task == "brain" else {}
    path = generate(task, tmp_path, seed=5, size=24, subjects=4, version=1, **options)
    assert array_digest(tmp_path) == V1_ARRAYS[task]
    assert json.loads(path.read_text())["generator"]["version"] == 1
    if task in ("polyp", "brain"):  # version 2 changed these renderings
        assert array_digest(generate(task, tmp_path / "v2", seed=5, size=24, subjects=4, **options)) != V1_ARRAYS[task]


def test_ensure_dataset_asks_for_version_2_by_default(tmp_path):
    generate("polyp", tmp_path / "old", size=24, subjects=3, version=1)
    with pytest.raises(ValueError, match=r"generated with other options \(version: 1, asked 2\)"):
        ensure_dataset(tmp_path / "old", "polyp")
    assert ensure_dataset(tmp_path / "old", "polyp", version=1).exists()
    # A datalist written before versions existed records none: it is version 1.
    path = tmp_path / "old" / "datalist.json"
    datalist = json.loads(path.read_text())
    del datalist["generator"]["version"], datalist["generator"]["phases"]
    path.write_text(json.dumps(datalist))
    with pytest.raises(ValueError, match=r"version: 1, asked 2"):
        ensure_dataset(tmp_path / "old", "polyp")
    with pytest.raises(ValueError, match="Unknown benchmark version 3"):
        generate("polyp", tmp_path / "x", version=3)
    with pytest.raises(ValueError, match="`phases` is an option of the version 2 abdomen task only"):
        generate("polyp", tmp_path / "y", phases=True)


def test_polyp_oracle_inverts_the_centre_appearance_exactly():
    rng = np.random.default_rng(0)
    scene = np.clip(phantoms._polyp_scene(phantoms.polyp_anatomy(48, rng), rng, 0.97), 0, 1)
    target = phantoms.polyp_appearance(scene, "b")
    source = phantoms.polyp_appearance(scene, "a")
    np.testing.assert_allclose(phantoms.polyp_inverse(target, "b", "a"), source, atol=1e-5)
    np.testing.assert_allclose(phantoms.polyp_inverse(source, "a", "b"), target, atol=1e-5)
    assert np.abs(target - source).mean(axis=(1, 2)).max() > 0.15  # and large: a channel moves by > 0.15 on average
    # The change alters the polyp/mucosa contrast, not only the overall colour.
    anatomy = phantoms.polyp_anatomy(48, np.random.default_rng(1))
    polyp, mucosa = anatomy.tissue == 2, anatomy.tissue == 0
    scene = np.clip(phantoms._polyp_scene(anatomy, np.random.default_rng(2), 0.97), 0, 1)
    contrast = {
        centre: phantoms.polyp_appearance(scene, centre)[:, polyp].mean(1)
        - phantoms.polyp_appearance(scene, centre)[:, mucosa].mean(1)
        for centre in "ab"
    }
    cosine = contrast["a"] @ contrast["b"] / np.linalg.norm(contrast["a"]) / np.linalg.norm(contrast["b"])
    assert np.degrees(np.arccos(cosine)) > 20  # the contrast turns in colour space (green gains, blue loses)


def test_brain_lesions_are_bright_in_t2_and_faint_in_t1(synthetic):
    datalist = load_datalist(synthetic("brain", size=64, subjects=5))
    assert datalist["labels"]["6"] == "lesion"
    for entry in datalist["paired"]["training"]:
        label = np.asarray(nib.load(entry["label"]).dataobj)
        t1, t2 = (np.asarray(nib.load(entry[k]).dataobj) for k in ("image", "reference"))
        lesion, white = label == 6, label == 5
        assert lesion.sum() >= 10
        assert t2[lesion].mean() - t2[white].mean() > 0.3  # oedema: strongly T2-hyperintense
        assert 0.05 < t1[white].mean() - t1[lesion].mean() < 0.2  # only mildly T1-hypointense


def test_cardiac_local_effects_are_mr_only_and_local():
    rng = np.random.default_rng(0)
    anatomy = phantoms.cardiac_anatomy(48, rng)
    render = phantoms.render_cardiac_v2
    ct, ct_local = (render(anatomy, d, np.random.default_rng(3)) for d in ("ct", "ct_local"))
    tissue = anatomy.tissue
    changed = np.abs(ct - ct_local) > 1e-3
    assert changed[tissue == 6].all()  # the myocardium changes
    distance = distance_transform_edt((tissue != 5) & (tissue != 6))  # voxels from the LV cavity or wall
    assert distance[changed].max() <= 3  # nothing else but the heart's partial-volume border
    assert changed[tissue == 3].mean() < 0.5  # the aorta keeps its CT appearance away from the heart
    # Inside the wall, the local effects vary from voxel to voxel (texture) by far more than v1's texture.
    inner = (tissue == 6) & (np.abs(np.gradient(tissue.astype(float))[0]) == 0)
    assert np.std((ct_local - ct)[inner]) > 0.3 * phantoms.CARDIAC_CT[6]
    # v1's CT rendering is unchanged in v2.
    np.testing.assert_array_equal(ct, phantoms.render_cardiac(anatomy, "ct", np.random.default_rng(3)))


def test_abdomen_multiphase_target(tmp_path):
    path = generate("abdomen", tmp_path, size=32, subjects=10, phases=True)
    datalist = load_datalist(path, verify_images=True)
    assert datalist["domains"]["target"]["modality"] == "MR (T1, multi-phase)"
    phases = [e["phase"] for split in ("training", "validation", "test") for e in datalist["target"][split]]
    assert set(phases) == set(phantoms.ABDOMEN_MR_PHASES)
    assert all("phase" not in e for e in datalist["source"]["training"])
    table = phantoms.ABDOMEN_MR_PHASES  # the liver enhances in the portal-venous phase, the kidneys first
    assert table["portal_venous"][4] > 1.5 * table["pre_contrast"][4]
    assert table["arterial"][5] > 3 * table["pre_contrast"][5]


def test_calibration_subjects_match_the_generated_files(tmp_path):
    path = generate("polyp", tmp_path, seed=0, size=32, subjects=10)
    data, _ = draw_subjects("polyp", 0, 32, 10, 2, False, False)
    entry = load_datalist(path)["source"]["training"][0]
    stored = np.asarray(Image.open(entry["image"]), dtype=np.float32).transpose(2, 1, 0)  # (3, H, W), 0-255
    np.testing.assert_allclose((data["training"]["source"][0]["image"].numpy() + 1) / 2 * 255, stored, atol=1e-3)
    assert set(data["test"]) == {
        "source_test",
        "no_adaptation",
        "source_rendering",
        "oracle_inverse",
        "supervised_target",
    }
    assert all(item["label"].shape[0] == 1 for item in data["training"]["target"])  # labelled, for the upper bound


def test_acceptance_rules():
    def rows(**dice):
        return {k: {"dice": v} for k, v in dice.items()}

    ok = acceptance(
        rows(source_test=0.95, no_adaptation=0.3, source_rendering=0.95, oracle_inverse=0.9, supervised_target=0.95)
    )
    assert ok["translation_ceiling"]["passed"] and ok["gap"]["passed"]
    bad = acceptance(rows(source_test=0.95, no_adaptation=0.7, source_rendering=0.8, supervised_target=0.95))
    assert not bad["translation_ceiling"]["passed"] and not bad["gap"]["passed"]
    assert bad["translation_ceiling"]["rule"] == "source_rendering 0.800 >= 0.9 x source_test 0.950"


def test_calibration_command_on_a_small_polyp_task(tmp_path):
    docs = tmp_path / "bench.md"
    docs.write_text("# Bench\n<!-- calibration:start -->\nold\n<!-- calibration:end -->\nafter\n")
    main(
        ["--task", "polyp", "--size", "32", "--subjects", "20", "--seeds", "1", "--iterations", "150"]
        + ["--out", str(tmp_path / "cal"), "--docs", str(docs)]
    )
    result = json.loads((tmp_path / "cal" / "polyp.json").read_text())
    rows = result["rows"]
    assert set(rows) == set(ROWS) - {"global_translation"}
    # The designed shift: the source-trained segmenter fails on centre B, the oracle inverse restores it.
    assert rows["source_test"]["dice"] > 0.8, rows
    assert rows["no_adaptation"]["dice"] < 0.6 * rows["supervised_target"]["dice"], rows
    assert rows["oracle_inverse"]["dice"] > rows["no_adaptation"]["dice"] + 0.3, rows
    text = docs.read_text()
    assert "old" not in text and "| polyp | a -> b |" in text and text.endswith("after\n")
    assert (tmp_path / "cal" / "calibration.png").stat().st_size > 10_000
    docs.write_text("no markers")
    with pytest.raises(ValueError, match="has no calibration markers"):
        write_report(tmp_path / "cal", docs)


@pytest.mark.slow
@pytest.mark.parametrize("task", ["abdomen", "cardiac", "brain", "polyp"])
def test_documented_calibration_meets_the_acceptance(task):
    """docs/synthetic_benchmark.md's calibration (3 seeds, size 64, 600 iterations) re-measured."""
    result = calibrate(task)
    assert all(check["passed"] for check in result["acceptance"].values()), result["acceptance"]
    if task == "cardiac":  # an ideal global translation leaves a structure-specific gap
        rows = result["rows"]
        assert rows["global_translation"]["dice"] < rows["source_rendering"]["dice"] - 0.05, rows
