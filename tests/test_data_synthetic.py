"""The synthetic benchmark: determinism, datalist layout, geometry and the designed domain shift."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from common.data.datalist import load_datalist
from common.data.phantoms import (
    ABDOMEN_CT,
    ABDOMEN_MR,
    CARDIAC_CT,
    CARDIAC_MR,
    brain_anatomy,
    misalign,
    render_brain,
)
from common.data.synthetic import ensure_dataset, generate, main, split_sizes


def arrays(datalist_path):
    """Every image of a generated dataset, by relative path."""
    root = datalist_path.parent
    out = {}
    for path in sorted(root.rglob("*")):
        if path.suffix == ".png":
            out[str(path.relative_to(root))] = np.asarray(Image.open(path))
        elif path.name.endswith(".nii.gz"):
            out[str(path.relative_to(root))] = np.asarray(nib.load(path).dataobj)
    return out


@pytest.mark.parametrize("task", ["polyp", "brain"])
def test_generation_is_deterministic_per_seed(tmp_path, task):
    first = generate(task, tmp_path / "a", seed=3, size=24, subjects=4)
    second = generate(task, tmp_path / "b", seed=3, size=24, subjects=4)
    other = generate(task, tmp_path / "c", seed=4, size=24, subjects=4)
    a, b, c = arrays(first), arrays(second), arrays(other)
    assert first.read_text() == second.read_text()
    assert a.keys() == b.keys() and len(a) > 0
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert any(not np.array_equal(a[k], c[k]) for k in a)


def test_3d_layout_geometry_and_labels(synthetic):
    path = synthetic("abdomen", size=32, subjects=5)
    datalist = json.loads(path.read_text())
    assert datalist["tensor_dim"] == 3
    assert datalist["labels"] == {
        "0": "background",
        "1": "liver",
        "2": "right_kidney",
        "3": "left_kidney",
        "4": "spleen",
    }
    assert [len(datalist["source"][s]) for s in ("training", "validation", "test")] == [3, 1, 1]
    assert all(set(e) == {"image"} for e in datalist["target"]["training"])  # no target training labels
    assert all(set(e) == {"image"} for e in datalist["target"]["validation"])
    assert all(set(e) == {"image", "label", "reference"} for e in datalist["target"]["test"])
    assert all(set(e) == {"image", "label", "reference"} for e in datalist["source"]["test"])
    image = nib.load(path.parent / datalist["source"]["training"][0]["image"])
    label = nib.load(path.parent / datalist["source"]["training"][0]["label"])
    assert image.shape == label.shape == (32, 32, 16)
    np.testing.assert_allclose(image.header.get_zooms(), (300 / 32, 300 / 32, 600 / 32), rtol=1e-6)
    np.testing.assert_allclose(np.diag(image.affine)[:3], (300 / 32, 300 / 32, 600 / 32), rtol=1e-6)
    values = np.unique(np.asarray(label.dataobj))
    assert set(values) == {0, 1, 2, 3, 4}
    # Different subjects in the two domains: the unpaired setting.
    source_labels = np.asarray(nib.load(path.parent / datalist["source"]["training"][0]["label"]).dataobj)
    target_test = np.asarray(nib.load(path.parent / datalist["target"]["test"][0]["label"]).dataobj)
    assert not np.array_equal(source_labels, target_test)
    load_datalist(path, verify_images=True)


def test_labelled_validation_labels_the_target_validation_split_only(tmp_path):
    plain = generate("polyp", tmp_path / "plain", size=24, subjects=10)
    labelled = generate("polyp", tmp_path / "labelled", size=24, subjects=10, labelled_validation=True)
    a, b = json.loads(plain.read_text()), json.loads(labelled.read_text())
    assert all(set(e) == {"image", "label", "reference"} for e in b["target"]["validation"])
    assert all(set(e) == {"image"} for e in b["target"]["training"])  # training stays unlabelled
    assert b["generator"]["labelled_validation"] and not a["generator"]["labelled_validation"]
    # The images are the same as without labels: only labels and references are added.
    first, second = arrays(plain), arrays(labelled)
    assert set(first) < set(second)
    assert {k for k in set(second) - set(first)} == {
        k for k in second if k.startswith(("target/labels/validation", "target/reference/validation"))
    }
    assert all(np.array_equal(first[k], second[k]) for k in first)
    # A labelled validation split is another dataset: ensure_dataset does not mix them up.
    with pytest.raises(ValueError, match=r"labelled_validation: False, asked True"):
        ensure_dataset(tmp_path / "plain", "polyp", size=24, subjects=10, labelled_validation=True)


def test_oracle_labels_label_the_target_training_images_under_their_own_key(tmp_path):
    plain = generate("abdomen", tmp_path / "plain", size=16, subjects=5)
    oracle = generate("abdomen", tmp_path / "oracle", size=16, subjects=5, oracle_labels=True)
    a, b = json.loads(plain.read_text()), json.loads(oracle.read_text())
    assert all(set(e) == {"image", "oracle_label"} for e in b["target"]["training"])  # never under `label`
    assert b["target"]["validation"] == a["target"]["validation"] and b["generator"]["oracle_labels"]
    first, second = arrays(plain), arrays(oracle)
    assert set(second) - set(first) == {k for k in second if k.startswith("target/labels/training")}
    assert all(np.array_equal(first[k], second[k]) for k in first)  # the same images
    loaded = load_datalist(oracle, verify_images=True)  # kept and checked like a label, path resolved
    assert Path(loaded["target"]["training"][0]["oracle_label"]).is_file()
    with pytest.raises(ValueError, match=r"oracle_labels: False, asked True"):
        ensure_dataset(tmp_path / "plain", "abdomen", size=16, subjects=5, oracle_labels=True)


def test_reference_is_the_same_subject_in_the_other_domain(synthetic):
    path = synthetic("abdomen", size=32, subjects=5)
    entry = load_datalist(path)["target"]["test"][0]
    mr, ct_reference = (np.asarray(nib.load(entry[k]).dataobj) for k in ("image", "reference"))
    label = np.asarray(nib.load(entry["label"]).dataobj)
    # The reference is CT-like (liver around 130 HU) where the MR image is T2-like (liver around 210).
    assert abs(np.median(ct_reference[label == 1]) - ABDOMEN_CT[4]) < 20
    assert np.median(mr[label == 1]) > 100


def test_domain_contrast_is_inverted_where_designed():
    # Abdomen: liver brighter than spleen in CT, darker in MR; fat darker than muscle in CT, brighter in MR.
    assert ABDOMEN_CT[4] > ABDOMEN_CT[7] and ABDOMEN_MR[4] < ABDOMEN_MR[7]
    assert ABDOMEN_CT[1] < ABDOMEN_CT[2] and ABDOMEN_MR[1] > ABDOMEN_MR[2]
    # Cardiac: aorta and atrium brightest in both; LV cavity vs myocardium inverted.
    assert CARDIAC_CT[5] > CARDIAC_CT[6] and CARDIAC_MR[5] < CARDIAC_MR[6]
    for table in (CARDIAC_CT, CARDIAC_MR):
        assert min(table[3], table[4]) > max(table[1], table[2])


def test_brain_pairs_and_misalignment_levels(synthetic):
    aligned = load_datalist(synthetic("brain", size=32, subjects=5, noise_level=0))
    moved = load_datalist(synthetic("brain", size=32, subjects=5, noise_level=4))
    assert "source" not in aligned and set(aligned["paired"]) == {"training", "validation", "test"}
    for entry in aligned["paired"]["training"]:
        assert entry["target"] == entry["reference"]
    for a, m in zip(aligned["paired"]["training"], moved["paired"]["training"], strict=True):
        t1_a, t1_m = (np.asarray(nib.load(e["image"]).dataobj) for e in (a, m))
        np.testing.assert_array_equal(t1_a, t1_m)  # same subjects for every level
        reference, target = (np.asarray(nib.load(m[k]).dataobj) for k in ("reference", "target"))
        assert not np.array_equal(reference, target)
        assert reference.min() == 0 and target.min() == 0  # background stays exactly 0


def test_brain_contrast_follows_t1_and_t2_weighting():
    rng = np.random.default_rng(0)
    anatomy = brain_anatomy(64, rng)
    t1, t2 = render_brain(anatomy, "t1", rng), render_brain(anatomy, "t2", rng)
    mean = {
        name: (t1[anatomy.tissue == v].mean(), t2[anatomy.tissue == v].mean())
        for v, name in ((3, "csf"), (4, "gm"), (5, "wm"))
    }
    assert mean["wm"][0] > mean["gm"][0] > mean["csf"][0]  # T1
    assert mean["csf"][1] > mean["gm"][1] > mean["wm"][1]  # T2
    assert t1[anatomy.tissue == 0].max() == 0


@pytest.mark.parametrize("level", [1, 3, 5])
def test_misalignment_stays_within_the_levels_bounds(level):
    size = 64
    yy, xx = np.mgrid[:size, :size]
    disk = ((xx - 31.5) ** 2 + (yy - 31.5) ** 2 <= 12**2).astype(np.float32)
    for seed in range(10):
        moved = misalign(disk, level, np.random.default_rng(seed))
        centroid = np.array([(moved * yy).sum(), (moved * xx).sum()]) / moved.sum()
        shift = np.abs(centroid - 31.5)
        assert (shift <= 0.02 * level * size + 0.5).all() and shift.max() > 0  # translation up to 2L %
        area_ratio = moved.sum() / disk.sum()
        assert (1 - 0.02 * level) ** 2 - 0.03 <= area_ratio <= (1 + 0.02 * level) ** 2 + 0.03  # scale 1 +/- 0.02 L
    np.testing.assert_array_equal(misalign(disk, 0, np.random.default_rng(0)), disk)
    rgb = np.stack([disk, 2 * disk, 3 * disk])
    moved = misalign(rgb, level, np.random.default_rng(1))
    np.testing.assert_allclose(moved[1], 2 * moved[0], atol=1e-5)  # one transform for all channels


def test_polyp_is_rgb_with_a_binary_label(synthetic):
    datalist = load_datalist(synthetic("polyp", size=32, subjects=5), verify_images=True)
    entry = datalist["source"]["training"][0]
    image, label = np.asarray(Image.open(entry["image"])), np.asarray(Image.open(entry["label"]))
    assert image.shape == (32, 32, 3) and image.dtype == np.uint8
    assert set(np.unique(label)) == {0, 1}
    assert datalist["domains"]["target"]["channels"] == 3


def test_refuses_to_overwrite_and_cli_errors(tmp_path, capsys):
    generate("polyp", tmp_path, size=24, subjects=3)
    with pytest.raises(ValueError, match="is not empty; pass --overwrite"):
        generate("polyp", tmp_path, size=24, subjects=3)
    with pytest.raises(SystemExit):
        main(["--task", "polyp", "--out", str(tmp_path), "--size", "24", "--subjects", "3"])
    assert "is not empty; pass --overwrite" in capsys.readouterr().err
    main(["--task", "polyp", "--out", str(tmp_path), "--size", "24", "--subjects", "3", "--overwrite", "--seed", "9"])
    assert json.loads((tmp_path / "datalist.json").read_text())["generator"]["seed"] == 9
    with pytest.raises(ValueError, match="Unknown task 'liver'"):
        generate("liver", tmp_path / "x")
    with pytest.raises(ValueError, match="`subjects` must be at least 3"):
        split_sizes(2)


def test_ensure_dataset_generates_on_first_use(tmp_path, caplog):
    with caplog.at_level(logging.INFO):
        path = ensure_dataset(tmp_path / "data", "polyp", size=24, subjects=3)
    assert path.exists() and "generating the synthetic 'polyp' task" in caplog.text
    assert ensure_dataset(tmp_path / "data", "polyp") == path  # second use: nothing generated
    shutil.rmtree(tmp_path / "data")
    (tmp_path / "data").mkdir()
    with pytest.raises(ValueError, match="exists but has no datalist.json"):
        ensure_dataset(tmp_path / "data", "polyp")


@pytest.mark.parametrize("task,grid", [("cardiac", (2, 3)), ("brain", (1, 4))])
def test_preview_draws_every_panel(synthetic, tmp_path, task, grid):
    from common.data.preview import preview

    path = preview(synthetic(task, size=32, subjects=5), tmp_path / "p.png")
    image = np.asarray(Image.open(path).convert("L"), dtype=float) / 255
    rows, columns = grid
    assert image.shape[1] / image.shape[0] == pytest.approx(columns / rows, rel=0.15)
    # every panel shows something: each column band has dark and bright pixels
    for band in np.array_split(image, columns, axis=1):
        assert band.min() < 0.2 and band.max() > 0.6


def test_ensure_dataset_refuses_data_generated_with_other_options(tmp_path):
    ensure_dataset(tmp_path / "data", "polyp", size=24, subjects=3)
    with pytest.raises(ValueError, match=r"generated with other options \(size: 24, asked 32\)"):
        ensure_dataset(tmp_path / "data", "polyp", size=32, subjects=3)
    with pytest.raises(ValueError, match=r"task: 'polyp', asked 'brain'"):
        ensure_dataset(tmp_path / "data", "brain", size=24)


def test_reverse_swaps_the_roles_of_the_same_subjects(tmp_path):
    """cardiac CT -> MR: the task's MR subjects (with their labels) become the source, its CT
    subjects the unlabelled target; the images are the forward direction's, byte for byte."""
    forward = load_datalist(generate("cardiac", tmp_path / "f", size=16, subjects=8, oracle_labels=True))
    reverse = load_datalist(generate("cardiac", tmp_path / "r", size=16, subjects=8, reverse=True))
    assert reverse["domains"]["source"] == forward["domains"]["target"]
    assert reverse["domains"]["target"] == forward["domains"]["source"]
    assert reverse["generator"]["reverse"] and not forward["generator"]["reverse"]

    def voxels(path):
        return np.asarray(nib.load(path).dataobj)

    for split in ("training", "validation", "test"):
        for new, old in ((reverse["source"], forward["target"]), (reverse["target"], forward["source"])):
            assert len(new[split]) == len(old[split])
            for a, b in zip(new[split], old[split], strict=True):
                np.testing.assert_array_equal(voxels(a["image"]), voxels(b["image"]))
    # The new source is labelled for training (the forward target's oracle labels), the new target is not.
    for a, b in zip(reverse["source"]["training"], forward["target"]["training"], strict=True):
        np.testing.assert_array_equal(voxels(a["label"]), voxels(b["oracle_label"]))
    assert not any("label" in e for e in reverse["target"]["training"])
    assert all("label" in e and "reference" in e for e in reverse["target"]["test"])
    with pytest.raises(ValueError, match="not for the paired brain task nor with `phases`"):
        generate("abdomen", tmp_path / "p", size=16, subjects=8, phases=True, reverse=True)
    # A folder of one direction is not taken for the other.
    with pytest.raises(ValueError, match="reverse: False, asked True"):
        ensure_dataset(tmp_path / "f", "cardiac", size=16, subjects=8, oracle_labels=True, reverse=True)


def test_an_interrupted_generation_leaves_no_partial_dataset(tmp_path, monkeypatch):
    import json

    from common.data import synthetic

    real = synthetic.generate

    def interrupted(task, out, **options):
        (Path(out) / "source" / "images").mkdir(parents=True)
        raise KeyboardInterrupt

    monkeypatch.setattr(synthetic, "generate", interrupted)
    with pytest.raises(KeyboardInterrupt):
        synthetic.ensure_dataset(tmp_path / "abdomen_24", "abdomen", size=24, subjects=4)
    assert list(tmp_path.iterdir()) == []  # neither the folder nor its partial copy
    monkeypatch.setattr(synthetic, "generate", real)
    datalist = synthetic.ensure_dataset(tmp_path / "abdomen_24", "abdomen", size=24, subjects=4)
    assert json.loads(datalist.read_text())["source"]["training"]
    assert [p.name for p in tmp_path.iterdir()] == ["abdomen_24"]
