"""A population-based study in `report search`: the final population's scores, each
generation's decisions, the best member's schedule along its lineage, the family tree, and the
replays of its trials on fresh seeds (`train --replay`) beside the population's own scores."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from mtl_tune.exceptions import ConfigError, MtlTuneError
from mtl_tune.names import score_name
from mtl_tune.platform.metrics import METRIC_KEYS, METRIC_RANGES
from mtl_tune.reports._display import METRIC_LABELS, check_style, display_frame, number
from mtl_tune.reports._population_tree import TreeRun, draw_family_tree
from mtl_tune.reports._seed_groups import GROUP_COLUMN
from mtl_tune.reports._stats import summarize_seeds
from mtl_tune.reports._writer import ReportWriter
from mtl_tune.studies import (
    COUNTED,
    EPOCH,
    StudyInfo,
    load_study_spec,
    population_events,
    read_replays,
    read_result_rows,
    replay_scores,
    trial_lineage,
)


class Population:
    """A population-based study as its report reads it: members (a trial, or a seed group's
    trials), their scores per epoch, the log's generations and each trial's per-epoch config."""

    def __init__(self, info: StudyInfo, results: pd.DataFrame) -> None:
        self.info, self.metric, self.mode = info, info.metric, info.mode
        counted = results[results["status"].isin(COUNTED) & results[EPOCH].notna()]
        grouped = GROUP_COLUMN in counted and counted[GROUP_COLUMN].notna().any()
        key = GROUP_COLUMN if grouped else "trial_id"
        self.members: dict[str, list[str]] = {
            str(m): sorted(set(frame["trial_id"])) for m, frame in counted.groupby(key)}
        self.frame = counted
        self.paths = {str(r["trial_id"]): r["trial_path"] for r in counted.to_dict("records")
                      if isinstance(r.get("trial_path"), str)}
        self.events = population_events(info.folder)
        self.generations = [e for e in self.events if e["event"] == "generation"]
        spec = load_study_spec(info.folder)
        self.keys = tuple(spec.pbt.mutations) if spec.pbt is not None else ()
        self._rows: dict[str, list[dict[str, Any]]] = {}

    def rows_of(self, trial: str) -> list[dict[str, Any]]:
        """The trial's result rows (each with the config it trained that epoch with)."""
        if trial not in self._rows:
            path = self.paths.get(trial)
            self._rows[trial] = read_result_rows(Path(path)) if path else []
        return self._rows[trial]

    def scores(self, member: str) -> dict[int, dict[str, float]]:
        """Epoch -> the mean over the member's trials of each score, at the epochs all reached."""
        frame = self.frame[self.frame["trial_id"].isin(self.members[member])]
        reached = frame.groupby(EPOCH)["trial_id"].nunique()
        whole = reached[reached == len(self.members[member])].index
        means = frame[frame[EPOCH].isin(whole)].groupby(EPOCH)[list(METRIC_KEYS)].mean()
        return {int(e): {k: float(v) for k, v in row.items()} for e, row in means.iterrows()}

    def final(self) -> pd.DataFrame:
        """One row per member at its last epoch, best first: scores, exploits taken, the values
        it ended with."""
        taken = {e["member"]: 0 for g in self.generations for e in g["exploits"]}
        for generation in self.generations:
            for exploit in generation["exploits"]:
                taken[exploit["member"]] += 1
        rows = []
        for member, trials in self.members.items():
            scores = self.scores(member)
            if not scores:
                continue
            last = max(scores)
            config = (self.rows_of(trials[0]) or [{}])[-1].get("config") or {}
            rows.append({"member": member, "trials": len(trials), "epoch": last,
                         **scores[last], "exploits": taken.get(member, 0),
                         **{f"config/{k}": config.get(k) for k in self.keys}})
        table = pd.DataFrame(rows)
        if table.empty:
            return table
        table = table.sort_values(self.metric, ascending=self.mode == "min", kind="stable")
        table.insert(0, "rank", range(1, len(table) + 1))
        return table.reset_index(drop=True)

    def decisions(self) -> pd.DataFrame:
        """One row per exploit (and per generation without one): who continued from whom, at
        which epoch, with which values."""
        rows = []
        for generation in self.generations:
            ranking = generation["ranking"]
            means = generation.get("means", {})
            base = {"epoch": generation["epoch"],
                    "ranking": [(m, means.get(m)) for m in ranking]}
            if not generation["exploits"]:
                rows.append({**base, "member": None, "donor": None, "changes": {}})
            for exploit in generation["exploits"]:
                changes = {k: (exploit["old"].get(k), exploit["new"].get(k)) for k in self.keys
                           if exploit["old"].get(k) != exploit["new"].get(k)}
                rows.append({**base, "member": exploit["member"], "donor": exploit["donor"],
                             "member_mean": means.get(exploit["member"]),
                             "donor_mean": means.get(exploit["donor"]), "changes": changes})
        return pd.DataFrame(rows)

    def best_member(self, final: pd.DataFrame) -> str | None:
        return None if final.empty else str(final.iloc[0]["member"])

    def schedule(self, member: str) -> pd.DataFrame:
        """The member's (its first seed's) lineage: per segment, the epochs, the run that
        trained them and the values it trained with."""
        trial = self.members[member][0]
        epochs = [int(r[EPOCH]) for r in self.rows_of(trial) if r.get(EPOCH) is not None]
        if not epochs:
            return pd.DataFrame()
        segments = trial_lineage(trial, max(epochs), self.events, self.rows_of)
        return pd.DataFrame([{"epochs": f"{s.first}–{s.last}", "trial": s.trial,
                              **{k: s.config.get(k) for k in self.keys}} for s in segments])

    def tree(self, key: str) -> list[TreeRun]:
        """Each trial of the first seed of each member: its per-epoch `key` and score, and
        where it continued from (point, donor trial)."""
        first = {trials[0]: member for member, trials in self.members.items()}
        continued: dict[str, list[tuple[int, str]]] = {}
        for generation in self.generations:
            for exploit in generation["exploits"]:
                member_trial, donor_trial, *_ = exploit["seeds"]["0"]
                continued.setdefault(member_trial, []).append((generation["epoch"],
                                                               donor_trial))
        runs = []
        for trial, member in first.items():
            rows = [r for r in self.rows_of(trial) if r.get(EPOCH) is not None]
            runs.append(TreeRun(
                trial, member, {int(r[EPOCH]): (r.get("config") or {}).get(key) for r in rows},
                {int(r[EPOCH]): r.get(self.metric) for r in rows}, continued.get(trial, [])))
        return runs


def replay_table(population: Population, records: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Per replayed trial: its own score at its last epoch beside its replays' mean over
    seeds, with an interval when there are two or more."""
    replays = replay_scores(records, population.metric)
    if replays.empty:
        return replays
    rows = []
    metric = population.metric
    for trial, frame in replays.groupby("trial_id", sort=True):
        own = population.frame[population.frame["trial_id"] == trial]
        own_last = own.loc[own[EPOCH].idxmax()] if not own.empty else None
        summary = summarize_seeds(frame[metric].astype(float).to_numpy(),
                                  bounds=METRIC_RANGES.get(metric))
        rows.append({"trial": trial, "population_score": None if own_last is None
                     else float(own_last[metric]), "seeds": summary.n,
                     "seed_list": sorted(int(s) for s in frame["seed"]),
                     "mean": summary.mean, "sd": summary.std, "ci_low": summary.ci_low,
                     "ci_high": summary.ci_high, "method": summary.method})
    return pd.DataFrame(rows)


def tree_key(info: StudyInfo, color_by: str | None) -> str | None:
    """The key a population's family tree is coloured by: `color_by`, else lr (else the first
    mutated key); None for a study that is not a population and was given none.

    Raises:
        MtlTuneError: `color_by` given for a study that is not a population.
        ConfigError: `color_by` is not a key the population mutates.
    """
    if info.search != "pbt":
        if color_by is not None:
            raise MtlTuneError(f"study {info.name!r} is not population-based (search = "
                               f"{info.search!r}): it has no family tree to colour; leave out "
                               "--color-by")
        return None
    spec = load_study_spec(info.folder)
    keys = tuple(spec.pbt.mutations) if spec.pbt is not None else ()
    if color_by is None:
        return "lr" if "lr" in keys else (keys or ("lr",))[0]
    if color_by not in keys:
        raise ConfigError(f"`color_by` must be a key the population mutates "
                          f"({', '.join(keys)}), but got {color_by!r}")
    return color_by


def add_population(writer: ReportWriter, info: StudyInfo, results: pd.DataFrame,
                   key: str = "lr") -> list[str]:
    """The population's tables and family tree (coloured by `key`), in `report search` of a PBT
    study; returns the report's notes on it (the command that replays the best member)."""
    population = Population(info, results)
    metric = score_name(info.metric)
    final = population.final()
    writer.table("population", "The final population", final,
                 lambda style: _final_display(final, population.keys, style),
                 [f"Each member at its last epoch (a seed group: its seeds' mean dev {metric}), "
                  "ranked; `Exploits`: how often it continued from a better member's checkpoint; "
                  "the values are those it ended with. Population-based training judges the "
                  "population it ends with, not each member's best epoch."])
    decisions = population.decisions()
    writer.table("decisions", "Decisions, generation by generation", decisions,
                 lambda style: _decision_display(decisions, style),
                 [f"At each interval the members were ranked on dev {metric} (a group on its "
                  "seeds' mean, never one seed); each of the bottom quantile continued from "
                  "the checkpoint of one of the top (seed i from seed i) with the values shown, "
                  "mutated from the donor's. From the study's population.jsonl, written before "
                  "Tune acted on each decision."])
    best = population.best_member(final)
    notes = []
    if best is not None:
        trial = population.members[best][0]
        notes.append(f"To tell the best member's schedule from the population's luck, train it "
                     f"on fresh seeds: mtl-tune train --replay {info.name}:{trial} --seeds 3 "
                     "(then report search again).")
        schedule = population.schedule(best)
        writer.table("schedule", f"The schedule of the best member, {best}", schedule,
                     lambda style: _schedule_display(schedule, style),
                     ["The runs whose epochs the best member's final weights went through "
                      "(its donors' before each exploit, then its own) and the values each "
                      "trained with: the schedule `mtl-tune train --replay` follows."])
    writer.figure("family_tree", draw_family_tree(population.tree(key), key, info.metric),
                  f"Family tree: each member's run over epochs (a seed group: its first seed), "
                  f"coloured by {key}; an arrow at each exploit, from the donor's run to the "
                  "member's, which continues from the donor's checkpoint")
    replays = replay_table(population, read_replays(info.folder))
    if not replays.empty:
        writer.table("replays", "Replays on fresh seeds", replays,
                     lambda style: _replay_display(replays, style),
                     [f"Each replayed trial's dev {metric} at its last epoch in the population, "
                      "beside the mean over its replays (`mtl-tune train --replay`: its "
                      "schedule trained from scratch on seeds the study never used) with a 95% "
                      "interval of the mean (t, below 5 seeds; fewer than 3 seeds: rough). A "
                      "population score above the interval is luck of the population, not the "
                      "schedule's."])
    return notes


def _value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return "–" if value is None else str(value)


def _final_display(table: pd.DataFrame, keys: Sequence[str], style: str) -> pd.DataFrame:
    check_style(style)
    rows = []
    for row in table.to_dict("records"):
        out = {"Rank": str(row["rank"]), "Member": str(row["member"]),
               "Epoch": str(row["epoch"]), "Exploits": str(row["exploits"])}
        out.update({k: _value(row.get(f"config/{k}")) for k in keys})
        out.update({METRIC_LABELS[k]: number(row.get(k)) for k in METRIC_KEYS})
        rows.append(out)
    return display_frame(rows, style)


def _decision_display(table: pd.DataFrame, style: str) -> pd.DataFrame:
    check_style(style)
    rows = []
    for row in table.to_dict("records"):
        changes = "; ".join(f"{k} {_value(old)} → {_value(new)}"
                            for k, (old, new) in row["changes"].items())
        rows.append({
            "Epoch": str(row["epoch"]),
            "Ranking (mean)": ", ".join(f"{m} {number(v)}" for m, v in row["ranking"]),
            "Exploit": "–" if row["member"] is None else
            f"{row['member']} ({number(row.get('member_mean'))}) ← {row['donor']} "
            f"({number(row.get('donor_mean'))})",
            "New values": changes or "–",
        })
    return display_frame(rows, style)


def _schedule_display(table: pd.DataFrame, style: str) -> pd.DataFrame:
    check_style(style)
    return display_frame([{str(k).capitalize() if k in ("epochs", "trial") else str(k):
                           _value(v) for k, v in row.items()}
                          for row in table.to_dict("records")], style)


def _replay_display(table: pd.DataFrame, style: str) -> pd.DataFrame:
    check_style(style)
    rows = []
    for row in table.to_dict("records"):
        interval = ("–" if row["seeds"] < 2 else
                    f"[{number(row['ci_low'])}, {number(row['ci_high'])}]")
        rows.append({"Trial": str(row["trial"]), "In the population":
                     number(row["population_score"]), "Replays": str(row["seeds"]),
                     "Seeds": ", ".join(str(s) for s in row["seed_list"]),
                     "Mean": number(row["mean"]), "95% interval": interval})
    return display_frame(rows, style)
