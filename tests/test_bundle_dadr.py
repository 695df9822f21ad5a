"""The DADR bundle end to end with quick.yaml, through `python -m monai.bundle` as users run it:
both stages (disentanglement, then the U-Net on content-only source images), per-stage resume,
target labels never read, evaluation per volume and organ with the content-space probe and the
paper's figures, inference as one label-map network, 2-process DDP and `common.bundle check`."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from bundle_helpers import (
    assert_check_and_export,
    assert_label_maps,
    bundle_run,
    copy_bundle,
    ddp_run,
    poison_target_labels,
)
from monai.bundle import ConfigParser
from monai.networks.nets import BasicUNet
from PIL import Image

from common.data.datalist import DatalistError, load_datalist
from common.data.datasets import oracle_dataset
from common.data.io import domain_transform
from common.engines import load_stage_networks
from common.inference import translate
from common.metrics import evaluate_segmentation
from common.networks import AdaINDecoder, ContentOnlyImage, DisentangledContentEncoder, TranslateThenSegment
from common.reproduce import run_matrix

BUNDLE = Path(__file__).resolve().parents[1] / "bundles" / "dadr"
QUICK = ["configs/train.yaml", "configs/quick.yaml"]
DATA = "abdomen_32_5"  # quick.yaml's dataset folder
DADR_NETWORKS = {"Ec_A", "Es_A", "G_A", "Ec_B", "Es_B", "G_B", "D_A", "D_B"}
ORGANS = ["liver", "right_kidney", "left_kidney", "spleen"]


def quick_pipeline(content_encoder: str = "target") -> TranslateThenSegment:
    """quick.yaml's release network: a content encoder, the source decoder (identity AdaIN), the U-Net."""
    render = ContentOnlyImage(
        DisentangledContentEncoder(1, 4, n_downsampling=2, n_res=1), AdaINDecoder(1, 16, 2, n_res=1, mlp_dim=16)
    )
    return TranslateThenSegment(render, BasicUNet(2, 1, 5, features=(8, 8, 16, 16, 32, 8)))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = copy_bundle(tmp_path_factory.mktemp("dadr"), BUNDLE)
    log = bundle_run(root, "training", QUICK)
    return root, log


def test_training_runs_both_stages_and_writes_the_release_network(trained):
    root, log = trained
    assert "generating the synthetic 'abdomen' task" in log
    assert log.index("Stage 'disentanglement': done") < log.index("Stage 'segmenter': training")
    resume = torch.load(root / "models" / "disentanglement" / "resume.pt", map_location="cpu", weights_only=False)
    assert set(resume) == DADR_NETWORKS | {"optimizer_generators", "optimizer_discriminators", "trainer"}
    assert resume["trainer"]["iteration"] == 2 * 4
    assert "recon_A:" in log and "style_B:" in log and "adv_AB:" in log
    state = torch.load(root / "models" / "model.pt", map_location="cpu", weights_only=True)
    pipeline = quick_pipeline()
    pipeline.load_state_dict(state)  # content encoder of the target, the source decoder, the U-Net
    assert all(torch.equal(resume["Ec_B"][k], state[f"translator.content_encoder.{k}"]) for k in resume["Ec_B"])
    assert all(torch.equal(resume["G_A"][k], state[f"translator.decoder.{k}"]) for k in resume["G_A"])
    segmenter = torch.load(root / "models" / "segmenter.pt", map_location="cpu", weights_only=True)
    assert all(torch.equal(segmenter[k], state[f"segmenter.{k}"]) for k in segmenter)
    # The U-Net stage trained on content-only source images, validated on them after each epoch.
    assert log.count("Metrics -- val_mean_dice: ") == 2
    assert (root / "eval" / "images_latest.png").is_file()


def test_the_unet_trains_on_content_only_source_images(trained):
    """Stage 2's dataset: the source training slices rendered by Ec_A and the decoder, with their labels."""
    root, _ = trained
    parser = ConfigParser()
    parser.read_config([str(root / c) for c in QUICK])
    parser["bundle_root"] = str(root)
    parser["device"] = "$torch.device('cpu')"
    dataset = parser.get_parsed_content("segmentation#dataset")
    assert len(dataset.datasets) == 1  # the source only: no target labels
    dataset = dataset.datasets[0]
    networks = {
        "Ec_A": parser.get_parsed_content("content_encoder_a"),
        "G_A": parser.get_parsed_content("decoder_a"),
    }
    load_stage_networks(root / "models", "disentanglement", networks, "cpu")
    item, raw = dataset[3], dataset.dataset[3]
    assert torch.equal(torch.as_tensor(item["label"]), torch.as_tensor(raw["label"]))
    with torch.no_grad():
        expected = networks["G_A"].eval()(networks["Ec_A"].eval()(raw["image"][None].as_tensor()), None)[0]
    torch.testing.assert_close(item["image"], expected, atol=1e-5, rtol=1e-4)
    assert not torch.allclose(item["image"], torch.as_tensor(raw["image"]), atol=0.05)


def test_resume_reuses_the_disentanglement_and_continues_the_unet(trained, tmp_path):
    root = copy_bundle(tmp_path / "bundle", trained[0], keep_data=True)
    shutil.copytree(trained[0] / "models", root / "models")
    log = bundle_run(root, "training", QUICK, "--resume", "true", "--segmenter_epochs", "3")
    assert "Stage 'disentanglement': finished earlier" in log and "Stage 'disentanglement': training" not in log
    assert "Stage 'segmenter': resuming from" in log and "Restored all variables" in log
    assert "SupervisedTrainer - INFO - Epoch[3] Complete" in log
    assert "SupervisedTrainer - INFO - Epoch[1] Complete" not in log
    before = torch.load(trained[0] / "models" / "segmenter" / "resume.pt", map_location="cpu", weights_only=False)
    after = torch.load(root / "models" / "segmenter" / "resume.pt", map_location="cpu", weights_only=False)
    assert after["trainer"]["iteration"] == before["trainer"]["iteration"] * 3 // 2  # 2 epochs, then the third


def test_target_labels_are_never_read(tmp_path, synthetic):
    """Every target label (training, validation, test) points to a corrupt file: reading any of
    them would fail the run."""
    datalist_path = Path(synthetic("abdomen", size=32, subjects=5))
    poisoned = poison_target_labels(datalist_path, "corrupt_label.nii.gz")
    root = copy_bundle(tmp_path / "bundle", BUNDLE)
    log = bundle_run(root, "training", QUICK, "--datalist", str(poisoned))
    assert (root / "models" / "model.pt").is_file() and not (root / "data").exists()
    assert "Stage 'segmenter': done" in log
    with pytest.raises(AssertionError, match="corrupt_label"):  # evaluation reads them: the poison works
        bundle_run(root, "evaluating", [*QUICK, "configs/evaluate.yaml"], "--datalist", str(poisoned))


def test_evaluation_scores_every_organ_per_volume_and_probes_the_content_space(trained):
    root, _ = trained
    bundle_run(root, "evaluating", [*QUICK, "configs/evaluate.yaml"])
    metrics = json.loads((root / "eval" / "metrics.json").read_text())
    datalist = load_datalist(root / "data" / DATA / "datalist.json")
    assert metrics["classes"] == ORGANS and metrics["distance_unit"] == "mm"
    assert len(metrics["per_volume"]) == len(datalist["target"]["test"])
    assert {f"dice_{o}" for o in ORGANS} | {"assd", "hd95"} <= set(metrics["mean"])
    # The first volume's scores, recomputed with the release weights slice by slice.
    pipeline = quick_pipeline()
    pipeline.load_state_dict(torch.load(root / "models" / "model.pt", map_location="cpu", weights_only=True))
    entry = datalist["target"]["test"][0]
    volume = domain_transform(datalist, "target", ("image", "label"))(
        {"image": entry["image"], "label": entry["label"]}
    )
    prediction = translate(pipeline.eval(), volume["image"])[0].numpy().round().astype(int)
    label = np.asarray(volume["label"][0]).round().astype(int)
    spacing = tuple(float(s) for s in volume["label"].pixdim[:3])
    expected = evaluate_segmentation(prediction, label, {str(k + 1): o for k, o in enumerate(ORGANS)}, spacing=spacing)
    row = metrics["per_volume"][0]
    assert row["dice"] == pytest.approx(expected["mean"]["dice"])
    assert row["dice_liver"] == pytest.approx(expected["per_class"]["liver"]["dice"])
    # The same U-Net on content-only source test volumes.
    source = json.loads((root / "eval" / "source" / "metrics.json").read_text())
    assert len(source["per_volume"]) == len(datalist["source"]["test"])
    # The content space: codes of each target subject against its source rendering.
    probe = json.loads((root / "eval" / "disentanglement" / "metrics.json").read_text())
    assert {"content_gap", "content_only_nmae", "identity_nmae"} <= set(probe["mean"])
    assert probe["mean"]["content_gap"] > 0 and 0 < probe["mean"]["identity_nmae"] < 1
    for figure in ("content_only.png", "translations.png"):
        assert Image.open(root / "eval" / "disentanglement" / figure).size[0] > 300


def test_inference_writes_label_maps_with_the_inputs_geometry(trained, tmp_path):
    root, _ = trained
    assert_label_maps(root, root / "data" / DATA / "datalist.json", tmp_path, quick_pipeline())


def test_two_process_ddp(trained, tmp_path):
    root = copy_bundle(tmp_path / "bundle", trained[0], keep_data=True)
    log = ddp_run(root, QUICK, port=29651)
    assert log.count("Epoch: 2/2, Iter: 4/4") == 1  # handlers on rank 0 only
    resume = torch.load(root / "models" / "disentanglement" / "resume.pt", map_location="cpu", weights_only=False)
    assert resume["trainer"]["iteration"] == 8
    assert not any(k.startswith("module.") for k in resume["Ec_A"])
    quick_pipeline().load_state_dict(torch.load(root / "models" / "model.pt", map_location="cpu", weights_only=True))


@pytest.fixture(scope="module")
def matrix(trained, tmp_path_factory):
    """`common.reproduce dadr --preset quick` without the multi-phase DACGAN row: Table 1's four
    methods, joint-domain learning and DADR on the multi-phase target, each trained once."""
    root = copy_bundle(tmp_path_factory.mktemp("dadr_matrix"), trained[0], keep_data=True)
    path = root / "configs" / "reproduce.yaml"
    table = yaml.safe_load(path.read_text())
    del table["variants"]["dacgan_phases"]
    path.write_text(yaml.safe_dump(table, sort_keys=False))
    out = tmp_path_factory.mktemp("dadr_reproduce")
    return root, out, run_matrix(root, "quick", out)


@pytest.mark.parametrize(
    "variant, stage",
    [
        ("no_adaptation", None),
        ("dacgan", "translation"),
        ("dadr", "disentanglement"),
        ("supervised", None),
        ("joint", "disentanglement"),
        ("dadr_phases", "disentanglement"),
    ],
)
def test_every_method_trains_its_stages_from_the_method_id(matrix, variant, stage):
    _, out, _ = matrix
    models = out / "runs" / variant / "models"
    assert (models / "segmenter" / "resume.pt").is_file()
    assert {p.name for p in models.iterdir() if p.is_dir()} == {"segmenter"} | ({stage} if stage else set())
    metrics = json.loads((out / "runs" / variant / "eval" / "metrics.json").read_text())
    assert metrics["classes"] == ORGANS and (out / "runs" / variant / "eval" / "source" / "metrics.json").is_file()
    assert (out / "runs" / variant / "eval" / "disentanglement").is_dir() == (stage == "disentanglement")
    state = torch.load(models / "model.pt", map_location="cpu", weights_only=True)
    if variant.startswith("dadr") or variant == "joint":  # content-only target image, then the U-Net
        quick_pipeline().load_state_dict(state)
    else:  # the U-Net on the MR as it is
        assert all(k.startswith("segmenter.") for k in state)


def test_matrix_tables_and_oracle_data(matrix):
    root, out, rows = matrix
    assert [r["variant"] for r in rows] == ["no_adaptation", "dacgan", "dadr", "supervised", "joint", "dadr_phases"]
    assert all({"dice", "dice_liver", "assd", "source/dice"} <= set(r) for r in rows)
    assert len({r["dice"] for r in rows}) == len(rows)  # six different U-Nets
    table = (out / "results.md").read_text()
    assert "**SOURCE/DICE**" in table and "| joint |" in table
    # joint trains its U-Net on the dadr run's disentanglement (a copy of its finished checkpoint).
    assert "`joint` reuses the finished disentanglement stage(s) of `dadr`" in table
    checkpoints = [out / "runs" / v / "models" / "disentanglement" / "resume.pt" for v in ("dadr", "joint")]
    assert checkpoints[0].read_bytes() == checkpoints[1].read_bytes()
    # The oracles read target training labels from a dataset generated with them (the same images).
    oracle = load_datalist(root / "data" / f"{DATA}_oracle" / "datalist.json")
    plain = load_datalist(root / "data" / DATA / "datalist.json")
    assert all("oracle_label" in e for e in oracle["target"]["training"])
    assert not any("oracle_label" in e for e in plain["target"]["training"])
    assert (root / "data" / f"{DATA}_phases").is_dir()


def test_neutral_styles_are_compared_on_the_labelled_validation_split(trained, tmp_path, caplog):
    """`common.reproduce dadr --matrix options` (two of its variants here): scored on the MR
    validation volumes, labelled for this purpose; the test split is never scored."""
    root = copy_bundle(tmp_path / "bundle", trained[0], keep_data=True)
    path = root / "configs" / "options.yaml"
    table = yaml.safe_load(path.read_text())
    table["variants"] = {k: table["variants"][k] for k in ("identity_source", "mean_source")}
    table["reuse"] = {"mean_source": table["reuse"]["mean_source"]}
    path.write_text(yaml.safe_dump(table, sort_keys=False))
    with caplog.at_level(logging.INFO):
        rows = run_matrix(root, "quick", tmp_path / "out", matrix_name="options")
    assert [r["variant"] for r in rows] == ["identity_source", "mean_source"]
    # The options differ only in the rendering: one disentanglement, trained once, serves both.
    runs = tmp_path / "out" / "runs"
    first, reused = (runs / v / "models" / "disentanglement" / "resume.pt" for v in ("identity_source", "mean_source"))
    assert first.read_bytes() == reused.read_bytes()
    assert "Run mean_source reuses disentanglement of identity_source" in caplog.text
    assert (
        f"Stage 'disentanglement': finished earlier (iteration 8), reused from {reused}" in caplog.text
    )  # quick: 2 x 4
    assert all({"dice", "source/dice", "content_only_nmae"} <= set(r) for r in rows)
    datalist = load_datalist(root / "data" / f"{DATA}_labelled_validation" / "datalist.json")
    for variant in ("identity_source", "mean_source"):
        scored = json.loads((tmp_path / "out" / "runs" / variant / "eval" / "metrics.json").read_text())
        assert [r["volume"] for r in scored["per_volume"]] == [
            Path(e["image"]).name for e in datalist["target"]["validation"]
        ]


def test_an_unknown_method_is_named():
    parser = ConfigParser()
    parser.read_config(str(BUNDLE / "configs" / "train.yaml"))
    parser["method"] = "dadrr"
    with pytest.raises(RuntimeError) as raised:  # MONAI wraps the config's error, which it chains
        parser.get_parsed_content("segmenter_domains")
    assert "Unknown DADR bundle method 'dadrr'; expected one of dadr, dacgan" in str(raised.value.__cause__)


def test_the_oracle_dataset_needs_oracle_labels(trained):
    datalist = load_datalist(trained[0] / "data" / DATA / "datalist.json")
    with pytest.raises(DatalistError, match=r"target.training\[0\].*has no `oracle_label`"):
        oracle_dataset(datalist)


def test_bundle_check_and_torchscript_export(trained):
    assert_check_and_export(trained[0], BUNDLE, quick_pipeline(), in_channels=1)
