"""Task-sampling schemes: which task each training step of a multi-task epoch trains on.

An epoch is an ordered list of task names, one per step; each step trains on one batch of
that task. ``sizes`` maps every task to its number of batches per epoch ``n_t`` (its data
size divided by the batch size). The training loop draws a task's next batch from that
task's own shuffled iterator, which reshuffles and starts again when exhausted, so a
schedule may ask for more than ``n_t`` batches of a task.

The schemes (the values of :data:`SCHEMES`) follow "Multi-Task Learning for Robust
Contextualized Sentence Embedding Generation" and Stickland & Murray (2019):

* ``"sst-only"``: only the task ``"sst"``, ``n_sst`` batches (the single-task baseline).
* ``"round-robin"``: one batch of each task in turn, in the order of ``sizes``; a task drops
  out once its ``n_t`` batches ran out. Task ``t`` appears exactly ``n_t`` times.
* ``"balanced"``: the smaller tasks are cycled so that each task appears exactly
  ``max(n)`` times, interleaved round-robin (``t1, t2, t3, t1, t2, t3, ...``).
* ``"proportional"``: ``sum(n)`` steps, each step's task drawn independently with
  probability ``n_t / sum(n)``.
* ``"annealed"``: ``sum(n)`` steps, each step's task drawn independently with probability
  proportional to ``n_t ** alpha``, where ``alpha = 1 - 0.8 * (e - 1) / (E - 1)`` for epoch
  ``e`` (1-based) of ``E`` epochs, and ``alpha = 1`` when ``E == 1``.
* ``"temperature"``: ``sum(n)`` steps, each step's task drawn independently with probability
  proportional to ``n_t ** (1 / T)`` for a temperature ``T > 0`` (jiant's and MT-DNN's
  temperature sampling): ``T = 1`` is proportional, a large ``T`` nearly uniform.

Random draws come from a :class:`numpy.random.Generator` passed in, so a seeded run is
reproducible, and a resumed run recreates the schedule of epoch ``e`` by building the same
generator again, e.g. ``numpy.random.default_rng([seed, e])``. The deterministic schemes
never draw from the generator.

Bad inputs raise :class:`~mtl_tune.exceptions.ConfigError`, a :class:`ValueError`.
"""

from __future__ import annotations

import numbers
from collections import Counter
from collections.abc import Mapping, Sequence

import numpy as np

from mtl_tune.exceptions import ConfigError

SCHEMES: tuple[str, ...] = (
    "sst-only", "round-robin", "balanced", "proportional", "annealed", "temperature"
)
"""The task-sampling schemes, by their public names."""

_SST = "sst"
_DRAWN = ("proportional", "annealed", "temperature")
_FINAL_ALPHA_DROP = 0.8


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _check_scheme(scheme: object) -> str:
    if not isinstance(scheme, str) or scheme not in SCHEMES:
        raise ConfigError(f"scheme must be one of {SCHEMES}, but got {scheme!r}")
    return scheme


def _check_sizes(sizes: object) -> dict[str, int]:
    if not isinstance(sizes, Mapping):
        raise ConfigError(
            f"sizes must be a mapping of task name to batches per epoch, but got {sizes!r}"
        )
    if len(sizes) == 0:
        raise ConfigError(f"sizes must name at least one task, but got {dict(sizes)!r}")
    bad_names = [name for name in sizes if not isinstance(name, str) or not name]
    if bad_names:
        raise ConfigError(f"every task name must be a non-empty string, but got {bad_names!r}")
    bad_sizes = {name: value for name, value in sizes.items() if not _is_int(value) or value < 1}
    if bad_sizes:
        raise ConfigError(f"every task size must be a positive integer, but got {bad_sizes!r}")
    return {name: int(value) for name, value in sizes.items()}


def _check_epochs(epoch: int, epochs: int) -> tuple[int, int]:
    if not _is_int(epoch) or not _is_int(epochs):
        raise ConfigError(
            f"epoch and epochs must be integers, but got (epoch={epoch!r}, epochs={epochs!r})"
        )
    e, n = int(epoch), int(epochs)
    if not 1 <= e <= n:
        raise ConfigError(
            f"1 <= epoch <= epochs must hold, but got (epoch={epoch!r}, epochs={epochs!r})"
        )
    return e, n


def _check_sst(sizes: Mapping[str, int]) -> None:
    if _SST not in sizes:
        raise ConfigError(
            f"scheme 'sst-only' needs a task named {_SST!r} in sizes, but got tasks {list(sizes)!r}"
        )


def annealing_alpha(epoch: int, epochs: int) -> float:
    """Return the annealing exponent for one epoch of the ``"annealed"`` scheme.

    ``alpha = 1 - 0.8 * (epoch - 1) / (epochs - 1)``: it falls linearly from 1.0 in the
    first epoch to 0.2 in the last one, and is 1.0 when ``epochs == 1``.

    Args:
        epoch: The epoch, 1-based.
        epochs: The number of epochs of the run.

    Returns:
        The exponent applied to each task's number of batches.

    Raises:
        ConfigError: (a ``ValueError``) if the arguments are not integers with
            ``1 <= epoch <= epochs``.
    """
    e, n = _check_epochs(epoch, epochs)
    if n == 1:
        return 1.0
    return 1.0 - _FINAL_ALPHA_DROP * (e - 1) / (n - 1)


def _check_temperature(temperature: object) -> float:
    if not isinstance(temperature, numbers.Real) or not float(temperature) > 0:
        raise ConfigError(f"temperature must be a number > 0, but got {temperature!r}")
    return float(temperature)


def _draw_probabilities(
    scheme: str, sizes: dict[str, int], epoch: int, epochs: int, temperature: float
) -> dict[str, float]:
    if scheme == "temperature":
        alpha = 1.0 / temperature
    else:
        alpha = 1.0 if scheme == "proportional" else annealing_alpha(epoch, epochs)
    weights = {name: float(n) ** alpha for name, n in sizes.items()}
    total = sum(weights.values())
    return {name: w / total for name, w in weights.items()}


def _deterministic_schedule(scheme: str, sizes: dict[str, int]) -> list[str]:
    if scheme == "sst-only":
        _check_sst(sizes)
        return [_SST] * sizes[_SST]
    rounds = max(sizes.values())
    if scheme == "balanced":
        return [name for _ in range(rounds) for name in sizes]
    # round-robin: a task drops out once its own batches ran out.
    return [name for i in range(rounds) for name, n in sizes.items() if i < n]


def task_probabilities(
    scheme: str,
    sizes: Mapping[str, int],
    epoch: int = 1,
    epochs: int = 1,
    temperature: float = 1.0,
) -> dict[str, float]:
    """Return the share of an epoch's steps that goes to each task.

    For the drawn schemes these are the probabilities each step's task is drawn with:
    ``n_t / sum(n)`` (``"proportional"``), ``n_t ** alpha / sum(n ** alpha)`` with
    ``alpha = annealing_alpha(epoch, epochs)`` (``"annealed"``) or ``alpha = 1 / temperature``
    (``"temperature"``). For the deterministic schemes there is no
    draw: the values are the exact fractions of the epoch's schedule, i.e. ``{"sst": 1.0}``
    plus 0.0 for every other task (``"sst-only"``), ``n_t / sum(n)`` (``"round-robin"``)
    and ``1 / len(sizes)`` (``"balanced"``).

    Args:
        scheme: One of :data:`SCHEMES`.
        sizes: Each task's number of batches per epoch, in task order.
        epoch: The epoch, 1-based; only ``"annealed"`` depends on it.
        epochs: The number of epochs of the run.
        temperature: The temperature of ``"temperature"`` sampling, ``> 0``.

    Returns:
        A probability for every task of ``sizes``, in the order of ``sizes``; they sum to 1.

    Raises:
        ConfigError: (a ``ValueError``) if the scheme is unknown, ``sizes`` is empty or holds
            a size that is not a positive integer, the epochs do not satisfy
            ``1 <= epoch <= epochs``, the temperature is not ``> 0``, or the scheme is
            ``"sst-only"`` and there is no task ``"sst"``.
    """
    name = _check_scheme(scheme)
    checked = _check_sizes(sizes)
    e, n = _check_epochs(epoch, epochs)
    if name in _DRAWN:
        return _draw_probabilities(name, checked, e, n, _check_temperature(temperature))
    schedule = _deterministic_schedule(name, checked)
    counts = Counter(schedule)
    return {task: counts[task] / len(schedule) for task in checked}


def epoch_schedule(
    scheme: str,
    sizes: Mapping[str, int],
    rng: np.random.Generator,
    epoch: int = 1,
    epochs: int = 1,
    temperature: float = 1.0,
) -> list[str]:
    """Return the ordered task names of one epoch, one entry per training step.

    Args:
        scheme: One of :data:`SCHEMES`.
        sizes: Each task's number of batches per epoch, in task order (the order the
            round-robin and balanced schemes visit the tasks in).
        rng: The generator the random schemes draw from; the deterministic schemes
            (``"sst-only"``, ``"round-robin"``, ``"balanced"``) leave it untouched.
        epoch: The epoch, 1-based; only ``"annealed"`` depends on it.
        epochs: The number of epochs of the run.
        temperature: The temperature of ``"temperature"`` sampling, ``> 0``.

    Returns:
        The task of each step: ``n_sst`` entries for ``"sst-only"``, ``max(n) * len(sizes)``
        for ``"balanced"``, ``sum(n)`` for the other schemes.

    Raises:
        ConfigError: (a ``ValueError``) if the scheme is unknown, ``sizes`` is empty or holds
            a size that is not a positive integer, the epochs do not satisfy
            ``1 <= epoch <= epochs``, the temperature is not ``> 0``, or the scheme is
            ``"sst-only"`` and there is no task ``"sst"``.
        TypeError: If ``rng`` is not a :class:`numpy.random.Generator`.
    """
    name = _check_scheme(scheme)
    checked = _check_sizes(sizes)
    e, n = _check_epochs(epoch, epochs)
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, but got {rng!r}")
    if name not in _DRAWN:
        return _deterministic_schedule(name, checked)
    probabilities = _draw_probabilities(name, checked, e, n, _check_temperature(temperature))
    tasks = list(probabilities)
    p = np.array([probabilities[task] for task in tasks], dtype=np.float64)
    draws = rng.choice(len(tasks), size=sum(checked.values()), p=p / p.sum())
    return [tasks[int(i)] for i in draws]


def batches_per_task(schedule: Sequence[str]) -> dict[str, int]:
    """Count the steps of each task in a schedule.

    Args:
        schedule: Task names, one per step, e.g. from :func:`epoch_schedule`.

    Returns:
        The number of steps of each task present, in order of first appearance; tasks that
        do not appear are absent, not 0.
    """
    return dict(Counter(schedule))


def steps_of(schedule: list[str]) -> list[list[str]]:
    """Groups a task schedule into optimizer steps: a step ends before a task would repeat."""
    steps: list[list[str]] = []
    for task in schedule:
        if not steps or task in steps[-1]:
            steps.append([])
        steps[-1].append(task)
    return steps
