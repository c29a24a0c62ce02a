"""How a configuration's seeds are laid out: `seed_design` in a spec.

"shared" (the default): `seeds = N` runs each configuration on seeds base .. base+N-1, each
seed driving the heads' initialisation, dropout, the task schedule and the batch order together.
"crossed": N x N runs, every initialisation seed (`init_seed`: the heads' initialisation and
dropout) with every data seed (`data_seed`: the task schedule and batch order), so that a
report can split the variance over seeds into the two sources and the rest (a two-way layout,
Dodge et al. 2020). Each crossed run keeps a `seed` of its own, base + i*N + d, which pairs it
with the run of the same (init, data) pair in another row.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mtl_tune.exceptions import SpecError

if TYPE_CHECKING:
    from mtl_tune.studies.spec._spec import StudySpec

SEED_DESIGNS = ("shared", "crossed")
CROSSED_SEARCHES = ("grid", "sequential")  # fixed comparisons: an ablation's rows


def seed_runs(spec: StudySpec) -> list[dict[str, Any]]:
    """The seed keys of each run of one configuration, in order."""
    base = int(spec.fixed.get("seed", 0))
    if spec.seed_design != "crossed":
        return [{"seed": base + k} for k in range(spec.seeds)]
    n = spec.seeds
    return [{"seed": base + i * n + d, "init_seed": base + i, "data_seed": base + d}
            for i in range(n) for d in range(n)]


def check_seed_design(spec: StudySpec) -> None:
    """Raises SpecError: an unknown design, or "crossed" where it does not apply."""
    src = spec.source
    if spec.seed_design not in SEED_DESIGNS:
        raise SpecError(f"`seed_design` must be one of {SEED_DESIGNS} in {src}, but got "
                        f"{spec.seed_design!r}")
    if spec.seed_design != "crossed":
        return
    if spec.search not in CROSSED_SEARCHES:
        raise SpecError(
            f"`seed_design` 'crossed' needs a fixed comparison (search one of "
            f"{CROSSED_SEARCHES}) in {src}, but search is {spec.search!r}: a search judges a "
            "configuration on its seeds, and N x N of them would multiply its cost")
    if spec.seeds < 2:
        raise SpecError(f"`seed_design` 'crossed' needs `seeds` >= 2 in {src} (N x N runs per "
                        f"row), but got {spec.seeds}")
    fixed = sorted({"init_seed", "data_seed"} & set(spec.fixed))
    if fixed:
        raise SpecError(f"`seed_design` 'crossed' sets {fixed[0]} itself in {src}: remove it "
                        "from [fixed]")
