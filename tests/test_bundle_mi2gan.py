"""The MI2GAN bundle end to end with quick.yaml, through `python -m monai.bundle` as users run it:
both training stages for every method, resume, target labels never read, evaluation of
translate-then-segment, inference (label maps) and translation only, 2-process DDP (gloo on
CPU), the experiment matrix and `common.bundle check`."""

from __future__ import annotations

import json
import logging
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from bundle_helpers import (
    ENV,
    assert_check_and_export,
    assert_same_state,
    bundle_command,
    bundle_infer,
    bundle_run,
    copy_bundle,
    ddp_run,
    kill_during_checkpoint_write,
    poison_target_labels,
    resume_in_process,
)
from monai.networks.nets import BasicUNet
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from common.data.datalist import load_datalist
from common.data.io import domain_transform
from common.metrics import dice_score, evaluate_segmentation
from common.networks import ResnetGenerator, TranslateThenSegment, sub_state_dict
from common.reproduce import run_matrix

BUNDLE = Path(__file__).resolve().parents[1] / "bundles" / "mi2gan"
QUICK = ["configs/train.yaml", "configs/quick.yaml"]
DATA = "polyp_32_10"  # quick.yaml's dataset folder
ITERATIONS = 2 * 4  # quick.yaml: 2 epochs of 4 iterations
MI2GAN_NETWORKS = {"G_AB", "G_BA", "D_A", "D_B", "Enc_A", "Dec_A", "Enc_B", "Dec_B", "D_MI"}


def quick_pipeline(translate: bool = True) -> TranslateThenSegment:
    """quick.yaml's networks."""
    translator = ResnetGenerator(3, 3, ngf=8, n_blocks=2) if translate else None
    return TranslateThenSegment(
        translator, BasicUNet(spatial_dims=2, in_channels=3, out_channels=2, features=(8, 8, 16, 16, 32, 8))
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = copy_bundle(tmp_path_factory.mktemp("mi2gan"), BUNDLE)
    log = bundle_run(root, "training", QUICK)
    return root, log


def test_training_writes_the_pipeline_and_a_resume_checkpoint(trained):
    root, log = trained
    assert "generating the synthetic 'polyp' task" in log
    state = torch.load(root / "models" / "model.pt", map_location="cpu", weights_only=True)
    quick_pipeline().load_state_dict(state)  # translate-then-segment: G_AB and the segmenter
    segmenter = torch.load(root / "models" / "segmenter.pt", map_location="cpu", weights_only=True)
    assert all(torch.equal(segmenter[k], state[f"segmenter.{k}"]) for k in segmenter)
    resume = torch.load(root / "models" / "translation" / "resume.pt", map_location="cpu", weights_only=False)
    assert set(resume) == MI2GAN_NETWORKS | {
        "optimizer_generators",
        "optimizer_discriminators",
        "optimizer_content",
        "pool_A",
        "pool_B",
        "trainer",
        "lr_scheduler_generators",
        "lr_scheduler_discriminators",
        "lr_scheduler_content",
    }
    assert resume["trainer"]["iteration"] == ITERATIONS
    assert all(torch.equal(resume["G_AB"][k], state[f"translator.{k}"]) for k in resume["G_AB"])
    # The segmenter stage ran first, then eq. 7 with its DV and distillation terms.
    assert log.index("Stage 'segmenter': done") < log.index("Stage 'translation': training")
    assert "MI_A:" in log and "AE_dis_B:" in log
    assert (root / "eval" / "images_latest.png").is_file()
    # Validation of the segmenter on the labelled source validation images after each of its 2
    # epochs, in the log and TensorBoard; the polyp target has no validation references, so the
    # translation stage is not validated (said in the log); best-model files only with save_best.
    assert log.count("Metrics -- val_mean_dice: ") == 2 and "target.validation has no references" in log
    events = EventAccumulator(str(root / "eval" / "tensorboard")).Reload()
    assert [e.step for e in events.Scalars("val_mean_dice")] == [1, 2]
    assert not (root / "models" / "segmenter_best.pt").exists()


@pytest.fixture(scope="module")
def matrix(trained, tmp_path_factory):
    """`common.reproduce mi2gan --preset quick`: the four rows of Table 1 (each trained once, here),
    through the bundle's configs with `--method` overrides."""
    root = copy_bundle(tmp_path_factory.mktemp("mi2gan_matrix"), trained[0], keep_data=True)
    path = root / "configs" / "reproduce.yaml"
    table = yaml.safe_load(path.read_text())
    assert table["settings"] == {"seed": [0, 1]}  # the shipped matrix repeats every row over two seeds
    table["settings"] = {}  # one seed here
    path.write_text(yaml.safe_dump(table, sort_keys=False))
    out = tmp_path_factory.mktemp("mi2gan_reproduce")
    return out, run_matrix(root, "quick", out)


@pytest.mark.parametrize(
    "method, networks",
    [
        ("direct", None),
        ("cyclegan", {"G_AB", "G_BA", "D_A", "D_B"}),
        ("mi2gan_no_dmi", MI2GAN_NETWORKS - {"D_MI"}),
        ("mi2gan", MI2GAN_NETWORKS),
    ],
)
def test_every_method_trains_from_the_method_id(matrix, method, networks):
    models = matrix[0] / "runs" / method / "models"
    state = torch.load(models / "model.pt", map_location="cpu", weights_only=True)
    quick_pipeline(translate=method != "direct").load_state_dict(state)
    assert (models / "segmenter" / "resume.pt").is_file()
    if networks is None:  # direct transfer: the segmenter only, no translation stage
        assert not (models / "translation").exists()
        return
    resume = torch.load(models / "translation" / "resume.pt", map_location="cpu", weights_only=False)
    assert networks <= set(resume) and not (MI2GAN_NETWORKS - networks) & set(resume)
    assert resume["trainer"]["iteration"] == ITERATIONS


def test_options_are_compared_on_a_labelled_validation_split(trained, tmp_path, caplog):
    """`common.reproduce mi2gan --matrix options`: the MI term's options (two of them here), each
    trained on the usual data and scored on the target centre's validation images, labelled for
    this purpose; the test split is never scored."""
    root = copy_bundle(tmp_path / "bundle", trained[0], keep_data=True)
    path = root / "configs" / "options.yaml"
    matrix = yaml.safe_load(path.read_text())
    matrix["variants"] = {k: matrix["variants"][k] for k in ("literal", "product_jsd")}
    path.write_text(yaml.safe_dump(matrix, sort_keys=False))
    out = tmp_path / "out"
    with caplog.at_level(logging.INFO, logger="common.reproduce"):
        rows = run_matrix(root, "quick", out, matrix_name="options")
    assert [r["variant"] for r in rows] == ["literal", "product_jsd"]
    datalist = load_datalist(root / "data" / "polyp_32_10_labelled_validation" / "datalist.json")
    plain = load_datalist(trained[0] / "data" / "polyp_32_10" / "datalist.json")
    assert [Path(e["image"]).name for e in datalist["target"]["training"]] == [
        Path(e["image"]).name for e in plain["target"]["training"]
    ]
    validation = [Path(e["image"]).name for e in datalist["target"]["validation"]]
    for row in rows:
        metrics = json.loads((out / "runs" / row["variant"] / "eval" / "metrics.json").read_text())
        assert [v["volume"] for v in metrics["per_volume"]] == validation
        assert row["dice"] == metrics["mean"]["dice"] and 0 <= row["dice"] <= 1
    # Each run got its options and the common overrides.
    assert "'mi_marginal': 'product', 'mi_bound': 'jsd', 'ckpt_dir'" in caplog.text
    assert "'data_labelled_validation': True, 'evaluate_split': 'validation', 'mi_marginal': 'real'" in caplog.text
    markdown = (out / "results.md").read_text()
    assert "--matrix options" in markdown and "`evaluate_split: validation`" in markdown


def test_resume_continues_and_keeps_the_segmenter(trained, tmp_path):
    root = copy_bundle(tmp_path / "bundle", trained[0], keep_data=True)
    shutil.copytree(trained[0] / "models", root / "models")
    log = bundle_run(root, "training", QUICK, "--resume", "true", "--decay_epochs", "2")
    assert "Stage 'segmenter': finished earlier" in log and "Stage 'segmenter': training" not in log
    assert "Restored all variables" in log and "Epoch: 3/3" in log and "Epoch: 1/3" not in log
    resume = torch.load(root / "models" / "translation" / "resume.pt", map_location="cpu", weights_only=False)
    assert resume["trainer"]["iteration"] == 3 * 4


def test_a_run_killed_in_stage_2_resumes_stage_2(trained, tmp_path):
    """SIGKILL during the translation stage (after its first epoch's checkpoint), then `--resume
    true`: the segmenter stage is reused and the translation continues from its checkpoint."""
    root = copy_bundle(tmp_path / "bundle", trained[0], keep_data=True)
    longer = ("--epoch_length", "30")  # 2 epochs of 30 iterations: time to kill it in between
    checkpoint = root / "models" / "translation" / "resume.pt"
    output = open(tmp_path / "killed.log", "w")
    process = subprocess.Popen(
        bundle_command("training", QUICK, *longer), cwd=root, env=ENV, stdout=output, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 300
        while not checkpoint.is_file() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait()
        output.close()
    assert process.returncode == -signal.SIGKILL, (
        "the run ended before it was killed:\n" + (tmp_path / "killed.log").read_text()[-3000:]
    )
    killed_at = torch.load(checkpoint, map_location="cpu", weights_only=False)["trainer"]["iteration"]
    assert 30 <= killed_at < 60 and not (root / "models" / "model.pt").exists()  # killed in stage 2, no release yet

    log = bundle_run(root, "training", QUICK, *longer, "--resume", "true")
    assert "Stage 'segmenter': finished earlier" in log and "Stage 'segmenter': training" not in log
    assert "Stage 'translation': resuming from" in log and f"(iteration {killed_at})" in log
    assert "Restored all variables" in log and "Epoch: 1/2" not in log and "Epoch: 2/2" in log
    resume = torch.load(checkpoint, map_location="cpu", weights_only=False)
    assert resume["trainer"]["iteration"] == 60
    quick_pipeline().load_state_dict(torch.load(root / "models" / "model.pt", map_location="cpu", weights_only=True))


@pytest.mark.parametrize("stage", ["segmenter", "translation"])
def test_a_kill_during_a_checkpoint_write_resumes_that_stage(trained, tmp_path, caplog, stage):
    """SIGKILL halfway through writing a stage's second checkpoint (of 2): its first is intact,
    resume continues that stage from it (weights, optimiser, schedules and pools as saved; a
    finished segmenter stage is reused) and the later stage follows."""
    root = copy_bundle(tmp_path / "bundle", trained[0], keep_data=True)
    kill_during_checkpoint_write(root, QUICK, stage, 2)
    folder = root / "models" / stage
    assert [p.name for p in folder.iterdir() if p.suffix == ".tmp"]  # the half-written temporary file
    saved = torch.load(folder / "resume.pt", map_location="cpu", weights_only=True)
    assert saved["trainer"]["iteration"] == saved["trainer"]["epoch_length"]  # one epoch of two
    assert not (root / "models" / "model.pt").exists()
    if stage == "translation":
        segmenter = torch.load(root / "models" / "segmenter.pt", weights_only=True)
    with caplog.at_level(logging.INFO):
        seen = resume_in_process(root, QUICK)
    assert f"Stage {stage!r}: resuming from {folder / 'resume.pt'} (iteration {saved['trainer']['iteration']})" in (
        caplog.text
    )
    iteration, state = seen[stage]
    assert iteration == saved["trainer"]["iteration"] > 0
    assert_same_state(state, {k: v for k, v in saved.items() if k != "trainer"})
    if stage == "segmenter":
        assert set(state) == {"network", "optimizer"} and seen["translation"][0] == 0  # then stage 2 from the start
    else:
        assert "Stage 'segmenter': finished earlier" in caplog.text and "segmenter" not in seen
        assert {"pool_A", "pool_B", "lr_scheduler_generators", "D_MI", "optimizer_content"} <= set(state)
    assert not [p for p in (root / "models").rglob("*.tmp")]
    for name in ("segmenter", "translation"):
        checkpoint = torch.load(root / "models" / name / "resume.pt", weights_only=True)
        assert checkpoint["trainer"]["iteration"] == 2 * checkpoint["trainer"]["epoch_length"]
    pipeline = torch.load(root / "models" / "model.pt", weights_only=True)
    quick_pipeline().load_state_dict(pipeline)
    if stage == "translation":  # the reused segmenter is the one trained before the kill
        assert all(torch.equal(pipeline[f"segmenter.{k}"], v) for k, v in segmenter.items())


def test_target_labels_are_never_read(tmp_path, synthetic):
    """Every target label (training, validation, test) points to a corrupt file: reading any of
    them would fail the run. Training labels are also dropped by the datalist loader, with a warning."""
    datalist_path = Path(synthetic("polyp", size=32, subjects=10))
    poisoned = poison_target_labels(datalist_path, "corrupt_label.png")
    root = copy_bundle(tmp_path / "bundle", BUNDLE)
    log = bundle_run(root, "training", QUICK, "--datalist", str(poisoned))
    assert (root / "models" / "model.pt").is_file() and not (root / "data").exists()
    with pytest.raises(
        AssertionError, match="unable to load .*corrupt_label.png"
    ):  # evaluation reads them: the poison works
        bundle_run(root, "evaluating", [*QUICK, "configs/evaluate.yaml"], "--datalist", str(poisoned))
    assert "MI_A:" in log


def test_evaluation_scores_translate_then_segment(trained):
    root, _ = trained
    log = bundle_run(root, "evaluating", [*QUICK, "configs/evaluate.yaml"])
    assert "examples.png" in log
    metrics = json.loads((root / "eval" / "metrics.json").read_text())
    content = json.loads((root / "eval" / "content" / "metrics.json").read_text())
    datalist = load_datalist(root / "data" / DATA / "datalist.json")
    assert len(metrics["per_volume"]) == len(content["per_volume"]) == len(datalist["target"]["test"])
    assert metrics["classes"] == ["polyp"] and metrics["baselines"] == ["no_adaptation"]
    # One image's numbers, recomputed independently with the saved networks and evaluate_segmentation.
    pipeline = quick_pipeline()
    pipeline.load_state_dict(torch.load(root / "models" / "model.pt", map_location="cpu", weights_only=True))
    pipeline.eval()
    entry = datalist["target"]["test"][0]
    target = domain_transform(datalist, "target", ("image", "label"))(
        {"image": entry["image"], "label": entry["label"]}
    )
    reference = domain_transform(datalist, "source", ("image",))({"image": entry["reference"]})["image"]
    label = np.asarray(target["label"][0]).round().astype(int)
    with torch.no_grad():
        direct = pipeline.segmenter(target["image"][None]).argmax(1)[0].numpy()
        ceiling = pipeline.segmenter(reference[None]).argmax(1)[0].numpy()
        adapted = pipeline(target["image"][None])[0, 0].numpy()
    row = metrics["per_volume"][0]
    for prefix, prediction in (("", adapted), ("no_adaptation_", direct)):
        expected = evaluate_segmentation(prediction, label, {"1": "polyp"})
        for metric in ("dice", "assd", "hd95"):
            assert row[f"{prefix}{metric}"] == pytest.approx(expected["mean"][metric])
            assert row[f"{prefix}{metric}_polyp"] == pytest.approx(expected["per_class"]["polyp"][metric])
    assert metrics["mean"]["dice"] == pytest.approx(np.mean([r["dice"] for r in metrics["per_volume"]]))
    assert metrics["std"]["no_adaptation_dice"] == pytest.approx(
        np.std([r["no_adaptation_dice"] for r in metrics["per_volume"]])
    )
    csv_rows = (root / "eval" / "metrics.csv").read_text().splitlines()
    assert csv_rows[0].startswith("volume,dice,assd,hd95,dice_polyp") and csv_rows[-2].startswith("mean,")
    for figure in ("metrics.png", "examples.png"):
        assert Image.open(root / "eval" / figure).size[0] > 300
    # Content preservation, the extra of translate-then-segment: against the reference rendering.
    row = content["per_volume"][0]
    assert row["identity_dice"] == pytest.approx(dice_score(direct == 1, label == 1))
    assert row["reference_dice"] == pytest.approx(dice_score(ceiling == 1, label == 1))
    assert row["dice"] == pytest.approx(dice_score(adapted == 1, label == 1))
    assert row["agreement_dice"] == pytest.approx(dice_score(adapted == 1, ceiling == 1))
    assert 0 < content["mean"]["nmae"] < 1 and 0 < content["mean"]["identity_nmae"] < 1
    with np.load(root / "eval" / "content" / "examples.npz") as examples:
        np.testing.assert_allclose(examples["source_0"], target["image"].numpy(), atol=1e-6)
        np.testing.assert_allclose(examples["reference_0"], reference.numpy(), atol=1e-6)


def test_inference_writes_label_maps(trained, tmp_path):
    root, _ = trained
    datalist_path = root / "data" / DATA / "datalist.json"
    bundle_infer(root, datalist_path, tmp_path)
    datalist = load_datalist(datalist_path)
    inputs = [Path(e["image"]) for e in datalist["target"]["test"]]  # the target centre's test images
    outputs = sorted(tmp_path.glob("*_seg.png"))
    assert [o.name.replace("_seg", "") for o in outputs] == sorted(i.name for i in inputs)
    written = np.asarray(Image.open(tmp_path / inputs[0].name.replace(".png", "_seg.png")))
    pipeline = quick_pipeline()
    pipeline.load_state_dict(torch.load(root / "models" / "model.pt", map_location="cpu", weights_only=True))
    image = domain_transform(datalist, "target", ("image",))({"image": str(inputs[0])})["image"]
    with torch.no_grad():
        expected = pipeline.eval()(image[None])[0, 0].numpy().astype(np.uint8)
    assert set(np.unique(written)) <= {0, 1}
    np.testing.assert_array_equal(written, expected.T)  # PIL rows are the array's second axis


def test_translate_config_uses_the_translator_only(trained, tmp_path):
    root, _ = trained
    datalist_path = root / "data" / DATA / "datalist.json"
    bundle_infer(root, datalist_path, tmp_path, "configs/translate.yaml")
    datalist = load_datalist(datalist_path)
    first = Path(datalist["target"]["test"][0]["image"])
    written = np.asarray(Image.open(tmp_path / first.name.replace(".png", "_trans.png"))).astype(float)
    generator = ResnetGenerator(3, 3, ngf=8, n_blocks=2)
    state = torch.load(root / "models" / "model.pt", map_location="cpu", weights_only=True)
    generator.load_state_dict(sub_state_dict(state, "translator"))
    image = domain_transform(datalist, "target", ("image",))({"image": str(first)})["image"]
    with torch.no_grad():
        expected = (generator.eval()(image[None])[0].numpy() + 1) / 2 * 255
    assert np.abs(written - np.moveaxis(expected, 0, -1).swapaxes(0, 1)).max() <= 1.0  # 8-bit rounding


def test_two_process_ddp(trained, tmp_path):
    root = copy_bundle(tmp_path / "bundle", trained[0], keep_data=True)
    log = ddp_run(root, QUICK, port=29641)
    assert log.count("Epoch: 2/2, Iter: 4/4") == 1  # handlers on rank 0 only
    resume = torch.load(root / "models" / "translation" / "resume.pt", map_location="cpu", weights_only=False)
    assert resume["trainer"]["iteration"] == ITERATIONS and "D_MI" in resume
    assert not any(k.startswith("module.") for k in resume["D_MI"])  # bare modules saved, not the DDP wrappers
    quick_pipeline().load_state_dict(torch.load(root / "models" / "model.pt", map_location="cpu", weights_only=True))


def test_matrix_rows_share_one_segmenter(matrix):
    """Every run trains the same segmenter (same seed), so direct transfer's Dice is every run's
    untranslated baseline."""
    out, rows = matrix
    assert [r["variant"] for r in rows] == ["direct", "cyclegan", "mi2gan_no_dmi", "mi2gan"]
    direct = rows[0]
    assert direct["dice"] == pytest.approx(direct["no_adaptation_dice"])  # no translation
    assert len({r["no_adaptation_dice"] for r in rows}) == 1
    assert {"dice", "assd", "agreement_dice", "nmae", "ssim", "no_adaptation_assd"} <= set(direct)
    assert len({r["nmae"] for r in rows[1:]}) == 3  # three different translators
    table = (out / "results.md").read_text()
    assert "| mi2gan_no_dmi |" in table and "| no adaptation |" in table
    # What D_MI separates is measured where there is a D_MI.
    critic = json.loads((out / "runs" / "mi2gan" / "eval" / "critic" / "critic.json").read_text())
    assert 0 <= critic["content_separation"] <= 1 and 0 <= critic["translation_separation"] <= 1
    assert critic["images"] == 2 and critic["split"] == "test"
    assert not (out / "runs" / "mi2gan_no_dmi" / "eval" / "critic").exists()


def test_bundle_check_and_torchscript_export(trained):
    assert_check_and_export(trained[0], BUNDLE, quick_pipeline(), in_channels=3)
