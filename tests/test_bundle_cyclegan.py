"""The CycleGAN bundle end to end with quick.yaml, through `python -m monai.bundle` as users run it:
training, resume, evaluation, inference, 2-process DDP (gloo on CPU) and `common.bundle check`."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from bundle_helpers import (
    ENV,
    ON_CPU,
    assert_check_and_export,
    assert_same_state,
    bundle_command,
    bundle_infer,
    bundle_run,
    copy_bundle,
    ddp_run,
    kill_during_checkpoint_write,
    resume_in_process,
)

from common.bundle import check_bundle
from common.data.datalist import load_datalist
from common.data.io import domain_transform
from common.inference import translate
from common.metrics import nmae, slice_ssim, ssim
from common.networks import ResnetGenerator
from common.reproduce import run_matrix

BUNDLE = Path(__file__).resolve().parents[1] / "bundles" / "cyclegan"
QUICK = ["configs/train.yaml", "configs/quick.yaml"]
QUICK_NET = {"ngf": 8, "n_blocks": 2}  # quick.yaml's generator


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = copy_bundle(tmp_path_factory.mktemp("cyclegan"), BUNDLE)
    log = bundle_run(root, "training", QUICK)
    return root, log


def test_training_writes_release_weights_and_resume_checkpoint(trained):
    root, log = trained
    assert "generating the synthetic 'abdomen' task" in log
    state = torch.load(root / "models" / "model.pt", map_location="cpu", weights_only=True)
    network = ResnetGenerator(1, 1, **QUICK_NET)
    network.load_state_dict(state)  # a bare state_dict of G_AB
    resume = torch.load(root / "models" / "translation" / "resume.pt", map_location="cpu", weights_only=False)
    assert {
        "G_AB",
        "G_BA",
        "D_A",
        "D_B",
        "optimizer_generators",
        "optimizer_discriminators",
        "lr_scheduler_generators",
        "lr_scheduler_discriminators",
        "trainer",
        "pool_A",
        "pool_B",
    } == set(resume)
    assert resume["trainer"]["iteration"] == 3 * 6  # (2 constant + 1 decay epochs) x 6 iterations
    for key in resume["G_AB"]:
        assert torch.equal(resume["G_AB"][key], state[key])
    assert (root / "eval" / "images_latest.png").is_file()
    assert any((root / "eval" / "tensorboard").iterdir())


def test_resume_continues_the_iteration_count(trained, tmp_path):
    root, _ = trained
    copy = tmp_path / "bundle"
    shutil.copytree(root, copy)
    log = bundle_run(copy, "training", QUICK, "--resume", "true", "--decay_epochs", "2")
    assert "Restored all variables" in log
    assert "Epoch: 4/4" in log and "Epoch: 1/4" not in log  # only the new epoch ran
    resume = torch.load(copy / "models" / "translation" / "resume.pt", map_location="cpu", weights_only=False)
    assert resume["trainer"]["iteration"] == 4 * 6 and resume["trainer"]["max_epochs"] == 4


def test_a_kill_during_a_checkpoint_write_resumes_from_the_last_complete_one(trained, tmp_path, caplog):
    """SIGKILL halfway through writing the last epoch's checkpoint (the third of 3): the second
    epoch's checkpoint is intact (the first is kept as resume.previous.pt), and resume continues
    from it with the iteration count, optimisers, schedules and image pools as they were saved."""
    root = copy_bundle(tmp_path / "bundle", trained[0], keep_data=True)
    kill_during_checkpoint_write(root, QUICK, "translation", 3)
    folder = root / "models" / "translation"
    names = sorted(p.name for p in folder.iterdir())
    assert len(names) == 3 and re.fullmatch(r"\.resume\.pt\.\d+\.tmp", names[0]), names  # the half-written file
    assert names[1:] == ["resume.previous.pt", "resume.pt"] and not (root / "models" / "model.pt").exists()
    saved = torch.load(folder / "resume.pt", map_location="cpu", weights_only=True)
    assert saved["trainer"]["iteration"] == 2 * 6
    assert torch.load(folder / "resume.previous.pt", weights_only=True)["trainer"]["iteration"] == 6
    with caplog.at_level(logging.INFO):
        seen = resume_in_process(root, QUICK)
    assert f"Stage 'translation': resuming from {folder / 'resume.pt'} (iteration 12)" in caplog.text
    iteration, state = seen["translation"]
    assert iteration == 12 and {"pool_A", "pool_B", "lr_scheduler_generators", "optimizer_generators"} <= set(state)
    assert len(state["pool_A"]["images"]) == 12 and state["lr_scheduler_generators"]["last_epoch"] == 2
    assert_same_state(state, {k: v for k, v in saved.items() if k != "trainer"})
    assert sorted(p.name for p in folder.iterdir()) == ["resume.previous.pt", "resume.pt"]  # the leftover removed
    assert torch.load(folder / "resume.pt", weights_only=True)["trainer"]["iteration"] == 3 * 6
    ResnetGenerator(1, 1, **QUICK_NET).load_state_dict(torch.load(root / "models" / "model.pt", weights_only=True))


def test_evaluation_scores_against_the_references(trained):
    root, log = trained
    log = bundle_run(root, "evaluating", [*QUICK, "configs/evaluate.yaml"])
    assert "examples.png" in log
    metrics = json.loads((root / "eval" / "metrics.json").read_text())
    datalist = load_datalist(root / "data" / "abdomen_32" / "datalist.json")
    assert len(metrics["per_volume"]) == len(datalist["source"]["test"])
    # The identity baseline, recomputed independently: the normalised CT against its MR rendering.
    entry = datalist["source"]["test"][0]
    ct = domain_transform(datalist, "source", ("image",))({"image": entry["image"]})["image"][0]
    mr = domain_transform(datalist, "target", ("image",))({"image": entry["reference"]})["image"][0]
    assert metrics["per_volume"][0]["identity_nmae"] == pytest.approx(nmae(ct, mr, ct > -1), rel=1e-6)
    # SSIM as RegGAN scores it: 2D slices (within the body here), the 3D value kept beside it.
    assert metrics["per_volume"][0]["identity_ssim"] == pytest.approx(slice_ssim(ct, mr, ct > -1), rel=1e-6)
    assert metrics["per_volume"][0]["identity_ssim_whole"] == pytest.approx(ssim(ct, mr), rel=1e-6)
    assert metrics["mean"]["identity_ssim"] != pytest.approx(metrics["mean"]["identity_ssim_whole"], abs=1e-3)
    # The NMAE within each labelled organ (here the liver, label 1).
    loaded = domain_transform(datalist, "source")({"image": entry["image"], "label": entry["label"]})
    label = loaded["label"][0]
    assert metrics["per_volume"][0]["identity_nmae_liver"] == pytest.approx(nmae(ct, mr, label == 1), rel=1e-6)
    assert {"nmae_liver", "nmae_right_kidney", "nmae_left_kidney", "nmae_spleen"} <= set(metrics["mean"])
    for key in ("nmae", "psnr", "ssim", "ssim_whole"):
        assert np.isfinite(metrics["mean"][key])
    assert 0 < metrics["mean"]["nmae"] < 1
    assert (root / "eval" / "metrics.csv").read_text().startswith("volume,nmae,psnr,ssim,ssim_whole")
    assert (root / "eval" / "examples.png").stat().st_size > 10_000


def test_inference_translates_with_the_inputs_geometry(trained, tmp_path):
    root, _ = trained
    source = root / "data" / "abdomen_32" / "source" / "images"
    bundle_infer(root, source, tmp_path)
    inputs = sorted(source.glob("*.nii.gz"))
    outputs = sorted(tmp_path.glob("*_trans.nii.gz"))
    assert [o.name.replace("_trans", "") for o in outputs] == [i.name for i in inputs]
    first_in, first_out = nib.load(inputs[0]), nib.load(outputs[0])
    assert first_out.shape == first_in.shape
    np.testing.assert_allclose(first_out.affine, first_in.affine)
    # The written translation is the network's output on the normalised input.
    network = ResnetGenerator(1, 1, **QUICK_NET)
    network.load_state_dict(torch.load(root / "models" / "model.pt", map_location="cpu", weights_only=True))
    datalist = load_datalist(root / "data" / "abdomen_32" / "datalist.json")
    image = domain_transform(datalist, "source", ("image",))({"image": str(inputs[0])})["image"]
    expected = translate(network.eval(), image)[0].numpy()
    # ... mapped back from [-1, 1] to the target domain: MR, normalised by percentiles, has no
    # absolute scale and is written as 0-255.
    assert datalist["domains"]["target"]["intensity"] == {"percentiles": [0.5, 99.5]}
    np.testing.assert_allclose(np.asarray(first_out.dataobj), (np.clip(expected, -1, 1) + 1) * 127.5, atol=1e-3)


def test_inference_rebuilds_the_trained_network_from_its_recorded_settings(trained, tmp_path):
    root, _ = trained
    record = json.loads((root / "models" / "model_settings.json").read_text())
    datalist = load_datalist(root / "data" / "abdomen_32" / "datalist.json")
    assert record == {
        "preset": "quick",
        "settings": {
            "in_channels": 1,
            "out_channels": 1,
            **QUICK_NET,
            "intensity": datalist["domains"]["source"]["intensity"],
            "output_intensity": datalist["domains"]["target"]["intensity"],
            "datalist": os.path.join("data", "abdomen_32", "datalist.json"),
        },
    }
    # inference.yaml alone, no --input: quick.yaml's network on the datalist training used.
    bundle_run(root, None, ["configs/inference.yaml"], "--output_dir", str(tmp_path / "out"), *ON_CPU)
    written = sorted(p.name for p in (tmp_path / "out").glob("*_trans.nii.gz"))
    assert written == sorted(
        Path(e["image"]).name.replace(".nii.gz", "_trans.nii.gz") for e in datalist["source"]["test"]
    )
    # Settings that do not fit the weights: one line naming the weights, the preset, the bundle and the keys.
    result = subprocess.run(
        bundle_command(None, ["configs/inference.yaml"], "--ngf", "16", "--output_dir", str(tmp_path / "no"), *ON_CPU),
        cwd=root,
        capture_output=True,
        text=True,
        env=ENV,
    )
    assert result.returncode != 0 and not (tmp_path / "no").exists()
    assert (
        f"ValueError: models/model.pt (trained with the preset 'quick') does not fit network_def of the bundle "
        f"{root.name!r}: size mismatch: model.0.weight (8, 1, 7, 7) vs (16, 1, 7, 7), model.0.bias (8,) vs (16,)"
    ) in result.stderr


def test_two_process_ddp(trained, tmp_path):
    root, _ = trained
    copy = copy_bundle(tmp_path / "bundle", root, keep_data=True)
    log = ddp_run(copy, QUICK, port=29631)
    assert log.count("Epoch: 3/3, Iter: 6/6") == 1  # handlers on rank 0 only
    resume = torch.load(copy / "models" / "translation" / "resume.pt", map_location="cpu", weights_only=False)
    assert resume["trainer"]["iteration"] == 18
    assert (copy / "models" / "model.pt").is_file()


def test_bundle_check_and_torchscript_export(trained):
    assert_check_and_export(trained[0], BUNDLE, ResnetGenerator(1, 1, **QUICK_NET))


def test_export_writes_a_zoo_ready_zip_that_passes_the_check_again(trained, tmp_path, monkeypatch, capsys):
    import hashlib
    import zipfile

    import yaml

    import common
    from common.bundle import export as export_module

    root, _ = trained
    monkeypatch.setattr(export_module, "LARGE_FILE_BYTES", 10_000)  # the quick weights count as large
    zipped = export_module.export_bundle(root, tmp_path / "out", url_base="https://example.org/weights/")
    version = json.loads((root / "configs" / "metadata.json").read_text())["version"]
    assert zipped == tmp_path / "out" / f"{root.name}_v{version}.zip" and not list((tmp_path / "out").glob(".*"))
    names = zipfile.ZipFile(zipped).namelist()
    assert all(n.startswith(f"{root.name}/") for n in names)
    inside = {n.split("/", 1)[1] for n in names}
    assert {
        "LICENSE",
        "large_files.yml",
        "configs/metadata.json",
        "configs/inference.yaml",
        "docs/README.md",
        "docs/data_license.txt",
        "models/model.pt",
        "models/model.ts",
        "models/model_settings.json",
    } <= inside
    assert not [
        n for n in inside if n.startswith(("data/", "eval/")) or "resume" in n or n.count("/") > 1 and "models" in n
    ]
    zipfile.ZipFile(zipped).extractall(tmp_path / "unpacked")
    unpacked = tmp_path / "unpacked" / root.name
    meta = json.loads((unpacked / "configs" / "metadata.json").read_text())
    assert meta["required_packages_version"]["monai-crossdomain"] == common.__version__
    assert "synthetic-abdomen" in (unpacked / "docs" / "data_license.txt").read_text()
    large = yaml.safe_load((unpacked / "large_files.yml").read_text())["large_files"]
    weights = (unpacked / "models" / "model.pt").read_bytes()
    assert {
        "path": "models/model.pt",
        "hash_type": "sha256",
        "hash_val": hashlib.sha256(weights).hexdigest(),
    }.items() <= large[0].items()
    assert large[0]["url"] == f"https://example.org/weights/{root.name}_v{version}/models/model.pt"
    assert weights == (root / "models" / "model.pt").read_bytes()
    assert any("exports to models/model.ts" in line for line in check_bundle(unpacked))  # the check again
    # An untrained bundle, or one trained on data of unknown licence, is refused with one line.
    with pytest.raises(ValueError, match="no trained weights"):
        export_module.export_bundle(BUNDLE, tmp_path / "none")
    from common.bundle.__main__ import main

    assert main(["export", str(BUNDLE), "--out", str(tmp_path / "none")]) == 1
    assert "FAILED" in capsys.readouterr().err and not (tmp_path / "none").exists()
    copy = copy_bundle(tmp_path / "other", root, keep_data=True)
    shutil.copytree(root / "models", copy / "models")
    datalist = json.loads((copy / "data" / "abdomen_32" / "datalist.json").read_text())
    del datalist["generator"]
    (copy / "data" / "abdomen_32" / "datalist.json").write_text(json.dumps(datalist))
    with pytest.raises(ValueError, match="name the training data's licence with --data-license FILE"):
        export_module.export_bundle(copy, tmp_path / "none")
    (tmp_path / "licence.txt").write_text("CC BY 4.0")
    zipped = export_module.export_bundle(copy, tmp_path / "own", data_license=tmp_path / "licence.txt")
    assert zipfile.ZipFile(zipped).read("other/docs/data_license.txt") == b"CC BY 4.0"


def test_bundle_check_reports_problems(tmp_path):
    copy = copy_bundle(tmp_path / "bundle", BUNDLE)
    meta = json.loads((copy / "configs" / "metadata.json").read_text())
    version, meta["version"] = meta["version"], "9.9.9"
    (copy / "configs" / "metadata.json").write_text(json.dumps(meta))
    from common.bundle import BundleCheckError

    with pytest.raises(BundleCheckError, match="changelog has no entry for version 9.9.9"):
        check_bundle(copy, export=False)
    meta["version"] = version
    meta["network_data_format"]["inputs"]["image"]["spatial_shape"] = ["4*n", "4*n"]  # 1 x 1 at the bottleneck
    (copy / "configs" / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(
        BundleCheckError, match=r"at \{'p': 1, 'n': 1, 'any': 1\} \(Expected more than 1 spatial element"
    ):
        check_bundle(copy, export=False)
    meta["network_data_format"]["inputs"]["image"]["spatial_shape"] = ["8*n", "8*n"]
    del meta["required_packages_version"]["monai-crossdomain"]
    (copy / "configs" / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(BundleCheckError, match="required_packages_version: 'monai-crossdomain' is a required property"):
        check_bundle(copy, export=False)
    (copy / "docs" / "README.md").unlink()
    with pytest.raises(BundleCheckError, match="missing required files: docs/README.md"):
        check_bundle(copy, export=False)


def test_training_on_another_datalist(tmp_path, synthetic):
    """Pointing `datalist` at other data: RGB images set the channel counts from the datalist."""
    datalist = synthetic("polyp", size=32, subjects=5)
    root = copy_bundle(tmp_path / "bundle", BUNDLE)
    log = bundle_run(root, "training", QUICK, "--datalist", str(datalist), "--epoch_length", "2")
    assert "generating" not in log and not (root / "data").exists()
    state = torch.load(root / "models" / "model.pt", map_location="cpu", weights_only=True)
    network = ResnetGenerator(3, 3, **QUICK_NET)
    network.load_state_dict(state)
    assert state["model.0.weight"].shape[1] == 3


def test_run_is_training_for_monai_label(tmp_path, trained):
    root, _ = trained
    copy = copy_bundle(tmp_path / "bundle", root, keep_data=True)
    log = bundle_run(copy, None, QUICK)  # MONAI Label calls the default id, `run`
    assert "Epoch: 3/3, Iter: 6/6" in log
    assert (copy / "models" / "model.pt").is_file()


def test_reproduce_matrix_runs_the_recipe_and_the_identity_ablation(tmp_path):
    """`python -m common.reproduce cyclegan --preset quick`: both rows trained and scored in their own folders."""
    rows = run_matrix(copy_bundle(tmp_path / "bundle", BUNDLE), "quick", tmp_path / "out")
    assert [r["variant"] for r in rows] == ["cyclegan", "no_identity"]
    for row in rows:
        metrics = json.loads((tmp_path / "out" / "runs" / row["variant"] / "eval" / "metrics.json").read_text())
        assert metrics["mean"]["ssim"] == row["ssim"] and 0 < row["nmae"] < 1
    # Same data, same seed: the identity baseline is shared; dropping the identity loss changes the translation.
    assert rows[0]["identity_ssim"] == rows[1]["identity_ssim"]
    assert rows[0]["nmae"] != pytest.approx(rows[1]["nmae"], abs=1e-6)
    markdown = (tmp_path / "out" / "results.md").read_text()
    assert f"| no_identity | {rows[1]['ssim']:.4f} |" in markdown
    assert f"| identity (untranslated input) | {rows[0]['identity_ssim']:.4f} |" in markdown
