"""Tests of the task-sampling schemes in mtl_tune.platform.sampling."""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
import pytest

from mtl_tune.exceptions import ConfigError, MtlTuneError
from mtl_tune.platform.sampling import (
    SCHEMES,
    annealing_alpha,
    batches_per_task,
    epoch_schedule,
    task_probabilities,
)

SIZES = {"sst": 10, "para": 40, "sts": 7}
TOTAL = sum(SIZES.values())
EPOCHS_DRAWN = 200
DETERMINISTIC = ("sst-only", "round-robin", "balanced")
RANDOM = ("proportional", "annealed")


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def _mean_counts(scheme: str, epoch: int, epochs: int, seed: int) -> dict[str, float]:
    rng = _rng(seed)
    totals = dict.fromkeys(SIZES, 0)
    for _ in range(EPOCHS_DRAWN):
        for task, count in batches_per_task(
            epoch_schedule(scheme, SIZES, rng, epoch=epoch, epochs=epochs)
        ).items():
            totals[task] += count
    return {task: total / EPOCHS_DRAWN for task, total in totals.items()}


def _four_sigma_of_mean(p: float) -> float:
    return 4.0 * math.sqrt(TOTAL * p * (1.0 - p) / EPOCHS_DRAWN)


def test_schemes_are_the_public_names() -> None:
    # SCHEMES lists exactly the six scheme names, in the documented order.
    assert SCHEMES == (
        "sst-only", "round-robin", "balanced", "proportional", "annealed", "temperature"
    )


@pytest.mark.parametrize(
    ("scheme", "expected"),
    [
        ("sst-only", {"sst": 10}),
        ("round-robin", {"sst": 10, "para": 40, "sts": 7}),
        ("balanced", {"sst": 40, "para": 40, "sts": 40}),
    ],
)
def test_deterministic_batches_per_task(scheme: str, expected: dict[str, int]) -> None:
    counts = batches_per_task(epoch_schedule(scheme, SIZES, _rng()))
    # Each deterministic scheme gives each task exactly the batches its definition says.
    assert counts == expected


def test_sst_only_is_only_sst() -> None:
    schedule = epoch_schedule("sst-only", SIZES, _rng())
    # sst-only trains n_sst steps, all of them on "sst".
    assert schedule == ["sst"] * 10


def test_round_robin_order() -> None:
    schedule = epoch_schedule("round-robin", SIZES, _rng())
    # While every task has batches left, the tasks take turns in the given order.
    assert schedule[: 3 * 7] == ["sst", "para", "sts"] * 7
    # Once "sts" (7 batches) ran out, the other two go on taking turns.
    assert schedule[21:27] == ["sst", "para"] * 3
    # Once "sst" (10 batches) ran out too, only the largest task "para" remains.
    assert schedule[27:] == ["para"] * 30


@pytest.mark.parametrize(
    ("sizes", "expected"),
    [
        ({"a": 1, "b": 3}, ["a", "b", "b", "b"]),
        ({"b": 3, "a": 1}, ["b", "a", "b", "b"]),
        ({"x": 2, "y": 2, "z": 1}, ["x", "y", "z", "x", "y"]),
        ({"solo": 3}, ["solo", "solo", "solo"]),
    ],
)
def test_round_robin_any_task_names(sizes: dict[str, int], expected: list[str]) -> None:
    # Round-robin follows the order of sizes and drops each task after its n_t batches.
    assert epoch_schedule("round-robin", sizes, _rng()) == expected


def test_balanced_order() -> None:
    schedule = epoch_schedule("balanced", SIZES, _rng())
    # Balanced interleaves max(n) = 40 full rounds of all tasks in the given order.
    assert schedule == ["sst", "para", "sts"] * 40


@pytest.mark.parametrize("scheme", DETERMINISTIC)
def test_deterministic_schemes_leave_rng_untouched(scheme: str) -> None:
    rng = _rng(7)
    before = rng.bit_generator.state
    epoch_schedule(scheme, SIZES, rng)
    # A deterministic scheme never draws from the generator.
    assert rng.bit_generator.state == before


@pytest.mark.parametrize("scheme", DETERMINISTIC)
@pytest.mark.parametrize("epoch", [1, 2, 3])
def test_deterministic_schemes_ignore_seed_and_epoch(scheme: str, epoch: int) -> None:
    first = epoch_schedule(scheme, SIZES, _rng(1), epoch=epoch, epochs=3)
    second = epoch_schedule(scheme, SIZES, _rng(2))
    # A deterministic scheme gives the same epoch whatever the seed and the epoch number.
    assert first == second


@pytest.mark.parametrize("scheme", RANDOM)
@pytest.mark.parametrize("epoch", [1, 2, 3])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_schemes_total_steps(scheme: str, epoch: int, seed: int) -> None:
    schedule = epoch_schedule(scheme, SIZES, _rng(seed), epoch=epoch, epochs=3)
    # Proportional and annealed epochs have sum(n_t) = 57 steps.
    assert len(schedule) == TOTAL
    # Every step is one of the given tasks.
    assert set(schedule) <= set(SIZES)


def test_proportional_probabilities() -> None:
    probabilities = task_probabilities("proportional", SIZES)
    # Proportional draws task t with probability n_t / sum(n).
    assert probabilities == pytest.approx({t: n / TOTAL for t, n in SIZES.items()}, rel=1e-12)


@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.0, 5.0])
def test_temperature_probabilities(temperature: float) -> None:
    probabilities = task_probabilities("temperature", SIZES, temperature=temperature)
    # task t is drawn with probability n_t^(1/T) / sum(n^(1/T))
    weights = {t: n ** (1 / temperature) for t, n in SIZES.items()}
    total = sum(weights.values())
    assert probabilities == pytest.approx({t: w / total for t, w in weights.items()}, rel=1e-12)


def test_temperature_spans_proportional_to_uniform() -> None:
    # T = 1 is proportional sampling; a very large T is (nearly) uniform
    assert task_probabilities("temperature", SIZES, temperature=1.0) == pytest.approx(
        task_probabilities("proportional", SIZES), rel=1e-12
    )
    hot = task_probabilities("temperature", SIZES, temperature=1e6)
    assert hot == pytest.approx({t: 1 / len(SIZES) for t in SIZES}, abs=1e-4)
    schedule = epoch_schedule("temperature", SIZES, np.random.default_rng(0), temperature=3.0)
    assert len(schedule) == TOTAL


def test_proportional_mean_counts() -> None:
    means = _mean_counts("proportional", epoch=1, epochs=1, seed=1234)
    for task, n in SIZES.items():
        p = n / TOTAL
        # Over 200 epochs the mean count of a task is n_t within 4 sigma of the mean.
        assert abs(means[task] - n) <= _four_sigma_of_mean(p), (task, means[task], n)


@pytest.mark.parametrize(
    ("epoch", "epochs", "expected"),
    [
        (1, 3, 1.0),
        (2, 3, 0.6),
        (3, 3, 0.2),
        (1, 1, 1.0),
        (1, 2, 1.0),
        (2, 2, 0.2),
        (3, 5, 0.6),
    ],
)
def test_annealing_alpha(epoch: int, epochs: int, expected: float) -> None:
    # alpha = 1 - 0.8 * (e - 1) / (E - 1), and 1 when E == 1.
    assert annealing_alpha(epoch, epochs) == pytest.approx(expected, abs=1e-12)


def test_annealed_probabilities_last_epoch() -> None:
    probabilities = task_probabilities("annealed", SIZES, epoch=3, epochs=3)
    weights = {t: n**0.2 for t, n in SIZES.items()}
    expected = {t: w / sum(weights.values()) for t, w in weights.items()}
    # In the last epoch the probabilities are n_t ** 0.2 / sum(n ** 0.2).
    assert probabilities == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("epochs", [1, 3, 10])
def test_annealed_first_epoch_is_proportional(epochs: int) -> None:
    annealed = task_probabilities("annealed", SIZES, epoch=1, epochs=epochs)
    # At alpha = 1 (first epoch) annealed equals proportional.
    assert annealed == pytest.approx(task_probabilities("proportional", SIZES), rel=1e-12)


def test_annealed_flattens_over_epochs() -> None:
    para = [task_probabilities("annealed", SIZES, epoch=e, epochs=3)["para"] for e in (1, 2, 3)]
    # As alpha falls, the largest task's share shrinks from epoch to epoch.
    assert para[0] > para[1] > para[2] > 1 / 3


@pytest.mark.parametrize("epoch", [2, 3])
def test_annealed_mean_counts(epoch: int) -> None:
    probabilities = task_probabilities("annealed", SIZES, epoch=epoch, epochs=3)
    means = _mean_counts("annealed", epoch=epoch, epochs=3, seed=99)
    for task, p in probabilities.items():
        # Over 200 epochs the mean count of a task is 57 * p_t within 4 sigma of the mean.
        assert abs(means[task] - TOTAL * p) <= _four_sigma_of_mean(p), (task, means[task])


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("epoch", [1, 2, 3])
def test_probabilities_sum_to_one(scheme: str, epoch: int) -> None:
    probabilities = task_probabilities(scheme, SIZES, epoch=epoch, epochs=3)
    # There is a probability for every task, in the order of sizes.
    assert list(probabilities) == list(SIZES)
    # The probabilities sum to 1.
    assert sum(probabilities.values()) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("scheme", DETERMINISTIC)
def test_deterministic_probabilities_are_schedule_fractions(scheme: str) -> None:
    schedule = epoch_schedule(scheme, SIZES, _rng())
    counts = batches_per_task(schedule)
    expected = {t: counts.get(t, 0) / len(schedule) for t in SIZES}
    # For a deterministic scheme the probabilities are the exact fractions of its schedule.
    assert task_probabilities(scheme, SIZES) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("epoch", [1, 2, 3])
def test_same_seed_same_schedule(scheme: str, epoch: int) -> None:
    first = epoch_schedule(scheme, SIZES, _rng(42), epoch=epoch, epochs=3)
    second = epoch_schedule(scheme, SIZES, _rng(42), epoch=epoch, epochs=3)
    # The same seed and epoch recreate the same schedule (e.g. for a resumed run).
    assert first == second


@pytest.mark.parametrize("scheme", RANDOM)
def test_different_seeds_differ(scheme: str) -> None:
    first = epoch_schedule(scheme, SIZES, _rng(1), epoch=2, epochs=3)
    second = epoch_schedule(scheme, SIZES, _rng(2), epoch=2, epochs=3)
    # A random scheme's schedule depends on the generator.
    assert first != second


@pytest.mark.parametrize("scheme", ["round-robin", "balanced", "proportional", "annealed"])
def test_any_task_names(scheme: str) -> None:
    sizes = {"alpha": 3, "beta": 5}
    schedule = epoch_schedule(scheme, sizes, _rng(), epoch=2, epochs=2)
    # Schemes other than sst-only work with any task names: both tasks are scheduled, and
    # round-robin takes every batch of each once
    assert set(schedule) == {"alpha", "beta"}
    if scheme == "round-robin":
        assert batches_per_task(schedule) == sizes


def test_numpy_integer_sizes() -> None:
    sizes: dict[str, Any] = {"sst": np.int64(2), "para": np.int32(3)}
    # NumPy integers are accepted as task sizes.
    assert batches_per_task(epoch_schedule("round-robin", sizes, _rng())) == {"sst": 2, "para": 3}


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [
        (["a", "b", "a"], {"a": 2, "b": 1}),
        (("b", "a", "a"), {"b": 1, "a": 2}),
        ([], {}),
    ],
)
def test_batches_per_task(schedule: list[str], expected: dict[str, int]) -> None:
    counts = batches_per_task(schedule)
    # The counts are the steps of each task present.
    assert counts == expected
    # The tasks come in order of first appearance.
    assert list(counts) == list(expected)


# --- bad inputs -------------------------------------------------------------------------------


def _call(
    function: str, scheme: str = "proportional", sizes: object = None, **kwargs: object
) -> object:
    sizes = SIZES if sizes is None else sizes
    if function == "schedule":
        return epoch_schedule(scheme, sizes, _rng(), **kwargs)  # type: ignore[arg-type]
    return task_probabilities(scheme, sizes, **kwargs)  # type: ignore[arg-type]


BOTH = pytest.mark.parametrize("function", ["schedule", "probabilities"])


@BOTH
@pytest.mark.parametrize("scheme", ["foo", "SST-only", "", "round_robin"])
def test_unknown_scheme(function: str, scheme: str) -> None:
    message = f"scheme must be one of {SCHEMES}, but got {scheme!r}"
    # An unknown scheme is rejected, naming the allowed schemes and the value received.
    with pytest.raises(ValueError, match=re.escape(message)):
        _call(function, scheme=scheme)


@BOTH
def test_empty_sizes(function: str) -> None:
    # Sizes must name at least one task.
    with pytest.raises(
        ValueError, match=re.escape("sizes must name at least one task, but got {}")
    ):
        _call(function, sizes={})


@BOTH
def test_sizes_not_a_mapping(function: str) -> None:
    message = "sizes must be a mapping of task name to batches per epoch, but got [('sst', 1)]"
    # Sizes must be a mapping.
    with pytest.raises(ValueError, match=re.escape(message)):
        _call(function, sizes=[("sst", 1)])


@BOTH
@pytest.mark.parametrize(
    ("sizes", "shown"),
    [
        ({"sst": 0}, "{'sst': 0}"),
        ({"sst": 3, "para": -2}, "{'para': -2}"),
        ({"sst": 2.0}, "{'sst': 2.0}"),
        ({"sst": True}, "{'sst': True}"),
        ({"sst": "4"}, "{'sst': '4'}"),
        ({"sst": 0, "sts": None}, "{'sst': 0, 'sts': None}"),
    ],
)
def test_bad_task_size(function: str, sizes: dict[str, object], shown: str) -> None:
    message = f"every task size must be a positive integer, but got {shown}"
    # Every size must be a positive integer; the message names the offending entries.
    with pytest.raises(ValueError, match=re.escape(message)):
        _call(function, sizes=sizes)


@BOTH
@pytest.mark.parametrize(("sizes", "shown"), [({1: 3}, "[1]"), ({"": 3, "sst": 1}, "['']")])
def test_bad_task_name(function: str, sizes: dict[object, int], shown: str) -> None:
    message = f"every task name must be a non-empty string, but got {shown}"
    # Every task name must be a non-empty string.
    with pytest.raises(ValueError, match=re.escape(message)):
        _call(function, sizes=sizes)


@BOTH
@pytest.mark.parametrize(("epoch", "epochs"), [(3, 2), (0, 2), (-1, 3), (1, 0), (2, 1)])
def test_epoch_out_of_range(function: str, epoch: int, epochs: int) -> None:
    message = f"1 <= epoch <= epochs must hold, but got (epoch={epoch}, epochs={epochs})"
    # The epoch must lie in 1..epochs.
    with pytest.raises(ValueError, match=re.escape(message)):
        _call(function, scheme="annealed", epoch=epoch, epochs=epochs)


@BOTH
@pytest.mark.parametrize(("epoch", "epochs"), [(1.0, 2), (1, 2.5), ("1", 2), (True, 2)])
def test_epoch_not_an_integer(function: str, epoch: object, epochs: object) -> None:
    message = f"epoch and epochs must be integers, but got (epoch={epoch!r}, epochs={epochs!r})"
    # The epoch and the number of epochs must be integers.
    with pytest.raises(ValueError, match=re.escape(message)):
        _call(function, scheme="annealed", epoch=epoch, epochs=epochs)


@pytest.mark.parametrize(("epoch", "epochs"), [(3, 2), (0, 1), (1, 0)])
def test_annealing_alpha_bad_epoch(epoch: int, epochs: int) -> None:
    message = f"1 <= epoch <= epochs must hold, but got (epoch={epoch}, epochs={epochs})"
    # annealing_alpha checks the epoch range too.
    with pytest.raises(ValueError, match=re.escape(message)):
        annealing_alpha(epoch, epochs)


@BOTH
def test_sst_only_without_sst(function: str) -> None:
    message = "scheme 'sst-only' needs a task named 'sst' in sizes, but got tasks ['para', 'sts']"
    # sst-only needs a task named "sst".
    with pytest.raises(ValueError, match=re.escape(message)):
        _call(function, scheme="sst-only", sizes={"para": 40, "sts": 7})


@pytest.mark.parametrize("rng", [None, 0, np.random.RandomState(0)])
def test_rng_must_be_a_generator(rng: object) -> None:
    # The generator must be a numpy.random.Generator.
    with pytest.raises(TypeError, match=re.escape("rng must be a numpy.random.Generator")):
        epoch_schedule("proportional", SIZES, rng)  # type: ignore[arg-type]


def test_errors_are_project_errors() -> None:
    # Input errors are ConfigError, which the CLI catches as MtlTuneError and is a ValueError.
    with pytest.raises(ConfigError) as caught:
        task_probabilities("foo", SIZES)
    # The error is both a project error and a ValueError.
    assert isinstance(caught.value, MtlTuneError) and isinstance(caught.value, ValueError)


@BOTH
@pytest.mark.parametrize("temperature", [0, -1.0, float("nan"), "hot"])
def test_bad_temperature(function: str, temperature: object) -> None:
    message = f"temperature must be a number > 0, but got {temperature!r}"
    with pytest.raises(ValueError, match=re.escape(message)):
        _call(function, scheme="temperature", temperature=temperature)
