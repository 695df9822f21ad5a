"""The declarative trainer contract and staged training: a new method declared in a few lines
gets validation of its config, checkpoint objects, image grids, train mode and schedules; stages
run in order, resume where they stopped and reuse what finished."""

from __future__ import annotations

import logging

import pytest
import torch
from ignite.engine import Events
from monai.engines import SupervisedTrainer
from PIL import Image
from torch import nn

from common.engines import MultiNetworkTrainer, Stage, load_stage_networks, run_stages
from common.handlers import ImageGridHandler, linear_decay


class Autoencoder(MultiNetworkTrainer):
    """A new method by declaration alone: two networks, one optimiser, one ``_iteration``."""

    NETWORKS = ("encoder", "decoder")
    OPTIMIZERS = {"autoencoder": ("encoder", "decoder")}
    LOSS_NAMES = ("reconstruction",)
    VISUAL_NAMES = (("image", "reconstruction"),)

    def _iteration(self, engine, batchdata):
        image = self.prepare(batchdata["image"])
        reconstruction = self.networks["decoder"](self.networks["encoder"](image))
        losses = {"reconstruction": (reconstruction - image).abs().mean()}
        return {
            "loss": self.step("autoencoder", losses["reconstruction"], losses),
            "images": {"image": image, "reconstruction": reconstruction.detach()},
        }


def networks():
    torch.manual_seed(0)
    return {
        "encoder": nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU()),
        "decoder": nn.Conv2d(4, 1, 3, padding=1),
    }


def make(nets=None, optimizers=None, max_epochs=2, batches=3, **options):
    nets = nets or networks()
    if optimizers is None:
        optimizers = {
            "autoencoder": torch.optim.Adam([*nets["encoder"].parameters(), *nets["decoder"].parameters()], 1e-3)
        }
    data = [{"image": torch.rand(2, 1, 8, 8) * 2 - 1} for _ in range(batches)]
    return Autoencoder("cpu", max_epochs, data, nets, optimizers, **options)


def test_a_declared_trainer_trains_and_checkpoints_itself():
    trainer = make(lr_schedule=lambda optimizer: linear_decay(optimizer, 1, 1))
    trainer.run()
    assert trainer.state.iteration == 6 and trainer.state.output["loss"]["reconstruction"] > 0
    objects = trainer.checkpoint_objects()
    assert set(objects) == {"encoder", "decoder", "optimizer_autoencoder", "lr_scheduler_autoencoder", "trainer"}
    assert objects["trainer"] is trainer and objects["encoder"] is trainer.networks["encoder"]
    assert objects["lr_scheduler_autoencoder"].last_epoch == 2  # stepped once per epoch
    assert trainer.grid_rows() == [["image", "reconstruction"]]


def test_learning_rate_follows_the_schedule():
    trainer = make(max_epochs=3, lr_schedule=lambda optimizer: linear_decay(optimizer, 1, 2))
    rates = []
    trainer.add_event_handler(
        Events.EPOCH_STARTED, lambda e: rates.append(e.optimizers["autoencoder"].param_groups[0]["lr"])
    )
    trainer.run()
    assert rates == pytest.approx([1e-3, 1e-3 * 2 / 3, 1e-3 * 1 / 3])  # constant 1, then linear decay over 2


def test_image_grid_rows_come_from_the_declaration(tmp_path):
    trainer = make(max_epochs=1)
    ImageGridHandler(output_dir=str(tmp_path), interval=1).attach(trainer)
    trainer.run()
    assert Image.open(tmp_path / "images_latest.png").size == (16, 8)  # one row of two 8 x 8 panels


def test_networks_are_in_train_mode_at_every_iteration():
    trainer = make(max_epochs=1)
    modes = []
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: modes.append(e.networks["encoder"].training))
    trainer.add_event_handler(
        Events.ITERATION_COMPLETED, lambda e: e.networks["encoder"].eval()
    )  # e.g. a validation run
    trainer.run()
    assert modes == [True, True, True]


@pytest.mark.parametrize(
    "change, message",
    [
        (
            lambda n, o: n.pop("decoder"),
            "Autoencoder: missing network 'decoder' in `networks`; expected encoder, decoder",
        ),
        (
            lambda n, o: n.update(critic=nn.Linear(1, 1)),
            "unknown or unused network 'critic' in `networks`; expected encoder, decoder",
        ),
        (lambda n, o: o.clear(), "missing optimizer 'autoencoder' in `optimizers`; expected autoencoder"),
        (
            lambda n, o: o.update(other=torch.optim.SGD(n["encoder"].parameters(), 0.1)),
            "unknown or unused optimizer 'other'",
        ),
        (
            lambda n, o: o.update(autoencoder=torch.optim.SGD(n["encoder"].parameters(), 0.1)),
            "optimizer 'autoencoder' must hold exactly the parameters of encoder, decoder; it misses some of them",
        ),
        (
            lambda n, o: o.update(
                autoencoder=torch.optim.SGD(
                    [*n["encoder"].parameters(), *n["decoder"].parameters(), nn.Parameter(torch.zeros(1))], 0.1
                )
            ),
            "holds parameters of other networks",
        ),
    ],
)
def test_the_config_is_checked_against_the_declaration(change, message):
    nets = networks()
    optimizers = {"autoencoder": torch.optim.Adam([*nets["encoder"].parameters(), *nets["decoder"].parameters()])}
    change(nets, optimizers)
    with pytest.raises(ValueError, match=message):
        make(nets, optimizers)


def test_an_optional_network_may_be_left_out():
    class WithCritic(Autoencoder):
        NETWORKS = ("encoder", "decoder", "critic")
        OPTIONAL_NETWORKS = ("critic",)
        OPTIMIZERS = {"autoencoder": ("encoder", "decoder"), "critic": ("critic",)}

    nets = networks()
    optimizer = torch.optim.Adam([*nets["encoder"].parameters(), *nets["decoder"].parameters()])
    trainer = WithCritic("cpu", 1, [], {**nets, "critic": None}, {"autoencoder": optimizer, "critic": None})
    assert set(trainer.networks) == {"encoder", "decoder"} and set(trainer.optimizers) == {"autoencoder"}
    critic = nn.Linear(2, 1)
    with pytest.raises(ValueError, match="missing optimizer 'critic' in `optimizers`; expected autoencoder, critic"):
        WithCritic("cpu", 1, [], {**networks(), "critic": critic}, {"autoencoder": optimizer})
    with pytest.raises(ValueError, match="missing network 'decoder'"):
        WithCritic("cpu", 1, [], {"encoder": nets["encoder"]}, {"autoencoder": optimizer})


def test_undeclared_loss_names_and_variants_are_refused():
    class Sloppy(Autoencoder):
        LOSS_NAMES = ("l1",)

    nets = networks()
    optimizer = torch.optim.Adam([*nets["encoder"].parameters(), *nets["decoder"].parameters()])
    trainer = Sloppy("cpu", 1, [{"image": torch.zeros(1, 1, 8, 8)}], nets, {"autoencoder": optimizer})
    with pytest.raises(KeyError, match="does not declare the loss.*reconstruction"):
        trainer.run()
    with pytest.raises(ValueError, match="Autoencoder has no variants; got 'big'"):
        make(variant="big")


# --- stages -----------------------------------------------------------------------------------
def supervised(network, epochs=2):
    data = [{"image": torch.rand(2, 1, 8, 8), "label": torch.rand(2, 1, 8, 8)} for _ in range(2)]
    optimizer = torch.optim.SGD(network.parameters(), 0.1)
    return SupervisedTrainer("cpu", epochs, data, network, optimizer, nn.L1Loss(), decollate=False), optimizer


def two_stages(first_epochs=2, second_epochs=2):
    """Stage 1: a supervised network; stage 2: the autoencoder."""
    first = nn.Conv2d(1, 1, 3, padding=1)
    trainer, optimizer = supervised(first, first_epochs)
    stage1 = Stage("first", trainer, checkpoint={"network": first, "optimizer": optimizer}, outputs={"first.pt": first})
    stage2 = Stage("second", make(max_epochs=second_epochs))
    return [stage1, stage2], first


def test_stages_run_in_order_and_write_checkpoints_outputs_and_release(tmp_path):
    stages, first = two_stages()
    order = []
    for stage in stages:
        stage.trainer.add_event_handler(Events.STARTED, lambda e, name=stage.name: order.append(name))
    run_stages(stages, tmp_path, release=stages[1].trainer.networks["decoder"], seed=0)
    assert order == ["first", "second"]
    saved = torch.load(tmp_path / "second" / "resume.pt", weights_only=True)
    assert saved["trainer"]["iteration"] == 6 and {"encoder", "decoder", "optimizer_autoencoder"} <= set(saved)
    assert torch.load(tmp_path / "first" / "resume.pt", weights_only=True)["trainer"]["iteration"] == 4
    for name, state in torch.load(tmp_path / "first.pt", weights_only=True).items():
        assert torch.equal(state, first.state_dict()[name])
    release = torch.load(tmp_path / "model.pt", weights_only=True)
    assert set(release) == {"weight", "bias"}
    assert not list(tmp_path.rglob("*.tmp"))  # written through temporary files, renamed


def test_resume_reuses_a_finished_stage_and_continues_the_unfinished_one(tmp_path, caplog):
    uninterrupted, _ = two_stages()
    run_stages(uninterrupted, tmp_path / "uninterrupted")
    # A run stopped after the first epoch of stage 2 (its checkpoint says iteration 3 of 6).
    stopped, first = two_stages(second_epochs=1)
    run_stages(stopped, tmp_path)
    first_weights = {k: v.clone() for k, v in first.state_dict().items()}

    resumed, first = two_stages()
    seen = []
    resumed[0].trainer.add_event_handler(Events.STARTED, lambda e: seen.append("first"))
    resumed[1].trainer.add_event_handler(Events.ITERATION_STARTED, lambda e: seen.append(e.state.iteration))
    with caplog.at_level(logging.INFO):
        run_stages(resumed, tmp_path, resume=True)
    assert seen == [4, 5, 6]  # stage 1 finished: loaded, not retrained; stage 2 continued after iteration 3
    assert "Stage 'first': finished earlier (iteration 4)" in caplog.text
    assert all(torch.equal(first.state_dict()[k], v) for k, v in first_weights.items())
    assert torch.load(tmp_path / "second" / "resume.pt", weights_only=True)["trainer"]["iteration"] == 6
    # Stage 2 resumed from its checkpoint (weights, Adam's moments) ends where an uninterrupted run ends.
    for name in ("encoder", "decoder"):
        expected = uninterrupted[1].trainer.networks[name].state_dict()
        for key, value in resumed[1].trainer.networks[name].state_dict().items():
            torch.testing.assert_close(value, expected[key])


def test_a_stage_without_a_trainer_is_skipped_and_names_must_be_unique(tmp_path):
    stages, _ = two_stages()
    run_stages([Stage("unused", None), stages[0]], tmp_path)
    assert not (tmp_path / "unused").exists() and (tmp_path / "first" / "resume.pt").is_file()
    with pytest.raises(ValueError, match="Stage names must be unique; got first, first"):
        run_stages([stages[0], stages[0]], tmp_path)
    trainer, _ = supervised(nn.Conv2d(1, 1, 1))
    with pytest.raises(ValueError, match="Stage 'plain': list its `checkpoint` objects"):
        run_stages([Stage("plain", trainer)], tmp_path)


def test_load_stage_networks_reads_a_stages_checkpoint(tmp_path):
    saved = {"R": nn.Linear(3, 2), "D": nn.Linear(2, 1)}
    (tmp_path / "translation").mkdir()
    checkpoint = {**{k: v.state_dict() for k, v in saved.items()}, "trainer": {"iteration": 3}}
    torch.save(checkpoint, tmp_path / "translation" / "resume.pt")
    fresh = nn.Linear(3, 2)
    load_stage_networks(tmp_path, "translation", {"R": fresh})
    assert torch.equal(fresh.weight, saved["R"].weight)
    with pytest.raises(ValueError, match=r"resume.pt has no G; it holds D, R, trainer"):
        load_stage_networks(tmp_path, "translation", {"G": nn.Linear(3, 2)})
    with pytest.raises(ValueError, match=r"segmenter/resume.pt not found: train the stage 'segmenter' first"):
        load_stage_networks(tmp_path, "segmenter", {"R": fresh})


def test_boolean_settings_are_read_strictly(tmp_path):
    from common.config import as_bool

    assert [as_bool(v, "x") for v in (True, 1, "true", "Yes", " on ", "1")] == [True] * 6
    assert [as_bool(v, "x") for v in (False, 0, "false", "NO", "off", "0")] == [False] * 6
    for bad in ("flase", "", 2, None, 0.5):
        with pytest.raises(ValueError, match=r"`resume` must be true or false .*got"):
            as_bool(bad, "resume")
    with pytest.raises(ValueError, match="`resume` must be true or false"):
        run_stages([], tmp_path, resume="maybe")
    # `--resume false` reaches run_stages as the string 'false': a fresh run, not a resumed one.
    stopped, _ = two_stages(second_epochs=1)
    run_stages(stopped, tmp_path)
    fresh, _ = two_stages()
    seen = []
    fresh[0].trainer.add_event_handler(Events.ITERATION_STARTED, lambda e: seen.append(("first", e.state.iteration)))
    fresh[1].trainer.add_event_handler(Events.ITERATION_STARTED, lambda e: seen.append(("second", e.state.iteration)))
    run_stages(fresh, tmp_path, resume="false")
    assert seen[0] == ("first", 1) and seen[-1] == ("second", 6)  # both stages trained from the start
