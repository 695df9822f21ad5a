"""`python -m common.reproduce`: a 2 x 2 RegGAN matrix (pix2pix and RegGAN at noise levels 0 and 3)
with the quick preset, through the bundle's own configs, and the tables and figure it writes."""

from __future__ import annotations

import csv
import json
import logging
import math
import shutil
from pathlib import Path

import pytest
import yaml

from common.reproduce import load_matrix, main, run_matrix, write_results

BUNDLES = Path(__file__).resolve().parents[1] / "bundles"


def shrink_matrix(root: Path, variants: list[str], levels: list[int]) -> None:
    """Keeps some of the bundle's variants and noise levels (the whole matrix is 4 x 6 runs)."""
    path = root / "configs" / "reproduce.yaml"
    matrix = yaml.safe_load(path.read_text())
    matrix["variants"] = {name: matrix["variants"][name] for name in variants}
    matrix["settings"] = {"noise_level": levels}
    path.write_text(yaml.safe_dump(matrix))


@pytest.fixture(scope="module")
def quick_matrix(tmp_path_factory):
    root = tmp_path_factory.mktemp("reggan_bundle")
    shutil.copytree(
        BUNDLES / "reggan", root, dirs_exist_ok=True, ignore=shutil.ignore_patterns("models", "eval", "data")
    )
    shrink_matrix(root, ["pix2pix", "reggan"], [0, 3])
    out = tmp_path_factory.mktemp("reproduce")
    return root, out, run_matrix(root, "quick", out)


def test_reggan_matrix_is_the_papers_table_layout(quick_matrix):
    root, out, rows = quick_matrix
    assert [(r["variant"], r["noise_level"]) for r in rows] == [
        ("pix2pix", 0),
        ("reggan", 0),
        ("pix2pix", 3),
        ("reggan", 3),
    ]
    for row in rows:
        assert set(row) == {
            "variant",
            "noise_level",
            "nmae",
            "psnr",
            "ssim",
            "ssim_whole",
            "nmae_lesion",
            "identity_nmae",
            "identity_psnr",
            "identity_ssim",
            "identity_ssim_whole",
            "identity_nmae_lesion",
            "training_seconds",
        }
        # Each row is the run's own evaluation, trained in its own folder with its mode and level.
        run = out / "runs" / f"{row['variant']}_noise_level{row['noise_level']}"
        assert json.loads((run / "eval" / "metrics.json").read_text())["mean"]["nmae"] == row["nmae"]
        assert (run / "models" / "model.pt").is_file() and row["training_seconds"] > 0
        assert 0 < row["nmae"] < 1
    # The identity baseline does not depend on the run; the translations do.
    assert len({r["identity_nmae"] for r in rows}) == 1
    assert len({r["nmae"] for r in rows}) > 1


def test_results_files(quick_matrix):
    _, out, rows = quick_matrix
    assert json.loads((out / "results.json").read_text()) == rows
    with open(out / "results.csv") as handle:
        table = list(csv.DictReader(handle))
    assert len(table) == 4 and float(table[3]["nmae"]) == pytest.approx(rows[3]["nmae"])
    markdown = (out / "results.md").read_text()
    assert "| variant \\ noise_level | 0 | 3 |" in markdown
    assert f"| reggan | {rows[1]['nmae']:.4f} | {rows[3]['nmae']:.4f} |" in markdown
    assert "**SSIM** (higher is better)" in markdown and "| identity (untranslated input) |" in markdown
    assert (out / "metrics.png").stat().st_size > 10_000
    assert (out / "examples.png").stat().st_size > 10_000  # every run's translation of the first test image
    assert "Training time of the 4 runs, summed:" in markdown


def test_done_runs_are_not_rerun(quick_matrix, caplog):
    root, out, rows = quick_matrix
    with caplog.at_level(logging.INFO, logger="common.reproduce"):
        again = run_matrix(root, "quick", out)
    assert "0 of 4 runs to do" in caplog.text
    assert [r["nmae"] for r in again] == [r["nmae"] for r in rows]


def test_evaluate_only_scores_the_trained_runs_again(quick_matrix, tmp_path):
    root, out, rows = quick_matrix
    metrics = out / "runs" / "reggan_noise_level3" / "eval" / "metrics.json"
    metrics.unlink()
    again = run_matrix(root, "quick", out, evaluate_only=True)
    assert metrics.is_file()  # evaluated again from the saved weights, without training
    assert [r["nmae"] for r in again] == pytest.approx([r["nmae"] for r in rows], abs=1e-6)
    assert [r["training_seconds"] for r in again] == [r["training_seconds"] for r in rows]
    assert "this invocation re-evaluated the trained runs (`--evaluate-only`" in (out / "results.md").read_text()
    with pytest.raises(ValueError, match="has no models/model.pt to evaluate"):
        run_matrix(root, "quick", tmp_path / "empty", evaluate_only=True)


def test_resume_continues_an_interrupted_run_from_its_checkpoints(quick_matrix, tmp_path, caplog):
    root, out, rows = quick_matrix
    # Two runs killed after their last checkpoint, before the release weights and the evaluation.
    for name in ("reggan_noise_level0", "reggan_noise_level3"):
        shutil.copytree(out / "runs" / name / "models", tmp_path / "runs" / name / "models")
        (tmp_path / "runs" / name / "models" / "model.pt").unlink()
    with caplog.at_level(logging.INFO):
        again = run_matrix(root, "quick", tmp_path, variants=["reggan"], resume=True)
    assert (
        caplog.text.count("Stage 'translation': finished earlier") == 2
        and "Stage 'translation': training" not in caplog.text
    )
    # The weights of the interrupted runs, not new ones: the same scores.
    assert [r["nmae"] for r in again] == pytest.approx([r["nmae"] for r in rows if r["variant"] == "reggan"], abs=1e-6)
    assert json.loads((tmp_path / "runs" / "reggan_noise_level3" / "seconds.json").read_text())["resumed"] is True
    assert (
        "the training time counts only the continued part): reggan_noise_level0, reggan_noise_level3."
        in (tmp_path / "results.md").read_text()
    )
    assert "Continued after an interruption" not in (out / "results.md").read_text()


def test_selected_variants_are_the_only_rows(quick_matrix, tmp_path):
    root, out, rows = quick_matrix
    again = run_matrix(root, "quick", out, evaluate_only=True, variants=["reggan"])
    assert [(r["variant"], r["noise_level"]) for r in again] == [("reggan", 0), ("reggan", 3)]
    assert [r["nmae"] for r in again] == pytest.approx([r["nmae"] for r in rows if r["variant"] == "reggan"], abs=1e-6)
    markdown = (out / "results.md").read_text()
    assert "--variants reggan --preset quick" in markdown and "| pix2pix |" not in markdown
    with pytest.raises(ValueError, match=r"Unknown variant\(s\) 'regan' for .*expected some of pix2pix, reggan"):
        run_matrix(root, "quick", out, variants=["reggan", "regan"])
    with pytest.raises(ValueError, match=r"Unknown variant\(s\) \(none given\)"):
        run_matrix(root, "quick", out, variants=[])
    run_matrix(root, "quick", out, evaluate_only=True)  # the whole table again, for the tests that read it


def test_a_selected_variant_reusing_an_unselected_run_needs_its_checkpoint(tmp_path):
    shutil.copytree(BUNDLES / "dadr" / "configs", tmp_path / "configs")
    with pytest.raises(ValueError, match=r"joint reuses stage 'disentanglement' of dadr, but .*does not exist"):
        run_matrix(tmp_path, "quick", tmp_path / "out", variants=["joint"])


def test_parallel_jobs_give_the_same_runs(tmp_path, quick_matrix):
    root = tmp_path / "bundle"
    shutil.copytree(quick_matrix[0], root, ignore=shutil.ignore_patterns("models", "eval"))
    shrink_matrix(root, ["pix2pix", "reggan"], [0])
    rows = run_matrix(root, "quick", tmp_path / "out", jobs=2)
    assert [r["variant"] for r in rows] == ["pix2pix", "reggan"]
    # Same seed, same configs: the parallel runs reproduce the sequential ones.
    sequential = {(r["variant"], r["noise_level"]): r["nmae"] for r in quick_matrix[2]}
    for row in rows:
        assert row["nmae"] == pytest.approx(sequential[(row["variant"], 0)], abs=1e-4)


@pytest.mark.parametrize(
    "bundle", sorted(p.name for p in BUNDLES.iterdir() if (p / "configs" / "reproduce.yaml").is_file())
)
def test_every_matrix_overrides_existing_config_ids(bundle):
    matrix = load_matrix(BUNDLES / bundle)
    assert {"quick", "cpu", "gpu"} <= set(matrix["presets"]) and matrix["variants"]


@pytest.mark.parametrize(
    "bundle", sorted(p.name for p in BUNDLES.iterdir() if (p / "configs" / "options.yaml").is_file())
)
def test_every_options_matrix_is_scored_on_the_labelled_validation_split(bundle):
    matrix = load_matrix(BUNDLES / bundle, "options")
    assert matrix["overrides"] == {"data_labelled_validation": True, "evaluate_split": "validation"}
    assert len(matrix["variants"]) >= 2 and {"quick", "cpu"} <= set(matrix["presets"])
    expected = {
        "mi2gan": {"literal", "product_jsd"},
        "dadr": {"identity_source", "mean_source"},
        "synthmix": {"bce_uniform", "lsgan"},
        "global_local_alignment": {"entropy", "certainty", "none"},
    }[bundle]
    assert expected <= set(matrix["variants"])  # the paper's literal choice and the default stay compared
    assert {"mi2gan", "dadr"} <= {p.name for p in BUNDLES.iterdir() if (p / "configs" / "options.yaml").is_file()}


def test_a_misspelt_override_is_named(tmp_path):
    shutil.copytree(BUNDLES / "cyclegan" / "configs", tmp_path / "configs")
    path = tmp_path / "configs" / "reproduce.yaml"
    matrix = yaml.safe_load(path.read_text())
    load_matrix(tmp_path)  # as shipped
    matrix["variants"]["no_identity"] = {"lambda_identty": 0.0}
    path.write_text(yaml.safe_dump(matrix))
    with pytest.raises(ValueError, match=r"reproduce.yaml: variant 'no_identity' sets 'lambda_identty', which neither"):
        load_matrix(tmp_path)
    matrix["variants"]["no_identity"] = {"lambda_identity": 0.0}
    matrix["settings"] = {"n_blocks": [6, 9], "train#optimizers#generators#lr": [0.001], "train#nothing": [1]}
    path.write_text(yaml.safe_dump(matrix))
    with pytest.raises(ValueError, match=r"settings sets 'train#nothing', which"):  # nested ids are checked too
        load_matrix(tmp_path)


def test_a_bad_reuse_is_named(tmp_path):
    shutil.copytree(BUNDLES / "dadr" / "configs", tmp_path / "configs")
    path = tmp_path / "configs" / "reproduce.yaml"
    matrix = yaml.safe_load(path.read_text())
    assert load_matrix(tmp_path)["reuse"] == {"joint": {"from": "dadr", "stages": ["disentanglement"]}}
    for bad in ({"from": "dadrr", "stages": ["disentanglement"]}, {"from": "joint", "stages": ["x"]}, {"from": "dadr"}):
        matrix["reuse"] = {"joint": bad}
        path.write_text(yaml.safe_dump(matrix))
        with pytest.raises(ValueError, match=r"reproduce.yaml: reuse 'joint': .*expected a variant mapped to"):
            load_matrix(tmp_path)
    matrix["reuse"] = {
        "joint": {"from": "dadr", "stages": ["disentanglement"]},
        "dadr": {"from": "no_adaptation", "stages": ["x"]},
    }
    path.write_text(yaml.safe_dump(matrix))
    with pytest.raises(ValueError, match="another variant that reuses nothing"):  # no chains
        load_matrix(tmp_path)


def test_a_reused_stage_must_exist(tmp_path):
    """A reusing run whose source run has results but no checkpoint of the stage is named."""
    shutil.copytree(BUNDLES / "dadr" / "configs", tmp_path / "configs")
    path = tmp_path / "configs" / "reproduce.yaml"
    matrix = yaml.safe_load(path.read_text())
    matrix["variants"] = {k: matrix["variants"][k] for k in ("dadr", "joint")}
    path.write_text(yaml.safe_dump(matrix))
    done = tmp_path / "out" / "runs" / "dadr" / "eval"
    done.mkdir(parents=True)
    (done / "metrics.json").write_text(json.dumps({"mean": {}}))
    with pytest.raises(
        ValueError, match=r"joint reuses stage 'disentanglement' of dadr, but .*resume.pt does not exist"
    ):
        run_matrix(tmp_path, "quick", tmp_path / "out")


def test_bad_requests_are_named(tmp_path):
    (tmp_path / "configs").mkdir()
    with pytest.raises(ValueError, match="defines no experiment matrix"):
        load_matrix(tmp_path)
    with pytest.raises(ValueError, match="Unknown preset 'fast' for reggan; expected one of quick, cpu, gpu"):
        run_matrix("reggan", "fast", tmp_path)
    with pytest.raises(SystemExit):
        main(["no_such_bundle", "--out", str(tmp_path)])


def test_seeds_are_repeats_whose_mean_is_reported(tmp_path):
    # Two variants over seeds 0 and 1; the baseline (a per-seed segmenter) differs per seed.
    rows = [
        {"variant": v, "seed": s, "dice": d, "no_adaptation_dice": 0.5 + s / 10, "training_seconds": 1.0}
        for v, values in (("a", (0.2, 0.4)), ("b", (0.6, 0.9)))
        for s, d in zip((0, 1), values, strict=True)
    ]
    matrix = {
        "variants": {"a": {}, "b": {}},
        "settings": {"seed": [0, 1]},
        "metrics": ["dice"],
        "lower_is_better": [],
        "baseline": "no_adaptation",
    }
    write_results(rows, matrix, tmp_path, {"bundle": "x", "preset": "cpu", "overlays": [], "seconds": 1.0})
    markdown = (tmp_path / "results.md").read_text()
    assert "| variant \\ seed | 0 | 1 | mean |" in markdown
    assert "| a | 0.2000 | 0.4000 | **0.3000** |" in markdown and "| b | 0.6000 | 0.9000 | **0.7500** |" in markdown
    assert "| no adaptation | 0.5000 | 0.6000 | **0.5500** |" in markdown
    assert (tmp_path / "metrics.png").stat().st_size > 5_000


def test_metrics_no_run_measured_are_left_out_of_the_report(tmp_path):
    # The abdomen rows have no cardiac class Dice (NaN): the table leaves that metric out, the
    # JSON keeps every column; a metric measured by one run only stays, its other cells NaN.
    rows = [
        {"variant": "a", "dice": 0.5, "dice_myocardium": math.nan, "inspector": 0.9, "training_seconds": 1.0},
        {"variant": "b", "dice": 0.7, "dice_myocardium": math.nan, "inspector": math.nan, "training_seconds": 1.0},
    ]
    matrix = {
        "variants": {"a": {}, "b": {}},
        "settings": {},
        "metrics": ["dice", "dice_myocardium", "inspector"],
        "lower_is_better": [],
        "baseline": "none",
    }
    write_results(rows, matrix, tmp_path, {"bundle": "x", "preset": "cpu", "overlays": [], "seconds": 1.0})
    markdown = (tmp_path / "results.md").read_text()
    assert "**DICE**" in markdown and "**INSPECTOR**" in markdown and "| b | nan |" in markdown
    assert "DICE_MYOCARDIUM" not in markdown
    assert "dice_myocardium" in (tmp_path / "results.json").read_text()
    assert matrix["metrics"] == ["dice", "dice_myocardium", "inspector"]  # the caller's matrix is unchanged
