"""A population-based study killed (SIGKILL of its driver) right after a logged decision, and
again in the middle of an interval, then resumed: the population goes on with the decisions
already taken, none made again and none lost, and every trial ends TERMINATED with the
schedule the decisions gave it. Simulated trials; three seed groups of two seeds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import optuna
import pytest
from ray.tune import ExperimentAnalysis

from mtl_tune.studies.results import read_result_rows
from mtl_tune.studies.spec import RAY_ID_ATTR
from mtl_tune.studies.store import population_events, read_meta
from tests.studies.conftest import PBT, launch_and_kill, resume_cli, write_spec

EXTRA = ("--simulate", "--epoch-seconds", "0.6")

# the driver stops itself (SIGSTOP) the instant a generation is on the log, before the decision
# is carried out: polled, the kill could land after Tune had saved the exploit (a CI run did)
STOP_AFTER_DECISION = """
import os, signal
from mtl_tune.studies.driver import _population_scheduler as scheduler
_log = scheduler.PopulationScheduler._log
def _log_then_stop(self, events):
    _log(self, events)
    if any(event["event"] == "generation" for event in events):
        os.kill(os.getpid(), signal.SIGSTOP)
scheduler.PopulationScheduler._log = _log_then_stop
"""


def _launch_killed(tmp_path: Path, tiny_data_dir: Path, ray_tmp: Path, name: str,
                   until: Any, prelude: str = "") -> tuple[Path, Any]:
    top = (f'name = "{name}"\ntrainables = ["it10-warmup-decay"]\nsearch = "pbt"\n'
           "num_samples = 3\nseeds = 2\nmax_concurrent = 6\noptuna_seed = 1")
    path = write_spec(tmp_path, top, {"epochs": 4}, PBT)
    root = tmp_path / "studies"
    seen = launch_and_kill(path, tiny_data_dir, root, ray_tmp, lambda: until(root / name),
                           extra=EXTRA, prelude=prelude)
    return root, seen


def _generations(folder: Path) -> list[dict[str, Any]]:
    if not (folder / "population.jsonl").is_file():
        return []
    return [e for e in population_events(folder) if e["event"] == "generation"]


def _saved_configs(experiment: Path) -> dict[str, dict[str, Any]]:
    """Trial id -> its configuration in Tune's newest saved state."""
    newest = sorted(experiment.glob("experiment_state-*.json"))[-1]
    return {json.loads(t)["trial_id"]: json.loads(t)["config"]
            for t, _ in json.loads(newest.read_text())["trial_data"]}


def _check_resumed(root: Path, name: str, tmp_path: Path, ray_tmp: Path) -> None:
    output = resume_cli(name, root, ray_tmp, tmp_path / "resume.log")
    assert f"simulated study {name}: 6 of 6 planned trials finished, 0 errored" in output
    folder = root / name
    generations = _generations(folder)
    # each generation decided once: none made again after the kill, none lost
    assert [g["epoch"] for g in generations] == [1, 2, 3]
    experiment = folder / "tune" / "main"
    trials = ExperimentAnalysis(str(experiment)).trials
    assert len(trials) == 6 and {t.status for t in trials} == {"TERMINATED"}
    rows = {t.trial_id: read_result_rows(Path(t.path)) for t in trials}
    for trial_id, trial_rows in rows.items():  # each epoch once, none lost, none twice
        assert [int(r["epoch"]) for r in trial_rows] == [1, 2, 3, 4], trial_id
    # every exploit logged is what its seeds trained with from the next epoch on
    for generation in generations:
        (exploit,) = generation["exploits"]
        for member_trial, _, _ in exploit["seeds"].values():
            after = [r for r in rows[member_trial] if int(r["epoch"]) == generation["epoch"] + 1]
            assert after[-1]["config"]["lr"] == pytest.approx(exploit["new"]["lr"])
            assert after[-1]["config"]["dropout"] == exploit["new"]["dropout"]
    # the Optuna record matches the decisions: a trial per seed group, once each, at its
    # seeds' final mean, its schedule ending in the values of its last exploit
    record = optuna.load_study(study_name=name, storage=read_meta(folder).optuna_storage)
    by_member = {t.user_attrs[RAY_ID_ATTR]: t for t in record.trials}
    assert len(record.trials) == len(by_member) == 3
    for member, trial in by_member.items():
        seeds = [r for r in rows.values() if r[0]["config"]["seed_group"] == member]
        assert trial.value == pytest.approx(sum(r[-1]["overall"] for r in seeds) / 2)
    last = {g["exploits"][0]["member"]: g for g in generations}  # (in order)
    for member, generation in last.items():
        (exploit,) = generation["exploits"]
        assert by_member[member].user_attrs["schedule"][-1] == {
            "epoch": generation["epoch"] + 1, "lr": pytest.approx(exploit["new"]["lr"]),
            "dropout": exploit["new"]["dropout"]}


@pytest.mark.chaos  # a launch, a kill and a resume: about half a minute
def test_a_kill_right_after_a_logged_decision_resumes_with_that_decision(
    tmp_path: Path, tiny_data_dir: Path, ray_tmp: Path
) -> None:
    def decided(folder: Path) -> list[dict[str, Any]] | None:
        return _generations(folder) or None

    root, (generation,) = _launch_killed(tmp_path, tiny_data_dir, ray_tmp, "pbt-kill-1",
                                         decided, STOP_AFTER_DECISION)
    # killed before Tune saved the exploit: its seeds are restored with their old values, so
    # the resumed driver carries the logged decision out itself
    saved = _saved_configs(root / "pbt-kill-1" / "tune" / "main")
    (exploit,) = generation["exploits"]
    assert all(saved[member]["lr"] == pytest.approx(exploit["old"]["lr"])
               for member, _, _ in exploit["seeds"].values())
    _check_resumed(root, "pbt-kill-1", tmp_path, ray_tmp)


@pytest.mark.chaos
def test_a_kill_in_the_middle_of_an_interval_resumes_the_same_population(
    tmp_path: Path, tiny_data_dir: Path, ray_tmp: Path
) -> None:
    def between(folder: Path) -> int | None:
        """Once a seed reported epoch 2 (the generation at 1 carried out), before the next."""
        if len(_generations(folder)) != 1:
            return None
        results = [e for e in population_events(folder)
                   if e["event"] == "result" and e["epoch"] == 2]
        return len(results) or None

    root, _ = _launch_killed(tmp_path, tiny_data_dir, ray_tmp, "pbt-kill-2", between)
    _check_resumed(root, "pbt-kill-2", tmp_path, ray_tmp)
