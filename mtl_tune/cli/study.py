"""`mtl-tune study launch|resume|confirm|status|list`: studies on Ray Tune, and what they
hold."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from mtl_tune.cli._common import (
    AddressOption,
    DataDirOption,
    SetOption,
    StorageOption,
    VerboseOption,
    make_app,
    parse_sets,
    table,
)
from mtl_tune.cli._study_output import confirm_lines, print_disk, print_outcome
from mtl_tune.exceptions import SpecError

app = make_app("Launch, resume and inspect Optuna-driven studies on Ray Tune.")
NameArgument = Annotated[str, typer.Argument(metavar="NAME", help="The study's name.")]


@app.command("launch")
def launch(
    spec: Annotated[
        str,
        typer.Argument(
            metavar="SPEC",
            help="A built-in spec (demo, paper-ablation, extended-ablation, paper-search, "
            "search, search-mo, search-pbt) or a TOML file."
        ),
    ],
    name: Annotated[str | None, typer.Option(
        metavar="NAME", help="Study name (default: the spec's).")] = None,
    storage: StorageOption = None,
    address: AddressOption = None,
    gpus_per_trial: Annotated[
        float | None, typer.Option(
            metavar="X", help="GPUs per trial (0.25 packs four trials on a GPU).")
    ] = None,
    seeds: Annotated[
        int | None,
        typer.Option(
            metavar="N", help="Seeds per configuration (default: the spec's `seeds`); the first "
                     "is the `seed` key (--set seed=K), the others follow it."),
    ] = None,
    sets: SetOption = None,
    data_dir: DataDirOption = None,
    optuna_storage: Annotated[
        str | None,
        typer.Option(
            metavar="URL|FILE",
            help="Optuna storage URL (sqlite:///, postgresql://) or journal file path "
            "(default: optuna.db in the study folder; required with an object store)."
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the plan and start nothing.")
    ] = False,
    simulate: Annotated[
        bool, typer.Option("--simulate", help="Rehearse the study: its exact plan, with trials "
                           "that do not train (scores from a response surface; see README).")
    ] = False,
    samples: Annotated[
        int | None, typer.Option(metavar="N", help="The spec's `num_samples` in place of its "
                                 "own: configurations to sample, or a grid's repeats.")
    ] = None,
    epoch_seconds: Annotated[
        float | None, typer.Option(metavar="S", help="With --simulate: seconds each simulated "
                                   "epoch takes (default 0).")
    ] = None,
    verbose: VerboseOption = 1,
) -> None:
    """Launch a study: resolve the spec, read the data once, run the trials on Ray Tune.

    Example: mtl-tune study launch demo --set lr=3e-5 --seeds 3
    """
    from mtl_tune.studies import describe, launch_spec, launch_study, storage_root

    if epoch_seconds is not None and not simulate:
        raise SpecError(f"--epoch-seconds {epoch_seconds} sets a simulated epoch's duration (on "
                        "the command line): add --simulate, or leave it out")
    if simulate and dry_run:
        raise SpecError("--simulate runs the plan with simulated trials and --dry-run only "
                        "prints it (on the command line): give one of them")
    plan = launch_spec(spec, parse_sets(sets), data_dir, name, gpus_per_trial, seeds, samples,
                       simulate)
    if dry_run:
        typer.echo(json.dumps(describe(plan.study), indent=2, default=str))
        return
    root = storage_root(storage or plan.spec.storage or None)
    outcome = launch_study(plan.spec, root, plan.text, overrides=plan.overrides,
                           address=address, optuna_storage=_optuna_url(optuna_storage),
                           verbose=verbose, resolved=plan.study, simulate=simulate,
                           epoch_seconds=epoch_seconds or 0.0)
    print_outcome(outcome, root, plan.spec.name)


def _optuna_url(value: str | None) -> str | None:
    from mtl_tune.studies import JOURNAL_PREFIX

    if value is None or "://" in value:
        return value
    # absolute: `resume` and `report` find it from any folder
    return f"{JOURNAL_PREFIX}{Path(value).expanduser().resolve()}"


@app.command("resume")
def resume(
    name: NameArgument,
    storage: StorageOption = None,
    address: AddressOption = None,
    verbose: VerboseOption = 1,
    trust: Annotated[
        bool,
        typer.Option(
            "--trust", help="Resume even if other users can write to the study folder (it holds "
                     "pickles that resuming loads: trust it like code)."),
    ] = False,
) -> None:
    """Resume a study: finished trials kept, unfinished ones continue from their checkpoints.

    Example: mtl-tune study resume demo
    """
    root = _refuse_early(storage, name, trust)
    from mtl_tune.studies import resume_study

    outcome = resume_study(root, name, address=address, verbose=verbose, trust=trust)
    print_outcome(outcome, root, name)


def _refuse_early(storage: str | None, name: str, trust: bool) -> Path:
    """The storage root, once a study's refusals passed before Ray and torch are even imported
    (seconds): no such study, a folder others can write, a live driver (the driver checks
    again under the lock). A study on a store: its driver checks."""
    from mtl_tune.studies import (
        StudyStore,
        check_private,
        existing_study,
        refuse_running,
        storage_root,
    )

    root = storage_root(storage)
    if not StudyStore.at(root).on_store:
        folder = existing_study(root, name)
        if not trust:
            check_private(folder)
        refuse_running(folder, name)
    return root


@app.command("confirm")
def confirm(
    name: NameArgument,
    top: Annotated[int, typer.Option(
        "--top", help="How many of the search's best configurations to re-run.")] = 1,
    seeds: Annotated[int, typer.Option(
        "--seeds", help="Fresh seeds for each (none the study used).")] = 5,
    storage: StorageOption = None,
    address: AddressOption = None,
    verbose: VerboseOption = 1,
    trust: Annotated[bool, typer.Option(
        "--trust", help="Run even if other users can write to the study folder.")] = False,
) -> None:
    """Re-train a finished search's best configurations on fresh seeds, as the study's
    experiment `confirm`: the score each was selected with is biased upwards (it was picked on
    the seeds that report it); `report search` shows how much of it held. Resumable with
    `study resume`.

    Example: mtl-tune study confirm demo --top 1 --seeds 5
    """
    root = _refuse_early(storage, name, trust)
    from mtl_tune.studies import confirm_study

    outcome = confirm_study(root, name, top=top, seeds=seeds, address=address,
                            verbose=verbose, trust=trust)
    print_outcome(outcome, root, name, after=confirm_lines)


@app.command("status")
def status(
    name: NameArgument,
    storage: StorageOption = None,
    best: Annotated[bool, typer.Option(
        "--best", help="Also print the best trial's checkpoint and the `mtl-tune train` "
        "command that trains it again.")] = False,
    as_json: Annotated[bool, typer.Option(
        "--json", help="Print one JSON object instead (schema in the README).")] = False,
) -> None:
    """One row per trial: state, config, epochs done, best dev metrics; the best marked *.

    Example: mtl-tune study status demo --best
    """
    from mtl_tune.studies import (
        INTERRUPTED,
        best_rerun,
        best_trial,
        not_ended,
        resume_command,
        status_view,
        storage_root,
        uri_of,
    )
    from mtl_tune.studies.results import SIMULATED_NOTE

    root = storage_root(storage)
    # opened once: one pull, one read of each file; --best names checkpoints, which on a store
    # only the trials' folders tell
    view = status_view(root, name, trial_files=best)
    info, trials, driver, planned = view.info, view.trials, view.driver, view.info.planned_trials
    if as_json:
        record: dict[str, Any] = {
            "study": name, "storage": uri_of(root),
            "driver": None if driver is None else driver.describe(), "planned_trials": planned,
            "trials": _records(trials)}
        if info.simulated:
            record["simulated"] = True
        if best:  # the best trial, as the text's --best line gives it
            record["best_trial"] = (best_trial(view.results, info.metric, info.mode)
                                    if len(trials) else None)
        typer.echo(json.dumps(record, indent=2))
        return
    if info.simulated:
        typer.echo(SIMULATED_NOTE)
    typer.echo(table(trials.to_dict("records"),
                     first=("mean_score", "sts_corr", "para_acc", "sst_acc", "experiment")))
    if best and len(trials):
        line = best_rerun(view.results, info.metric, info.mode)
        typer.echo(line or f"no trial has reported dev {info.metric} yet")
    left = not_ended(trials, planned)
    if planned is not None:
        finished = int((trials["state"] == "TERMINATED").sum()) if len(trials) else 0
        typer.echo(f"{finished} of {planned} planned trials finished"
                   + (f", {left} not ended" if left else ""))
    if driver is not None:
        typer.echo(f"running: driver {driver.describe()}")
    elif left or (len(trials) and (trials["state"] == INTERRUPTED).any()):
        typer.echo(f"no driver runs this study: it stopped before finishing; continue it with:"
                   f"\n  {resume_command(root, name)}")
    if view.trial_files:
        print_disk(root, name)
    else:  # its size needs a listing of every object it holds: `study list` makes it
        typer.echo(f"stored in {uri_of(info.folder)} (its size: mtl-tune study list "
                   f"--storage {uri_of(root)})")


@app.command("list")
def list_(
    storage: StorageOption = None,
    as_json: Annotated[bool, typer.Option(
        "--json", help="Print one JSON object instead (schema in the README).")] = False,
) -> None:
    """The studies in the storage folder, with trial counts and best metric.

    Example: mtl-tune study list --storage s3://bucket/studies
    """
    from mtl_tune.studies import human_bytes, is_store_uri, list_studies, storage_root, uri_of

    root = storage_root(storage)
    if storage is not None and not is_store_uri(storage) and not root.is_dir():
        raise SpecError(f"the study storage {root} (--storage) does not exist; check the path, "
                        "or leave --storage out for the default one")
    studies = list_studies(root)
    if as_json:
        typer.echo(json.dumps({"storage": uri_of(root), "studies": _records(studies)},
                              indent=2))
        return
    typer.echo(f"studies in {uri_of(root)}")
    rows = []
    copies = len(studies) and studies["launched_as"].notna().any()
    for row in studies.to_dict("records"):
        row.pop("folder")
        if not copies:  # the column only says something when a study was copied
            row.pop("launched_as")
        row[f"best {row.pop('metric')}"] = row.pop("best")
        row["disk"] = human_bytes(row.pop("disk_bytes"))
        rows.append(row)
    typer.echo(table(rows))


def _records(frame: Any) -> list[dict[str, Any]]:
    """A frame's rows as JSON values: missing values null, numbers as numbers."""
    return json.loads(frame.to_json(orient="records")) if len(frame) else []
