"""A run that follows a population-based trial's schedule from scratch (`train --replay`): each
step at the lineage's rate, the new values in force from the epoch they change."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from mtl_tune.exceptions import ConfigError
from mtl_tune.platform import replay, standalone
from mtl_tune.platform.bundle import build_bundle
from mtl_tune.platform.checkpoint import restore_trainer, save_checkpoint
from mtl_tune.platform.replay import parse_schedule
from mtl_tune.platform.train import Trainer
from tests.platform.test_train import _config

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _recording(rates: list[tuple[int, float]]) -> type[Trainer]:
    class Recording(Trainer):
        """Keeps the rate each optimizer step of the run trained at."""

        def train_epoch(self, epoch: int, on_step: Any = None, max_steps: Any = None) -> dict:
            def step(done: int, total: int) -> None:
                rates.append((epoch, self.trained_at))
                self.trained_at = self.optimizer.param_groups[0]["lr"]
                if on_step is not None:
                    on_step(done, total)

            self.trained_at = self.optimizer.param_groups[0]["lr"]
            return super().train_epoch(epoch, step, max_steps)

    return Recording


def test_a_replay_trains_each_step_at_the_rate_of_the_lineage_it_follows(
    tiny_bert_dir: Path, tiny_data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the lineage, as population-based training ran it: A trains epoch 1 inside a linear warmup,
    # B continues from A's checkpoint with lr x0.8 and dropout 0.3 and trains epochs 2 and 3
    a = _config(tiny_bert_dir, tiny_data_dir, epochs=3, lr_schedule="linear", warmup_ratio=0.5,
                dropout=0.1)
    b = dataclasses.replace(a, lr=a.lr * 0.8, dropout=0.3)
    splits = build_bundle(a).for_config(a)
    lineage: list[tuple[int, float]] = []
    donor = _recording(lineage)(a, splits)
    first = donor.run_epoch(1)
    save_checkpoint(donor, tmp_path / "a", first.metrics)
    member = _recording(lineage)(b, splits)
    restore_trainer(member, tmp_path / "a")
    logged = [first.metrics, member.run_epoch(2).metrics, member.run_epoch(3).metrics]

    replayed: list[tuple[int, float]] = []
    monkeypatch.setattr(standalone, "Trainer", _recording(replayed))
    monkeypatch.setattr(replay, "Trainer", _recording(replayed))
    schedule = parse_schedule([{"epoch": 1, "lr": a.lr, "dropout": 0.1},
                               {"epoch": 2, "lr": b.lr, "dropout": 0.3}])
    history = standalone.train_run(dataclasses.replace(a, lr=0.5), tmp_path / "replay",
                                   schedule=schedule, about={"replay": {"trial": "b"}})

    # every step at the lineage's rate: warmup and decay go on from the step reached
    steps = len(lineage)
    assert steps > 6 and [e for e, _ in replayed] == [e for e, _ in lineage]
    assert [r for _, r in replayed] == pytest.approx([r for _, r in lineage], rel=1e-12)
    assert len({r for e, r in lineage if e == 2}) > 1  # (the rate moves within an epoch)
    # and the log agrees: each epoch's last rate, as the trial reported it
    assert [h["lr"] for h in history] == pytest.approx([m["lr"] for m in logged], rel=1e-12)
    # the same seed: the same run, scores too (one thread: the same summation order)
    assert [h["overall"] for h in history] == pytest.approx(
        [m["overall"] for m in logged], abs=1e-6)
    summary = json.loads((tmp_path / "replay" / "metrics.json").read_text())
    assert summary["schedule"] == [{"epoch": 1, "lr": a.lr, "dropout": 0.1},
                                   {"epoch": 2, "lr": b.lr, "dropout": 0.3}]
    assert summary["config"]["lr"] == a.lr and summary["replay"] == {"trial": "b"}


@pytest.mark.parametrize(("rows", "message"), [
    ([{"epoch": 1, "batch_size": 16}],
     "a schedule may change only lr, dropout, weight_decay, sampling_temperature, smart_weight, "
     "famo_lr, cagrad_c, max_grad_norm during a run, but it changes batch_size at epoch 1"),
    ([{"epoch": 2, "lr": 1e-5}, {"epoch": 2, "lr": 2e-5}],
     "a schedule's epochs must increase, but epoch 2 follows epoch 2"),
    ([{"epoch": 0, "lr": 1e-5}], "a schedule's `epoch` must be an integer >= 1, but got 0"),
])
def test_a_schedule_that_a_run_cannot_follow_is_refused_with_its_rule(
    rows: list[dict[str, Any]], message: str
) -> None:
    with pytest.raises(ConfigError) as err:
        parse_schedule(rows)
    assert str(err.value) == message
