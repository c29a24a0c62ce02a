"""What `study launch|resume|confirm` print when their driver ends: the trial table, the
summary, the confirm experiment's scores and the next commands."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from mtl_tune.cli._common import table


def print_outcome(outcome: Any, root: Path, name: str,
                   after: Callable[[Path, str], list[str]] | None = None) -> None:
    """The trial table and a summary (then the lines of `after`, once every trial ended);
    exit 1 if trials errored, 130 if interrupted."""
    from mtl_tune.studies import next_commands, resume_command, study_status, uri_of

    typer.echo(table(study_status(root, name).to_dict("records")))
    simulated = "simulated " if outcome.simulated else ""
    typer.echo(
        f"{simulated}study {name}: {outcome.finished} of {outcome.planned} planned trials "
        f"finished, {outcome.errors} errored, {outcome.unfinished} unfinished, in "
        f"{outcome.wall_seconds:.0f} s; folder {uri_of(outcome.folder)}"
    )
    for line in outcome.summary_lines():
        typer.echo(line)
    print_disk(root, name)
    if outcome.unfinished:
        typer.echo(f"interrupted; continue the study with:\n  {resume_command(root, name)}",
                   err=True)
        raise typer.Exit(130)
    if outcome.errors:
        typer.echo(f"{outcome.errors} trial(s) errored; their errors are in:", err=True)
        for path in outcome.error_files:
            typer.echo(f"  {path}", err=True)
        raise typer.Exit(1)
    for line in after(root, name) if after is not None else []:
        typer.echo(line)
    typer.echo("next:")
    for command in next_commands(root, name):
        typer.echo(f"  {command}")


def print_disk(root: Path, name: str) -> None:
    from mtl_tune.studies import disk_usage, human_bytes, study_folder, uri_of

    folder = study_folder(root, name)
    typer.echo(f"disk: {human_bytes(disk_usage(folder))} in {uri_of(folder)}")


def confirm_lines(root: Path, name: str) -> list[str]:
    """Each re-run configuration's selection score against its fresh seeds' mean."""
    from mtl_tune.studies import CONFIRM, ConfirmPlan, confirm_scores, existing_study, load_results
    from mtl_tune.studies.store import read_meta

    folder = existing_study(root, name)
    meta = read_meta(folder)
    plan = ConfirmPlan.from_json(meta.confirm)
    scores = confirm_scores(load_results(folder), plan, meta.metric, meta.mode)
    lines = [f"{CONFIRM}: the best {len(plan.selected)} configuration(s) on fresh seeds "
             f"{', '.join(map(str, plan.seeds))}, dev {meta.metric} at the selected epoch:"]
    for row in scores.to_dict("records"):
        lines.append(
            f"  #{row['rank']} (trials {row['selected_trials']}, epoch {row['epoch']}): "
            f"selected with {row['selected']:.4f}; fresh {row['fresh_mean']:.4f} "
            f"[{row['fresh_low']:.4f}, {row['fresh_high']:.4f}] over {row['fresh_seeds']} "
            f"seed(s); {row['held_back']:+.4f} did not hold")
    return lines
