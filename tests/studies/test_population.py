"""Population-based training's pieces that need no Ray: the `[pbt]` table's reading and
refusals, explore's mutations, and the population's decisions as a replayable log."""

from __future__ import annotations

import random
from typing import Any

import pytest

from mtl_tune.exceptions import SpecError
from mtl_tune.studies.driver._population_ledger import PopulationLedger, explore
from mtl_tune.studies.spec import StudySpec
from mtl_tune.studies.spec._pbt import PbtSpec, check_pbt, parse_pbt
from mtl_tune.studies.spec._spec import Scheduler

SRC = "pbt.toml"
MUTATIONS = {"lr": {"loguniform": [1e-5, 1e-3]}, "dropout": [0.1, 0.2, 0.3]}


def _spec(**changes: Any) -> StudySpec:
    base = StudySpec(name="pbt", trainables=("it7-cosrelu-tuned",), search="pbt",
                     num_samples=4, seeds=2, max_concurrent=8, scheduler=Scheduler("none"),
                     source=SRC)
    return base.replace(**changes)


def test_the_pbt_table_reads_into_its_settings() -> None:
    pbt = parse_pbt({"interval": 2, "quantile": 0.5, "mutations": MUTATIONS}, SRC)
    assert pbt is not None and (pbt.interval, pbt.quantile, pbt.resample_probability) == (
        2, 0.5, 0.25)
    assert pbt.mutations["lr"].kind == "loguniform"
    assert pbt.mutations["dropout"].values == (0.1, 0.2, 0.3)  # a list is a choice
    check_pbt(_spec(), pbt, epochs=4)  # a population that can run


@pytest.mark.parametrize(("table", "spec", "message"), [
    ({"mutations": {"batch_size": [16, 32]}}, {},
     "pbt.mutations.batch_size in pbt.toml: an exploit may change only what a run takes between "
     "two optimizer steps ['lr', 'dropout', 'weight_decay', 'sampling_temperature', "
     "'smart_weight', 'famo_lr', 'cagrad_c', 'max_grad_norm'], and 'batch_size' cannot change "
     "mid-run"),
    ({"mutations": {"pooling": ["mean", "cls"]}}, {}, "'pooling' cannot change mid-run"),
    ({}, {}, "search 'pbt' needs [pbt] mutations in pbt.toml"),
    ({"mutations": MUTATIONS, "quantile": 0.75}, {},
     "`pbt.quantile` must be in (0, 0.5] in pbt.toml, but got 0.75"),
    ({"mutations": MUTATIONS, "interval": 0}, {},
     "`pbt.interval` must be >= 1 in pbt.toml, but got 0"),
    ({"mutations": MUTATIONS, "interval": 4}, {},
     "`pbt.interval` must be below the trials' epochs (4) in pbt.toml"),
    ({"mutations": MUTATIONS}, {"max_concurrent": 6},
     "`max_concurrent` must be at least num_samples x seeds (8) for search 'pbt' in pbt.toml"),
    ({"mutations": MUTATIONS}, {"num_samples": 1},
     "`num_samples` (the population) must be at least 2"),
    ({"mutations": {"lr": [1e-5, 2e-5]}}, {"fixed": {"lr": 3e-5}},
     "'lr' is both fixed ([fixed] of pbt.toml, or a --set) and mutated"),
    ({"mutations": MUTATIONS}, {"scheduler": Scheduler("asha")},
     "search 'pbt' decides itself which members continue: set [scheduler] type = 'none'"),
    ({"mutations": MUTATIONS}, {"trainables": ("it7-cosrelu-tuned", "it10-warmup-decay")},
     "search 'pbt' trains one model iteration: an exploit continues another member's "
     "checkpoint, so name one trainable in pbt.toml, but got ['it7-cosrelu-tuned', "
     "'it10-warmup-decay']"),
])
def test_a_pbt_table_that_cannot_run_is_refused_with_its_rule(
    table: dict[str, Any], spec: dict[str, Any], message: str
) -> None:
    with pytest.raises(SpecError) as refused:
        check_pbt(_spec(**spec), parse_pbt(table, SRC), epochs=4)
    assert message in str(refused.value)


@pytest.mark.parametrize(("table", "message"), [
    ({"intervall": 2}, "unknown key(s) ['intervall'] in [pbt] of pbt.toml (did you mean "
                       "'interval'?)"),
    ({"interval": 1.5}, "`pbt.interval` must be an integer in pbt.toml, but got 1.5"),
    ({"mutations": {"lr": 1e-4}}, "pbt.mutations.lr in pbt.toml must be a distribution"),
    ({"mutations": {"lr": {"when": {"sampling": "temperature"}, "uniform": [0, 1]}}},
     "a mutation takes no `when`"),
])
def test_a_pbt_table_that_does_not_read_is_refused_with_key_and_file(
    table: dict[str, Any], message: str
) -> None:
    with pytest.raises(SpecError) as refused:
        parse_pbt(table, SRC)
    assert message in str(refused.value)


def _pbt(**changes: Any) -> PbtSpec:
    parsed = parse_pbt({"mutations": MUTATIONS, **changes}, SRC)
    assert parsed is not None
    return parsed


def test_explore_perturbs_within_range_or_draws_anew() -> None:
    never_resample = _pbt(resample_probability=0.0)
    config = {"lr": 1e-4, "dropout": 0.2, "seed": 0}
    for draw in range(20):
        new = explore(config, never_resample, random.Random(draw))
        assert new["lr"] in (pytest.approx(0.8e-4), pytest.approx(1.2e-4))
        assert new["dropout"] in (0.1, 0.3) and new["seed"] == 0  # a neighbour; the rest kept
    # at an end of its range a number stays in it; a list's end value moves in or stays
    edge = explore({"lr": 1e-3, "dropout": 0.3}, never_resample, random.Random(1))
    assert edge["lr"] <= 1e-3 and edge["dropout"] in (0.2, 0.3)
    always = _pbt(resample_probability=1.0)
    drawn = [explore(config, always, random.Random(d))["lr"] for d in range(50)]
    assert all(1e-5 <= lr <= 1e-3 for lr in drawn) and len(set(drawn)) == 50
    # the same generator, the same mutation
    assert explore(config, always, random.Random(7)) == explore(config, always, random.Random(7))


def _population(scores: dict[str, tuple[float, float]]) -> PopulationLedger:
    """Four members (a..d) of two seeds each, every seed's epoch-1 score given."""
    ledger = PopulationLedger(_pbt(), seeds=2, mode="max", planned=3, seed=5)
    for member in scores:
        for rank in (0, 1):
            ledger.add_trial(f"{member}{rank}", member, rank, {"lr": 1e-4, "dropout": 0.2})
    return ledger


SCORES = {"a": (0.60, 0.62), "b": (0.70, 0.50), "c": (0.55, 0.56), "d": (0.80, 0.79)}


def test_a_generation_is_decided_on_every_members_seed_mean_and_copies_seed_by_seed() -> None:
    ledger = _population(SCORES)
    for member, (first, second) in SCORES.items():
        ledger.result(f"{member}0", 1, first, f"{member}0/checkpoint_000000")
        assert ledger.waits(f"{member}0", 1)
        if member != "d":
            ledger.result(f"{member}1", 1, second, f"{member}1/checkpoint_000000")
    assert ledger.decide(population=4) is None  # d's second seed is not there yet
    ledger.result("d1", 1, 0.79, "d1/checkpoint_000000")
    event = ledger.decide(population=4)
    assert event is not None and event["epoch"] == 1
    # ranked on the means (b: 0.60, below a's 0.61, though its first seed scored 0.70)
    assert event["ranking"] == ["d", "a", "b", "c"]
    (exploit,) = event["exploits"]  # a quarter of four: c takes d
    assert (exploit["member"], exploit["donor"]) == ("c", "d")
    # seed by seed, each from the donor's seed of its rank, at the checkpoint it reported there
    assert exploit["seeds"] == {"0": ["c0", "d0", "d0/checkpoint_000000"],
                                "1": ["c1", "d1", "d1/checkpoint_000000"]}
    assert set(exploit["new"]) == {"lr", "dropout"} and exploit["new"] != exploit["old"]
    # the seeds go on to the next generation, at epoch 2 (the last before the third epoch)
    assert not ledger.waits("c0", 1) and ledger.waits("c0", 2)
    assert ledger.decide(population=4) is None  # decided once


def test_a_replayed_log_rebuilds_the_same_population_and_decides_alike() -> None:
    live = _population(SCORES)
    events = []
    for member, (first, second) in SCORES.items():
        events += [live.result(f"{member}0", 1, first), live.result(f"{member}1", 1, second)]
    decided = live.decide(population=4)
    assert decided is not None
    replayed = PopulationLedger.replayed(events + [decided], _pbt(), 2, "max", 3, 5)
    for member in SCORES:
        for rank in (0, 1):
            replayed.add_trial(f"{member}{rank}", member, rank, {"lr": 1e-4, "dropout": 0.2})
    assert replayed.decided[1]["exploits"] == decided["exploits"]
    # Tune adds its trials (with the configurations it saved) after the replay: the exploited
    # member keeps the log's
    assert replayed.members["c"].config == decided["exploits"][0]["new"] != {
        "lr": 1e-4, "dropout": 0.2}
    assert replayed.next_point() == 2  # interval 1, three epochs: the generation at 2 is left
    # the same log replayed without its decision decides the same generation again
    again = PopulationLedger.replayed(events, _pbt(), 2, "max", 3, 5)
    for member in SCORES:
        for rank in (0, 1):
            again.add_trial(f"{member}{rank}", member, rank, {"lr": 1e-4, "dropout": 0.2})
    redo = again.decide(population=4)
    assert redo is not None and redo["exploits"] == decided["exploits"]


def test_a_trials_lineage_follows_its_donors_back_through_each_exploit() -> None:
    from mtl_tune.studies.results._lineage import Segment, exploit_edges, lineage, schedule

    def generation(epoch: int, member: str, donor: str) -> dict[str, Any]:
        return {"event": "generation", "epoch": epoch, "exploits": [
            {"member": member, "donor": donor, "seeds": {"0": [member, donor, "ck"]}}]}

    # c took a's checkpoint after epoch 1, a took c's after 2, b took a's after 3
    events = [{"event": "result"}, generation(1, "c", "a"), generation(2, "a", "c"),
              generation(3, "b", "a")]
    edges = exploit_edges(events)
    assert edges == {"c": [(1, "a")], "a": [(2, "c")], "b": [(3, "a")]}
    configs = {t: {e: {"lr": float(10 * e + i), "seed": 0} for e in range(1, 5)}
               for i, t in enumerate("abc")}
    # b's weights went through a's first epoch, c's second, a's third and its own fourth
    line = lineage("b", 4, edges, configs)
    assert [(s.first, s.last, s.trial) for s in line] == [
        (1, 1, "a"), (2, 2, "c"), (3, 3, "a"), (4, 4, "b")]
    assert schedule(line, ["lr"]) == [{"epoch": 1, "lr": 10.0}, {"epoch": 2, "lr": 22.0},
                                      {"epoch": 3, "lr": 30.0}, {"epoch": 4, "lr": 41.0}]
    # a trial never exploited is its own run; one unchanged across a donor keeps one row
    assert lineage("b", 3, edges, configs) == [Segment(1, 3, "b", configs["b"][3])]
    same = {t: {e: {"lr": 1.0} for e in range(1, 5)} for t in "abc"}
    assert schedule(lineage("b", 4, edges, same), ["lr"]) == [{"epoch": 1, "lr": 1.0}]
