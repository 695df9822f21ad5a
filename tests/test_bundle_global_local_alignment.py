"""The global-local alignment bundle end to end with quick.yaml, through `python -m monai.bundle`
as users run it: both stages with per-stage resume, stage 2 on the translations of the trained
stage-1 network, every method of Table III from its `method` id, target labels never read,
evaluation per 3D volume with the translation and local-mask probes, inference as one label-map
network, 2-process DDP and `common.bundle check`."""

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

from common.bundle import read_settings
from common.data.datalist import load_datalist
from common.engines import CycleGANTrainer, LocalAlignmentTrainer, StyleTransferTrainer
from common.networks import (
    DeepLabSegmenter,
    LocallyMaskedSegmenter,
    PixelDiscriminator,
    TranslateThenSegment,
)
from common.reproduce import load_matrix, run_matrix

BUNDLE = Path(__file__).resolve().parents[1] / "bundles" / "global_local_alignment"
QUICK = ["configs/train.yaml", "configs/quick.yaml"]
DATA = "cardiac_32_5_reverse"  # quick.yaml's dataset folder: MR (labelled) -> CT


def quick_segmenter() -> DeepLabSegmenter:
    return DeepLabSegmenter(1, 5, layers=(1, 1, 1, 1), block_inplanes=(8, 8, 16, 16), aspp_channels=8)


def quick_network(masked: bool = True) -> TranslateThenSegment:
    """quick.yaml's release network: the target segmenter, with D1's mask for the masked methods."""
    segmenter = quick_segmenter()
    if masked:
        segmenter = LocallyMaskedSegmenter(segmenter.features, segmenter.predictor, PixelDiscriminator(64, 16))
    return TranslateThenSegment(None, segmenter)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = copy_bundle(tmp_path_factory.mktemp("global_local"), BUNDLE)
    log = bundle_run(root, "training", QUICK)
    return root, log


def load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)


def test_training_runs_both_stages_and_writes_the_masked_target_segmenter(trained):
    root, log = trained
    assert "Stage 'style_transfer': training" in log and "Stage 'local_alignment': training" in log
    assert "Stage 'segmenter': not used by this configuration, skipped" in log
    style = load(root / "models" / "style_transfer" / "resume.pt")
    local = load(root / "models" / "local_alignment" / "resume.pt")
    assert {"G_E", "G_D", "D"} | {f"optimizer_{o}" for o in StyleTransferTrainer.OPTIMIZERS} <= set(style)
    assert {"S_E", "S_P", "D1", "D2"} | {f"optimizer_{o}" for o in LocalAlignmentTrainer.OPTIMIZERS} <= set(local)
    assert style["trainer"]["iteration"] == local["trainer"]["iteration"] == 2 * 3
    for loss in ("image_S:", "cycle_T:", "content_S:", "adv_ST:", "seg:", "adv_D1:", "adv_D2:"):
        assert loss in log
    state = torch.load(root / "models" / "model.pt", map_location="cpu", weights_only=True)
    quick_network().load_state_dict(state)  # S_E, S_P and D1, nothing else
    assert all(torch.equal(local["S_E"][k], state[f"segmenter.features.{k}"]) for k in local["S_E"])
    assert all(torch.equal(local["D1"][k], state[f"segmenter.discriminator.{k}"]) for k in local["D1"])
    # The poly schedule (every optimiser) stepped after each of the two epochs: (1 - e/2)^0.9 of
    # the base rate, 0.5^0.9 in the second epoch, 0 when the stage ends.
    for name, base in (("segmenter", 0.01), ("discriminators", 0.0001)):
        scheduler = local[f"lr_scheduler_{name}"]
        assert scheduler["last_epoch"] == 2 and scheduler["base_lrs"] == [pytest.approx(base)]
        assert local[f"optimizer_{name}"]["param_groups"][0]["lr"] == 0.0
    assert log.count("Metrics -- val_mean_dice: ") == 2  # source validation after each stage-2 epoch


def test_stage_2_translates_with_the_network_stage_1_trains(trained):
    """The translator of stage 2 (and of the source validation and score) is the very module stage
    1's trainer optimises, so stage 2 sees the trained translations (or, on resume, the reused
    checkpoint's, loaded into it before stage 2 starts); it is not frozen before stage 1 runs."""
    root, _ = trained
    parser = ConfigParser()
    parser.read_config([str(root / c) for c in QUICK])
    parser["bundle_root"] = str(root)
    translator = parser.get_parsed_content("style_transfer_network")
    stage1, stage2 = parser.get_parsed_content("train#trainer"), parser.get_parsed_content("local#trainer")
    assert stage1.networks["G_E"] is translator.encoder and stage1.networks["G_D"] is translator.decoder
    assert stage2.translator is translator and parser.get_parsed_content("source_pipeline").translator is translator
    held = {id(p) for group in stage1.optimizers["generator"].param_groups for p in group["params"]}
    assert held == {id(p) for p in translator.parameters()}
    assert not any(id(p) in held for o in stage2.optimizers.values() for g in o.param_groups for p in g["params"])
    assert all(p.requires_grad for p in translator.parameters())


def test_cyclegan_replaces_stage_1_and_stage_2_translates_with_its_trained_generator(trained, tmp_path):
    """Method cyclegan (Table I's CycleGAN + segmenter): CycleGAN trains in place of the style
    transfer, and stage 2 and the source score translate with its G_AB as trained, no D1 or D2."""
    root = copy_bundle(tmp_path / "bundle", trained[0], keep_data=True)
    parser = ConfigParser()
    parser.read_config([str(root / c) for c in QUICK])
    parser.update({"bundle_root": str(root), "method": "cyclegan"})
    g_ab = parser.get_parsed_content("generator_ab")
    stage1, stage2 = parser.get_parsed_content("cyclegan#trainer"), parser.get_parsed_content("local#trainer")
    assert isinstance(stage1, CycleGANTrainer) and stage1.networks["G_AB"] is g_ab
    assert stage2.translator is g_ab and parser.get_parsed_content("source_pipeline").translator is g_ab
    assert parser.get_parsed_content("train#trainer") is None and stage2.networks.get("D1") is None
    log = bundle_run(root, "training", QUICK, "--method", "cyclegan")
    assert "Stage 'style_transfer': not used by this configuration, skipped" in log
    for loss in ("G_AB:", "cycle_A:", "idt_B:", "seg:"):
        assert loss in log
    assert "adv_D1:" not in log and "adv_D2:" not in log
    models = root / "models"
    assert {p.name for p in models.iterdir() if p.is_dir()} == {"cyclegan", "local_alignment"}
    saved = load(models / "cyclegan" / "resume.pt")
    assert saved["trainer"]["iteration"] == 2 * 3 and {"G_AB", "G_BA", "D_A", "D_B"} <= set(saved)
    assert not {"D1", "D2"} & set(load(models / "local_alignment" / "resume.pt"))
    quick_network(False).load_state_dict(torch.load(models / "model.pt", map_location="cpu", weights_only=True))
    bundle_run(root, "evaluating", [*QUICK, "configs/evaluate.yaml"], "--method", "cyclegan")
    translation = json.loads((root / "eval" / "translation" / "metrics.json").read_text())
    assert 0 < translation["mean"]["nmae"] != translation["mean"]["identity_nmae"]  # G_AB's, loaded


def test_resume_reuses_the_finished_style_transfer(trained, tmp_path):
    root = copy_bundle(tmp_path / "bundle", trained[0], keep_data=True)
    (root / "models" / "style_transfer").mkdir(parents=True)
    saved = trained[0] / "models" / "style_transfer" / "resume.pt"
    (root / "models" / "style_transfer" / "resume.pt").write_bytes(saved.read_bytes())
    log = bundle_run(root, "training", QUICK, "--resume", "true")
    assert "Stage 'style_transfer'" in log and "Stage 'style_transfer': training" not in log
    assert "Stage 'local_alignment': training" in log
    reused = load(root / "models" / "style_transfer" / "resume.pt")
    assert all(torch.equal(reused["G_E"][k], v) for k, v in load(saved)["G_E"].items())


@pytest.mark.parametrize(
    "method, stages, networks, masked",
    [
        ("style_only", {"style_transfer", "local_alignment"}, {"S_E", "S_P"}, False),
        ("d1_only", {"style_transfer", "local_alignment"}, {"S_E", "S_P", "D1"}, True),
        ("d2_only", {"style_transfer", "local_alignment"}, {"S_E", "S_P", "D2"}, False),
        ("d1_d2_no_style", {"local_alignment"}, {"S_E", "S_P", "D1", "D2"}, True),
        ("no_adaptation", {"segmenter"}, None, False),
        ("supervised", {"segmenter"}, None, False),
    ],
)
def test_every_method_trains_its_stages_and_networks(trained, tmp_path, method, stages, networks, masked):
    root = copy_bundle(tmp_path / "bundle", trained[0], keep_data=True)
    bundle_run(root, "training", QUICK, "--method", method)
    models = root / "models"
    assert {p.name for p in models.iterdir() if p.is_dir()} == stages
    if networks is not None:
        saved = load(models / "local_alignment" / "resume.pt")
        assert networks <= set(saved) and not ({"D1", "D2"} - networks) & set(saved)
    quick_network(masked).load_state_dict(torch.load(models / "model.pt", map_location="cpu", weights_only=True))
    if method == "supervised":  # the only method whose data carry target training labels
        assert all(
            "oracle_label" in e
            for e in load_datalist(root / "data" / f"{DATA}_oracle" / "datalist.json")["target"]["training"]
        )


def test_target_labels_are_never_read(tmp_path, synthetic):
    """Every target label (training, validation, test) points to a corrupt file: reading any of
    them would fail the run."""
    poisoned = poison_target_labels(Path(synthetic("cardiac", size=32, subjects=5, reverse=True)), "corrupt.nii.gz")
    root = copy_bundle(tmp_path / "bundle", BUNDLE)
    assert_methods_never_read_target_labels(
        root, poisoned, QUICK, ["full", "d1_d2_no_style", "cyclegan", "no_adaptation"]
    )


def test_evaluation_scores_every_volume_and_probes_the_translation_and_the_mask(trained):
    root, _ = trained
    bundle_run(root, "evaluating", [*QUICK, "configs/evaluate.yaml"])
    datalist = load_datalist(root / "data" / DATA / "datalist.json")
    metrics = json.loads((root / "eval" / "metrics.json").read_text())
    assert len(metrics["per_volume"]) == len(datalist["target"]["test"])
    assert {"dice_myocardium", "assd_left_atrium"} <= set(metrics["mean"])
    source = json.loads((root / "eval" / "source" / "metrics.json").read_text())
    assert len(source["per_volume"]) == len(datalist["source"]["test"])
    translation = json.loads((root / "eval" / "translation" / "metrics.json").read_text())
    assert 0 < translation["mean"]["nmae"] != translation["mean"]["identity_nmae"]
    mask = json.loads((root / "eval" / "local_mask" / "metrics.json").read_text())
    assert len(mask["per_volume"]) == len(datalist["target"]["test"])
    assert 0 <= mask["mean"]["mask_on_error"] <= 1 and 0 < mask["mean"]["error_rate"] <= 1
    assert (root / "eval" / "local_mask" / "mask_error.png").stat().st_size > 5_000
    gap = json.loads((root / "eval" / "feature_gap" / "metrics.json").read_text())
    assert len(gap["per_volume"]) == len(datalist["target"]["test"])
    assert 0 <= gap["mean"]["fresh_domain_auc"] <= 1 and 0 <= gap["mean"]["trained_domain_auc"] <= 1


def test_inference_writes_label_maps_with_the_inputs_geometry(trained, tmp_path):
    root, _ = trained
    assert_label_maps(root, root / "data" / DATA / "datalist.json", tmp_path, quick_network())


def test_two_process_ddp(trained, tmp_path):
    root = copy_bundle(tmp_path / "bundle", trained[0], keep_data=True)
    log = ddp_run(root, QUICK, port=29671)
    local = load(root / "models" / "local_alignment" / "resume.pt")
    assert local["trainer"]["iteration"] == 6 and not any(k.startswith("module.") for k in local["S_E"])
    assert "Stage 'style_transfer': training" in log
    quick_network().load_state_dict(torch.load(root / "models" / "model.pt", map_location="cpu", weights_only=True))


def test_an_unknown_method_is_named():
    parser = ConfigParser()
    parser.read_config(str(BUNDLE / "configs" / "train.yaml"))
    parser["method"] = "fulll"
    with pytest.raises(RuntimeError) as raised:  # MONAI wraps the config's error, which it chains
        parser.get_parsed_content("style_transfer")
    assert "Unknown global-local alignment method 'fulll'; expected one of full, style_only" in str(
        raised.value.__cause__
    )


def test_bundle_check_and_torchscript_export(trained):
    assert_check_and_export(trained[0], BUNDLE, quick_network(), in_channels=1)


def test_the_matrix_reuses_the_full_run_s_style_transfer(trained, tmp_path):
    """`common.reproduce global_local_alignment --preset quick --variants full style_only
    no_adaptation`: style_only trains only stage 2, on the full run's stage 1."""
    root = copy_bundle(tmp_path / "bundle", trained[0], keep_data=True)
    out = tmp_path / "reproduce"
    rows = run_matrix(root, "quick", out, variants=["full", "style_only", "no_adaptation"])
    assert [r["variant"] for r in rows] == ["no_adaptation", "style_only", "full"]  # the matrix's order
    full, style_only = (
        load(out / "runs" / v / "models" / "style_transfer" / "resume.pt") for v in ("full", "style_only")
    )
    assert all(torch.equal(full["G_E"][k], v) for k, v in style_only["G_E"].items())
    assert {p.name for p in (out / "runs" / "no_adaptation" / "models").iterdir() if p.is_dir()} == {"segmenter"}
    by_name = {r["variant"]: r for r in rows}
    assert 0 <= by_name["full"]["local_mask/mask_error_auc"] <= 1
    assert np.isnan(by_name["style_only"]["local_mask/mask_error_auc"])  # no D1, no mask
    # Each run records the mask its release network uses, so inference.yaml needs no --local_mask.
    masks = {v: read_settings(out / "runs" / v / "models")["settings"]["local_mask"] for v in by_name}
    assert masks == {"full": "entropy", "style_only": "none", "no_adaptation": "none"}
    assert np.isnan(by_name["no_adaptation"]["translation/nmae"]) and by_name["full"]["translation/nmae"] > 0
    assert "`style_only` reuses the finished style_transfer stage(s) of `full`" in (out / "results.md").read_text()


def test_reproduce_matrix_rows_are_the_papers_tables():
    table = yaml.safe_load((BUNDLE / "configs" / "reproduce.yaml").read_text())
    variants = table["variants"]
    ablations = ["no_adaptation", "supervised", "style_only", "d1_only", "d2_only", "d1_d2_no_style", "full"]
    assert all(variants[m] == {"method": m} for m in ablations)  # Table III, MR -> CT
    for prefix, extra in (
        ("ct_mr_", {"data_reverse": False}),
        ("abdomen_", {"task": "abdomen", "data_reverse": False}),
    ):
        for m in ("no_adaptation", "supervised", "style_only", "full", "cyclegan"):
            assert variants[prefix + m] == {"method": m, **extra}
    assert variants["cyclegan"] == {"method": "cyclegan"}
    assert table["reuse"]["d1_only"] == {"from": "full", "stages": ["style_transfer"]}


def test_the_options_matrix_compares_masks_on_the_validation_split_only():
    """The local-mask options are scored on the labelled target validation volumes, never on test,
    and differ only in the mask (stage 1 shared)."""
    table = load_matrix(BUNDLE, "options")
    assert table["overrides"] == {"data_labelled_validation": True, "evaluate_split": "validation"}
    assert {v.get("local_mask") for v in table["variants"].values()} == {"entropy", "certainty", "none", None}
    assert all(spec == {"from": "entropy", "stages": ["style_transfer"]} for spec in table["reuse"].values())
    assert set(table["reuse"]) == set(table["variants"]) - {"entropy"}
