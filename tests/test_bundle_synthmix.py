"""The SynthMix bundle end to end with quick.yaml, through `python -m monai.bundle` as users run it:
SIFA + SynthMix as one stage with resume, target labels never read, evaluation per 3D volume and
class (every slice segmented) with the Inspector probe and the figure of mixes, inference as one
label-map network, 2-process DDP, every method of the matrix from its `method` id and
`common.bundle check`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from bundle_helpers import (
    assert_check_and_export,
    assert_label_maps,
    assert_methods_never_read_target_labels,
    bundle_run,
    copy_bundle,
    ddp_run,
    poison_target_labels,
)
from monai.bundle import ConfigParser
from PIL import Image

from common.data.datalist import load_datalist
from common.data.io import domain_transform
from common.engines import SIFATrainer, SynthMixTrainer
from common.evaluation import INSPECTOR_INPUTS, ORACLE_INPUTS
from common.inference import translate
from common.metrics import evaluate_segmentation
from common.networks import SIFAEncoder, SIFASegmentationNetwork, SIFASegmenter, TranslateThenSegment
from common.reproduce import run_matrix

BUNDLE = Path(__file__).resolve().parents[1] / "bundles" / "synthmix"
QUICK = ["configs/train.yaml", "configs/quick.yaml"]
DATA = "cardiac_32_5_reverse"  # quick.yaml's dataset folder: MR (labelled) -> CT
CLASSES = ["ascending_aorta", "left_atrium", "left_ventricle", "myocardium"]


def quick_network() -> TranslateThenSegment:
    """quick.yaml's release network: the shared encoder (fb 2: 64 channels) and the main segmenter."""
    return TranslateThenSegment(None, SIFASegmentationNetwork(SIFAEncoder(1, 2), SIFASegmenter(64, 5)))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = copy_bundle(tmp_path_factory.mktemp("synthmix"), BUNDLE)
    log = bundle_run(root, "training", QUICK)
    return root, log


def test_training_runs_sifa_with_the_inspector_and_writes_the_release_network(trained):
    root, log = trained
    assert "generating the synthetic 'cardiac' task" in log and "Stage 'adaptation': training" in log
    resume = torch.load(root / "models" / "adaptation" / "resume.pt", map_location="cpu", weights_only=False)
    optimizers = {f"optimizer_{name}" for name in SynthMixTrainer.OPTIMIZERS}
    assert set(resume) == set(SynthMixTrainer.NETWORKS) | optimizers | {"trainer", "pool_A", "pool_B"}
    assert resume["trainer"]["iteration"] == 2 * 3
    for loss in ("G_AB_cycle:", "seg_ce:", "seg_adv_P:", "D_A_aux:", "G_AB_mix:", "U_BA_mix:", "I_cls:"):
        assert loss in log
    state = torch.load(root / "models" / "model.pt", map_location="cpu", weights_only=True)
    network = quick_network()
    network.load_state_dict(state)  # the shared encoder and the main segmenter, nothing else
    assert all(torch.equal(resume["E_B"][k], state[f"segmenter.encoder.{k}"]) for k in resume["E_B"])
    assert all(torch.equal(resume["S"][k], state[f"segmenter.segmenter.{k}"]) for k in resume["S"])
    # Validated after each epoch on source validation images translated by G_AB.
    assert log.count("Metrics -- val_mean_dice: ") == 2
    assert (root / "eval" / "images_latest.png").is_file()


def test_the_source_validation_sees_translated_sources(trained):
    root, _ = trained
    parser = ConfigParser()
    parser.read_config([str(root / c) for c in QUICK])
    parser["bundle_root"] = str(root)
    assert parser.get_parsed_content("source_pipeline").translator is parser.get_parsed_content("generator_ab")
    parser["method"] = "no_adaptation"
    assert parser.get_parsed_content("source_pipeline").translator.__class__.__name__ == "Identity"


def test_resume_continues_the_stage(trained, tmp_path):
    root = copy_bundle(tmp_path / "bundle", trained[0], keep_data=True)
    (root / "models").mkdir()
    (root / "models" / "adaptation").mkdir()
    saved = trained[0] / "models" / "adaptation" / "resume.pt"
    (root / "models" / "adaptation" / "resume.pt").write_bytes(saved.read_bytes())
    log = bundle_run(root, "training", QUICK, "--resume", "true", "--epochs", "3")
    assert "Stage 'adaptation': resuming from" in log and "Restored all variables" in log
    assert "SynthMixTrainer - INFO - Epoch[3] Complete" in log and "Epoch[1] Complete" not in log
    after = torch.load(root / "models" / "adaptation" / "resume.pt", map_location="cpu", weights_only=False)
    assert after["trainer"]["iteration"] == 3 * 3


def test_target_labels_are_never_read(tmp_path, synthetic):
    """Every target label (training, validation, test, oracle) points to a corrupt file: reading
    any of them would fail the run."""
    poisoned = poison_target_labels(Path(synthetic("cardiac", size=32, subjects=5, reverse=True)), "corrupt.nii.gz")
    root = copy_bundle(tmp_path / "bundle", BUNDLE)
    assert_methods_never_read_target_labels(
        root, poisoned, QUICK, ["synthmix", "sifa", "no_adaptation"], "--epochs", "1"
    )


def test_evaluation_segments_every_slice_and_scores_every_class_per_volume(trained):
    root, _ = trained
    bundle_run(root, "evaluating", [*QUICK, "configs/evaluate.yaml"])
    metrics = json.loads((root / "eval" / "metrics.json").read_text())
    datalist = load_datalist(root / "data" / DATA / "datalist.json")
    assert datalist["domains"]["target"]["modality"] == "CT"
    assert metrics["classes"] == CLASSES and len(metrics["per_volume"]) == len(datalist["target"]["test"])
    assert {f"dice_{c}" for c in CLASSES} | {f"assd_{c}" for c in CLASSES} <= set(metrics["std"])
    # The first volume's scores, recomputed from the release weights with every slice predicted.
    network = quick_network()
    network.load_state_dict(torch.load(root / "models" / "model.pt", map_location="cpu", weights_only=True))
    entry = datalist["target"]["test"][0]
    volume = domain_transform(datalist, "target", ("image", "label"))(
        {"image": entry["image"], "label": entry["label"]}
    )
    prediction = translate(network.eval(), volume["image"])[0].numpy().round().astype(int)
    label = np.asarray(volume["label"][0]).round().astype(int)
    assert prediction.shape == label.shape  # no remainder slice left out
    spacing = tuple(float(s) for s in volume["label"].pixdim[:3])
    expected = evaluate_segmentation(prediction, label, {str(k + 1): c for k, c in enumerate(CLASSES)}, spacing=spacing)
    assert metrics["per_volume"][0]["dice"] == pytest.approx(expected["mean"]["dice"])
    assert metrics["per_volume"][0]["dice_myocardium"] == pytest.approx(expected["per_class"]["myocardium"]["dice"])
    source = json.loads((root / "eval" / "source" / "metrics.json").read_text())
    assert len(source["per_volume"]) == len(datalist["source"]["test"])
    # G_AB against the oracle translation, next to the untranslated MR (identity_*), per source test volume.
    translation = json.loads((root / "eval" / "translation" / "metrics.json").read_text())
    assert len(translation["per_volume"]) == len(datalist["source"]["test"])
    assert 0 < translation["mean"]["nmae"] != translation["mean"]["identity_nmae"] > 0  # G_AB was applied
    # The Inspector probe: accuracies in [0, 1] for the five inputs and the oracle's mixes, and the figure.
    probe = json.loads((root / "eval" / "inspector" / "metrics.json").read_text())
    assert set(probe["mean"]) == {f"inspector_accuracy_{name}" for name in INSPECTOR_INPUTS + ORACLE_INPUTS}
    assert all(0 <= value <= 1 for value in probe["mean"].values())
    assert Image.open(root / "eval" / "inspector" / "mixes.png").size[0] > 700


def test_inference_writes_label_maps_with_the_inputs_geometry(trained, tmp_path):
    root, _ = trained
    assert_label_maps(root, root / "data" / DATA / "datalist.json", tmp_path, quick_network())


def test_two_process_ddp(trained, tmp_path):
    root = copy_bundle(tmp_path / "bundle", trained[0], keep_data=True)
    log = ddp_run(root, QUICK, port=29661)
    assert log.count("Epoch: 2/2, Iter: 3/3") == 1  # handlers on rank 0 only
    resume = torch.load(root / "models" / "adaptation" / "resume.pt", map_location="cpu", weights_only=False)
    assert resume["trainer"]["iteration"] == 6 and not any(k.startswith("module.") for k in resume["E_B"])
    quick_network().load_state_dict(torch.load(root / "models" / "model.pt", map_location="cpu", weights_only=True))


def test_another_run_s_inspector_probes_sifa_s_translations(trained, matrix, tmp_path):
    """`--inspector_from`: the SynthMix run's Inspector judges the SIFA run's G_AB. On inputs that
    do not involve G_AB it answers as in the SynthMix run's own probe; on S_mix it differs."""
    synthmix, (root, out, _) = trained[0], matrix
    evaluate = [*QUICK, "configs/evaluate.yaml"]
    own, foreign = tmp_path / "own", tmp_path / "foreign"
    bundle_run(root, "evaluating", evaluate, "--ckpt_dir", str(synthmix / "models"), "--output_dir", str(own))
    bundle_run(
        root,
        "evaluating",
        evaluate,
        "--method",
        "sifa",
        "--ckpt_dir",
        str(out / "runs" / "sifa" / "models"),
        "--output_dir",
        str(foreign),
        "--inspector_from",
        str(synthmix / "models"),
    )
    own, foreign = (json.loads((d / "inspector" / "metrics.json").read_text())["mean"] for d in (own, foreign))
    for name in ("source", "target", "unaligned", *ORACLE_INPUTS):
        assert foreign[f"inspector_accuracy_{name}"] == own[f"inspector_accuracy_{name}"]
    assert foreign["inspector_accuracy_source_mix"] != own["inspector_accuracy_source_mix"]


# In the matrix's order (the rows' order).
MATRIX_RUNS = ["no_adaptation", "supervised", "sifa", "ct_mr_cutmix", "no_image_discriminators", "k4", "abdomen_mixup"]


@pytest.fixture(scope="module")
def matrix(trained, tmp_path_factory):
    """`common.reproduce synthmix --preset quick --variants ...`: one run of each kind of row."""
    root = copy_bundle(tmp_path_factory.mktemp("synthmix_matrix"), trained[0], keep_data=True)
    out = tmp_path_factory.mktemp("synthmix_reproduce")
    return root, out, run_matrix(root, "quick", out, variants=MATRIX_RUNS)


@pytest.mark.parametrize(
    "variant, networks",
    [
        ("no_adaptation", None),
        ("supervised", None),
        ("sifa", set(SIFATrainer.NETWORKS)),
        ("no_image_discriminators", set(SynthMixTrainer.NETWORKS) - {"D_A", "D_B"}),
        ("k4", set(SynthMixTrainer.NETWORKS)),
        ("ct_mr_cutmix", set(SynthMixTrainer.NETWORKS)),
        ("abdomen_mixup", set(SynthMixTrainer.NETWORKS)),
    ],
)
def test_every_row_trains_its_networks_from_the_method_id(matrix, variant, networks):
    _, out, _ = matrix
    models = out / "runs" / variant / "models"
    stage = "adaptation" if networks else "segmenter"
    assert {p.name for p in models.iterdir() if p.is_dir()} == {stage}
    saved = torch.load(models / stage / "resume.pt", map_location="cpu", weights_only=False)
    if networks:
        assert networks <= set(saved) and not (set(SynthMixTrainer.NETWORKS) - networks) & set(saved)
    quick_network_state = torch.load(models / "model.pt", map_location="cpu", weights_only=True)
    if not variant.startswith("abdomen"):
        quick_network().load_state_dict(quick_network_state)
    assert (out / "runs" / variant / "eval" / "inspector").is_dir() == (networks is not None and "I" in networks)
    assert (out / "runs" / variant / "eval" / "translation").is_dir() == (networks is not None)  # G_AB scored


def test_matrix_rows_directions_tasks_and_the_k4_inspector(matrix):
    root, out, rows = matrix
    assert [r["variant"] for r in rows] == MATRIX_RUNS
    assert len({r["dice"] for r in rows}) == len(rows)  # seven different networks
    assert all(np.isnan(r["dice_myocardium"]) == r["variant"].startswith("abdomen") for r in rows)
    table = (out / "results.md").read_text()
    assert "--variants " + " ".join(MATRIX_RUNS) in table and "**INSPECTOR/INSPECTOR_ACCURACY_SOURCE_MIX**" in table
    # The Inspector of k4 maps to a 4 x 4 grid: no decoder upsampling (quick: 32 px, bottleneck 4).
    inspector = torch.load(out / "runs" / "k4" / "models" / "adaptation" / "resume.pt", weights_only=False)["I"]
    assert {k for k in inspector if k.startswith("decoder.")} == {"decoder.0.weight", "decoder.0.bias"}
    # Directions and tasks: MR -> CT by default, CT -> MR with data_reverse false, the abdomen task.
    datalists = {p.name: load_datalist(p / "datalist.json") for p in (root / "data").iterdir()}
    assert datalists[DATA]["domains"]["source"]["modality"] == "MR"
    assert datalists["cardiac_32_5"]["domains"]["target"]["modality"] == "MR"
    assert datalists["abdomen_32_5"]["domains"]["target"]["modality"].startswith("MR")
    # Only the supervised upper bound reads target training labels, from a dataset generated with them.
    assert all("oracle_label" in e for e in datalists[f"{DATA}_oracle"]["target"]["training"])
    assert not any("oracle_label" in e for e in datalists[DATA]["target"]["training"])


def test_options_are_scored_on_the_labelled_validation_split(trained, tmp_path):
    root = copy_bundle(tmp_path / "bundle", trained[0], keep_data=True)
    rows = run_matrix(root, "quick", tmp_path / "out", matrix_name="options", variants=["lsgan"])
    assert [r["variant"] for r in rows] == ["lsgan"] and 0 <= rows[0]["dice"] <= 1
    datalist = load_datalist(root / "data" / f"{DATA}_labelled_validation" / "datalist.json")
    scored = json.loads((tmp_path / "out" / "runs" / "lsgan" / "eval" / "metrics.json").read_text())
    assert [r["volume"] for r in scored["per_volume"]] == [
        Path(e["image"]).name for e in datalist["target"]["validation"]
    ]


def test_an_unknown_method_is_named():
    parser = ConfigParser()
    parser.read_config(str(BUNDLE / "configs" / "train.yaml"))
    parser["method"] = "synthmixx"
    with pytest.raises(RuntimeError) as raised:  # MONAI wraps the config's error, which it chains
        parser.get_parsed_content("mixing")
    assert "Unknown SynthMix bundle method 'synthmixx'; expected one of synthmix, mixup" in str(raised.value.__cause__)


def test_reproduce_matrix_rows_are_the_papers_tables():
    table = yaml.safe_load((BUNDLE / "configs" / "reproduce.yaml").read_text())["variants"]
    methods = ["no_adaptation", "supervised", "sifa", "mixup", "cutmix", "synthmix"]
    assert [table[m]["method"] for m in methods] == methods and not any("data_reverse" in table[m] for m in methods)
    assert all(table[f"ct_mr_{m}"] == {"method": m, "data_reverse": False} for m in methods)
    assert all(table[f"abdomen_{m}"] == {"method": m, "task": "abdomen", "data_reverse": False} for m in methods)
    assert table["k4"]["k"] == 4 and table["k32"]["k"] == 32
    assert table["no_image_discriminators"] == {"method": "synthmix", "image_discriminators": False}


def test_bundle_check_and_torchscript_export(trained):
    assert_check_and_export(trained[0], BUNDLE, quick_network(), in_channels=1)
