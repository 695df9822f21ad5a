"""Checkpoints survive crashes and bad weights: every file is written through a verified temporary
file, never holds NaN, and resume picks the checkpoint by the iteration recorded inside it,
naming every file it skips; a network whose weights stop being finite stops training without
anything being saved over the last good checkpoint."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
import torch
from ignite.engine import Events
from test_engines_base import make, supervised, two_stages
from torch import nn

from common.engines import FiniteGuard, Stage, atomic_save, find_resume, run_stages, save_resume


def state(iteration: int, value: float = 1.0) -> dict:
    """A resume checkpoint's shape: a network's state and the engine's."""
    return {"network": {"weight": torch.full((2, 2), value)}, "trainer": {"iteration": iteration, "epoch": 1}}


def snapshot(folder):
    """Every file under ``folder`` with its bytes."""
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_atomic_save_writes_a_verified_file_and_keeps_the_previous_one(tmp_path):
    path = tmp_path / "models" / "model.pt"
    atomic_save({"weight": torch.ones(3)}, path)
    assert torch.equal(torch.load(path, weights_only=True)["weight"], torch.ones(3))
    atomic_save({"weight": torch.zeros(3)}, path, previous=tmp_path / "models" / "model.previous.pt")
    assert torch.equal(torch.load(path, weights_only=True)["weight"], torch.zeros(3))
    assert torch.equal(
        torch.load(tmp_path / "models" / "model.previous.pt", weights_only=True)["weight"], torch.ones(3)
    )
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.previous.pt", "model.pt"]  # no temporary left


def test_atomic_save_never_writes_non_finite_values(tmp_path):
    path = tmp_path / "resume.pt"
    atomic_save(state(1), path)
    before = path.read_bytes()
    poisoned = state(2)
    poisoned["optimizer"] = {"state": {0: {"exp_avg": torch.tensor([0.0, float("nan")])}}}
    with pytest.raises(FloatingPointError, match=r"Not saving .*resume.pt: optimizer.state.0.exp_avg holds NaN"):
        atomic_save(poisoned, path)
    with pytest.raises(FloatingPointError, match=r"network.weight holds NaN or infinite"):
        atomic_save(state(2, float("inf")), path)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["resume.pt"]


def test_a_file_that_does_not_load_back_never_replaces_the_existing_one(tmp_path, monkeypatch):
    path = tmp_path / "model.pt"
    atomic_save({"weight": torch.ones(3)}, path)
    before = path.read_bytes()
    monkeypatch.setattr(torch, "save", lambda obj, file: file.write(b"PK\x03\x04 cut short"))  # e.g. a full disk
    with pytest.raises(RuntimeError, match=r"Not saving .*model.pt: the written file does not load back .*kept"):
        atomic_save({"weight": torch.zeros(3)}, path)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["model.pt"]


def test_resume_picks_the_highest_iteration_not_the_newest_file(tmp_path):
    save_resume(state(4), tmp_path)
    save_resume(state(8), tmp_path)
    assert torch.load(tmp_path / "resume.previous.pt", weights_only=True)["trainer"]["iteration"] == 4
    future = (tmp_path / "resume.pt").stat().st_mtime + 3600
    os.utime(tmp_path / "resume.previous.pt", (future, future))  # touched: the older checkpoint is now newer
    path, saved = find_resume(tmp_path)
    assert path == tmp_path / "resume.pt" and saved["trainer"]["iteration"] == 8
    assert find_resume(tmp_path / "empty") is None


@pytest.mark.parametrize(
    "damage, reason",
    [
        (lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]), "PytorchStreamReader"),
        (lambda p: p.write_bytes(b""), "the file is empty"),
        (lambda p: torch.save(state(12, float("nan")), p), "network.weight holds NaN"),
        (lambda p: torch.save({"weight": torch.ones(1)}, p), "it holds no trainer state"),
    ],
    ids=["truncated", "empty", "nan", "not-a-checkpoint"],
)
def test_a_checkpoint_that_is_unusable_is_skipped_and_named(tmp_path, caplog, damage, reason):
    save_resume(state(4), tmp_path)
    save_resume(state(8), tmp_path)
    damage(tmp_path / "resume.pt")
    with caplog.at_level(logging.WARNING):
        path, saved = find_resume(tmp_path)
    assert path == tmp_path / "resume.previous.pt" and saved["trainer"]["iteration"] == 4
    assert f"Skipping the resume checkpoint {tmp_path / 'resume.pt'}: {reason}" in caplog.text
    damage(tmp_path / "resume.previous.pt")
    with pytest.raises(ValueError, match=r"No usable resume checkpoint: .*resume.pt \(.*\); .*resume.previous.pt \("):
        find_resume(tmp_path)


def test_resume_after_a_damaged_checkpoint_continues_from_the_previous_one(tmp_path, caplog):
    stopped, _ = two_stages(second_epochs=2)
    run_stages(stopped, tmp_path)  # stage 2: checkpoints after iterations 3 and 6
    checkpoint = tmp_path / "second" / "resume.pt"
    checkpoint.write_bytes(checkpoint.read_bytes()[:100])
    resumed, _ = two_stages(second_epochs=3)
    seen = []
    resumed[1].trainer.add_event_handler(Events.ITERATION_STARTED, lambda e: seen.append(e.state.iteration))
    with caplog.at_level(logging.INFO):
        run_stages(resumed, tmp_path, resume=True)
    assert f"Skipping the resume checkpoint {checkpoint}" in caplog.text
    assert f"resuming from {tmp_path / 'second' / 'resume.previous.pt'} (iteration 3)" in caplog.text
    assert seen == [4, 5, 6, 7, 8, 9]
    assert torch.load(checkpoint, weights_only=True)["trainer"]["iteration"] == 9


def test_a_checkpoint_of_another_configuration_is_refused_naming_the_file(tmp_path):
    stopped, _ = two_stages(second_epochs=1)
    run_stages(stopped, tmp_path)
    other = Stage("second", make(nets={"encoder": nn.Conv2d(1, 2, 3, padding=1), "decoder": nn.Conv2d(2, 1, 1)}))
    checkpoint = tmp_path / "second" / "resume.pt"
    with pytest.raises(RuntimeError, match=rf"Cannot resume from {checkpoint}: Error\(s\) in loading state_dict"):
        run_stages([other], tmp_path, resume=True)
    finished_first, _ = two_stages()
    bigger = nn.Conv2d(1, 1, 5, padding=2)
    trainer, optimizer = supervised(bigger)
    reused = Stage("first", trainer, checkpoint={"network": bigger, "optimizer": optimizer})
    with pytest.raises(RuntimeError, match=rf"Cannot reuse {tmp_path / 'first' / 'resume.pt'}: Error\(s\) .*size"):
        run_stages([reused], tmp_path, resume=True)


def poison_at(trainer, iteration, network):
    """Makes ``network``'s weights NaN at the end of ``iteration`` (a diverged step)."""

    def poison(engine):
        if engine.state.iteration == iteration:
            with torch.no_grad():
                next(network.parameters()).fill_(float("nan"))

    trainer.add_event_handler(Events.ITERATION_COMPLETED, poison)


def test_weights_that_diverge_on_an_epochs_last_step_are_never_saved(tmp_path):
    """The guard checks every 50 iterations; a divergence on the last step of an epoch is caught
    before the checkpoint is written: the last good checkpoint stays, no release is written."""
    stages, first = two_stages(first_epochs=3)  # 2 iterations per epoch
    poison_at(stages[0].trainer, 4, first)  # the last step of epoch 2
    after_epoch_1 = {}
    stages[0].trainer.add_event_handler(
        Events.EPOCH_STARTED(once=2), lambda e: after_epoch_1.update(snapshot(tmp_path))
    )
    with pytest.raises(FloatingPointError, match=r"Not saving .*first/resume.pt: network.weight holds NaN"):
        run_stages(stages, tmp_path, release=first)
    assert list(after_epoch_1) == [Path("first/resume.pt")] and snapshot(tmp_path) == after_epoch_1
    assert torch.load(tmp_path / "first" / "resume.pt", weights_only=True)["trainer"]["iteration"] == 2


def test_the_guard_stops_training_naming_the_network_and_iteration(tmp_path):
    stages, _ = two_stages(second_epochs=1)
    run_stages(stages[1:], tmp_path)  # stage 'second': a checkpoint after iteration 3
    before = snapshot(tmp_path)
    stages, _ = two_stages(second_epochs=4)
    decoder = stages[1].trainer.networks["decoder"]
    poison_at(stages[1].trainer, 5, decoder)
    with pytest.raises(
        FloatingPointError,
        match=r"Stage 'second': network 'decoder' has NaN or infinite weights \(weight\) after epoch 2, iteration 5",
    ):
        run_stages(stages[1:], tmp_path, resume=True, release=decoder, check_interval=1)
    assert snapshot(tmp_path) == before  # nothing written: no checkpoint, no release
    guard = FiniteGuard({"network": nn.Linear(2, 2)})
    assert guard.interval == 50  # the default: one device synchronisation per 50 iterations
