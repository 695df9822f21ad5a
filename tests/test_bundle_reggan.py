"""The RegGAN bundle end to end with quick.yaml, through `python -m monai.bundle` as users run it:
training in every mode, resume, evaluation against the aligned references, inference with the
generator only, 2-process DDP (gloo on CPU), own misaligned data and `common.bundle check`."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from bundle_helpers import assert_check_and_export, bundle_infer, bundle_run, copy_bundle, ddp_run

from common.data.datalist import load_datalist
from common.data.datasets import PairedDataset, paired_dataset
from common.data.io import domain_transform
from common.inference import translate
from common.metrics import nmae
from common.networks import ResnetGenerator

BUNDLE = Path(__file__).resolve().parents[1] / "bundles" / "reggan"
QUICK = ["configs/train.yaml", "configs/quick.yaml"]
QUICK_NET = {"ngf": 8, "n_blocks": 2}  # quick.yaml's generator
DATA = "brain_32_10"  # quick.yaml's dataset folder
ITERATIONS = 2 * 4  # quick.yaml: 2 epochs of 4 iterations


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = copy_bundle(tmp_path_factory.mktemp("reggan"), BUNDLE)
    log = bundle_run(root, "training", QUICK, "--noise_level", "3")
    return root, log


def test_training_writes_release_weights_and_resume_checkpoint(trained):
    root, log = trained
    assert "generating the synthetic 'brain' task" in log
    state = torch.load(root / "models" / "model.pt", map_location="cpu", weights_only=True)
    ResnetGenerator(1, 1, **QUICK_NET).load_state_dict(state)  # a bare state_dict of G_AB
    resume = torch.load(root / "models" / "translation" / "resume.pt", map_location="cpu", weights_only=False)
    # The default mode, reggan (NC+R): one generator, R and one discriminator, no pools.
    assert set(resume) == {"G_AB", "R", "D_B", "optimizer_generators", "optimizer_discriminators", "trainer"}
    assert resume["trainer"]["iteration"] == ITERATIONS
    for key in resume["G_AB"]:
        assert torch.equal(resume["G_AB"][key], state[key])
    assert "correction:" in log and "smooth:" in log
    assert (root / "eval" / "images_latest.png").is_file()


@pytest.mark.parametrize(
    "mode, networks",
    [
        ("pix2pix", {"G_AB", "D_B"}),
        ("cyclegan", {"G_AB", "G_BA", "D_A", "D_B", "pool_A", "pool_B"}),
        ("cyclegan_r", {"G_AB", "G_BA", "R", "D_A", "D_B", "pool_A", "pool_B"}),
    ],
)
def test_every_mode_trains_from_the_mode_id(trained, tmp_path, mode, networks):
    root = copy_bundle(tmp_path / "bundle", trained[0], keep_data=True)
    log = bundle_run(root, "training", QUICK, "--mode", mode, "--noise_level", "2", "--save_best", "true")
    resume = torch.load(root / "models" / "translation" / "resume.pt", map_location="cpu", weights_only=False)
    assert set(resume) == networks | {"optimizer_generators", "optimizer_discriminators", "trainer"}
    assert resume["trainer"]["iteration"] == ITERATIONS
    if mode == "pix2pix":  # the conditional discriminator sees T1 and T2 channels
        assert resume["D_B"]["initial_conv.conv.weight"].shape[1] == 2
        assert "L1:" in log
    else:
        assert "cycle_A:" in log and ("correction:" in log) == (mode == "cyclegan_r")
    # Validation after every epoch: PSNR of G_AB on the validation pairs against their aligned
    # references; models/model_best.pt holds G_AB at the best epoch, whose PSNR recomputed here
    # (mean over images of 10 log10(2^2 / MSE)) is the logged best.
    assert log.count("Metrics -- val_psnr: ") == 2
    best = float(
        re.search(r"Key metric: val_psnr best value: ([0-9.]+) at epoch: \d", log.split("Epoch[2] Metrics")[1]).group(1)
    )
    generator = ResnetGenerator(1, 1, **QUICK_NET)
    generator.load_state_dict(torch.load(root / "models" / "model_best.pt", map_location="cpu", weights_only=True))
    pairs = paired_dataset(
        load_datalist(root / "data" / DATA / "datalist.json"), "validation", keys=("image", "reference")
    )
    with torch.no_grad():
        scores = [
            10 * torch.log10(4 / (generator.eval()(p["image"][None])[0] - p["reference"]).pow(2).mean()) for p in pairs
        ]
    assert float(torch.stack(scores).mean()) == pytest.approx(best, rel=1e-4)


def test_resume_continues_the_iteration_count(trained, tmp_path):
    root = copy_bundle(tmp_path / "bundle", trained[0], keep_data=True)
    shutil.copytree(trained[0] / "models", root / "models")
    log = bundle_run(root, "training", QUICK, "--noise_level", "3", "--resume", "true", "--epochs", "3")
    assert "Restored all variables" in log
    assert "Epoch: 3/3" in log and "Epoch: 1/3" not in log  # only the new epoch ran
    resume = torch.load(root / "models" / "translation" / "resume.pt", map_location="cpu", weights_only=False)
    assert resume["trainer"]["iteration"] == 3 * 4


def test_evaluation_scores_against_the_aligned_references(trained):
    root, _ = trained
    log = bundle_run(root, "evaluating", [*QUICK, "configs/evaluate.yaml"])
    assert "examples.png" in log
    metrics = json.loads((root / "eval" / "metrics.json").read_text())
    datalist = load_datalist(root / "data" / DATA / "datalist.json")
    assert len(metrics["per_volume"]) == len(datalist["paired"]["test"])
    # The identity baseline, recomputed independently: the normalised T1 against the aligned T2.
    entry = datalist["paired"]["test"][0]
    t1 = domain_transform(datalist, "source", ("image",))({"image": entry["image"]})["image"][0]
    t2 = domain_transform(datalist, "target", ("image",))({"image": entry["reference"]})["image"][0]
    assert metrics["per_volume"][0]["identity_nmae"] == pytest.approx(nmae(t1, t2, t1 > -1), rel=1e-6)
    assert 0 < metrics["mean"]["nmae"] < 1 and np.isfinite(metrics["mean"]["psnr"])
    assert (root / "eval" / "examples.png").stat().st_size > 10_000
    with np.load(root / "eval" / "examples.npz") as examples:  # the figure's arrays, for `common.reproduce`
        assert examples["names"][0] == Path(entry["image"]).name
        np.testing.assert_allclose(examples["source_0"], t1[None].numpy(), atol=1e-6)
        np.testing.assert_allclose(examples["reference_0"], t2[None].numpy(), atol=1e-6)
        assert examples["translation_0"].shape == examples["source_0"].shape
    # reggan mode: the misalignment R leaves, per level, against the exact misalignment.
    registration = json.loads((root / "eval" / "registration" / "registration.json").read_text())
    levels = registration["levels"]
    assert registration["pairs"] == len(datalist["paired"]["test"]) and set(levels) == {"0", "1", "2", "3", "4", "5"}
    assert levels["0"]["identity_error"] == 0 and levels["0"]["residual_fraction"] is None
    identity = [levels[str(level)]["identity_error"] for level in range(1, 6)]
    assert identity == sorted(identity) and identity[-1] > 1  # larger levels move the head further (pixels)
    assert all(np.isfinite(levels[str(level)]["endpoint_error"]) for level in range(6))


def test_inference_uses_the_generator_only(trained, tmp_path):
    root, _ = trained
    datalist_path = root / "data" / DATA / "datalist.json"
    bundle_infer(root, datalist_path, tmp_path)
    datalist = load_datalist(datalist_path)
    inputs = [Path(e["image"]) for e in datalist["paired"]["test"]]  # a paired datalist: its T1 test images
    outputs = sorted(tmp_path.glob("*_trans.nii.gz"))
    assert [o.name.replace("_trans", "") for o in outputs] == sorted(i.name for i in inputs)
    first_in, first_out = nib.load(inputs[0]), nib.load(tmp_path / inputs[0].name.replace(".nii.gz", "_trans.nii.gz"))
    assert first_out.shape == first_in.shape
    np.testing.assert_allclose(first_out.affine, first_in.affine)
    network = ResnetGenerator(1, 1, **QUICK_NET)
    network.load_state_dict(torch.load(root / "models" / "model.pt", map_location="cpu", weights_only=True))
    image = domain_transform(datalist, "source", ("image",))({"image": str(inputs[0])})["image"]
    expected = translate(network.eval(), image)[0].numpy()
    # ... mapped back from [-1, 1] to the T2 domain's intensity range.
    low, high = datalist["domains"]["target"]["intensity"]["range"]
    assert (low, high) == (0.0, 1.0)
    np.testing.assert_allclose(np.asarray(first_out.dataobj), (np.clip(expected, -1, 1) + 1) / 2, atol=1e-5)


def test_two_process_ddp(trained, tmp_path):
    root = copy_bundle(tmp_path / "bundle", trained[0], keep_data=True)
    log = ddp_run(root, QUICK, "--mode", "cyclegan_r", port=29637)
    assert log.count("Epoch: 2/2, Iter: 4/4") == 1  # handlers on rank 0 only
    resume = torch.load(root / "models" / "translation" / "resume.pt", map_location="cpu", weights_only=False)
    assert resume["trainer"]["iteration"] == ITERATIONS and "R" in resume
    assert not any(k.startswith("module.") for k in resume["G_AB"])  # bare modules saved, not the DDP wrappers


def test_training_on_own_misaligned_pairs(tmp_path, synthetic):
    """Own data whose pairs are already misaligned: `datalist` pointed at it, `noise_level` 0."""
    datalist_path = synthetic("brain", size=32, subjects=10, noise_level=4)
    datalist = load_datalist(datalist_path)
    pairs = paired_dataset(datalist, "training")
    assert "misaligned_4" in datalist["paired"]["training"][0]["target"]
    item = PairedDataset(pairs, misalignment_level=0)[0]
    target = domain_transform(datalist, "target", ("image",))({"image": datalist["paired"]["training"][0]["target"]})
    assert torch.equal(torch.as_tensor(item["target"]), torch.as_tensor(target["image"]))  # used as given
    root = copy_bundle(tmp_path / "bundle", BUNDLE)
    log = bundle_run(root, "training", QUICK, "--datalist", str(datalist_path))
    assert "generating" not in log and not (root / "data").exists()
    assert (root / "models" / "model.pt").is_file()


def test_bundle_check_and_torchscript_export(trained):
    assert_check_and_export(trained[0], BUNDLE, ResnetGenerator(1, 1, **QUICK_NET))
