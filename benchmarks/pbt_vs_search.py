"""Population-based training against TPE + ASHA at about the same budget of epochs, with the
bundled all-MiniLM-L6-v2 on this machine's CPU.

Both search the same ranges: `lr` log-uniform in [1e-5, 5e-4], `dropout` in [0.1, 0.5],
`weight_decay` in {0, 0.01} (PBT mutates them during a run; TPE draws them once per trial),
over `it7-cosrelu-tuned` with `--rows` rows per task and split and `--epochs` epochs a trial.
PBT runs a population of `--population` single-seed members, judged after every epoch (the
bottom quarter continues from the top quarter's checkpoints with perturbed values). TPE + ASHA
(grace 1 epoch, reduction factor 2) runs twice the population's count of trials, which ASHA
cuts to about the population's epochs. Each method runs once per study seed of `--seeds`
(`optuna_seed`, which also seeds PBT's draws: PBT's first population is TPE's first, random,
trials, so a seed's two runs start from the same configurations). `--methods` runs one of them
alone; each run's line is appended to `--record` (default `<work>/runs.jsonl`), and the table is
printed over every line there, so runs made in separate calls are put together.

Printed: for each run, the best dev `overall` any trial reached (at any epoch), the final best
(PBT: the best member at the last epoch; TPE: the best finished trial's last epoch), the
epochs trained in total and the wall time; then each method's median over its repeats.

    .venv/bin/python benchmarks/pbt_vs_search.py [--population 8] [--epochs 4] [--rows 1000]
        [--seeds 100,101] [--methods pbt,tpe] [--work DIR] [--record FILE]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

SPACE = """
[space]
lr = { loguniform = [1e-5, 5e-4] }
dropout = { uniform = [0.1, 0.5] }
weight_decay = { choice = [0.0, 0.01] }
"""
PBT = """
[pbt]
interval = 1
quantile = 0.25
resample_probability = 0.25

[pbt.mutations]
lr = { loguniform = [1e-5, 5e-4] }
dropout = { uniform = [0.1, 0.5] }
weight_decay = [0.0, 0.01]
"""
ASHA = """
[scheduler]
type = "asha"
grace_period = 1
reduction_factor = 2
"""


def spec_text(method: str, seed: int, args: argparse.Namespace) -> str:
    trials = args.population if method == "pbt" else 2 * args.population
    search = "pbt" if method == "pbt" else "optuna"
    cpu = round(2.0 / args.population, 3)  # the whole population at once on this CPU's 2 cores
    lines = [
        f'name = "{method}-{seed}"', 'trainables = ["it7-cosrelu-tuned"]',
        f'search = "{search}"', f"num_samples = {trials}",
        f"max_concurrent = {args.population}", f"optuna_seed = {seed}", "",
        "[fixed]", f"epochs = {args.epochs}", f"max_examples = {args.rows}", "threads = 1",
        f'data_dir = "{args.data_dir}"', "",
        "[resources]", f"cpu = {cpu}", "gpu = 0",
    ]
    tables = PBT if method == "pbt" else SPACE + ASHA
    return "\n".join(lines) + "\n" + tables


def run(method: str, seed: int, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    from mtl_tune.studies import launch_study
    from mtl_tune.studies.spec import load_spec

    path = work / f"{method}-{seed}.toml"
    path.write_text(spec_text(method, seed, args))
    start = time.perf_counter()
    launch_study(load_spec(str(path)), work / "studies", path.read_text(), verbose=0)
    return measured(method, seed, work / "studies" / f"{method}-{seed}", args.epochs,
                    time.perf_counter() - start)


def measured(method: str, seed: int, folder: Path, epochs: int, wall: float) -> dict[str, Any]:
    """A finished run's line: its best dev overall (any epoch), the best of the trials that
    trained every epoch at their last, the epochs trained and the wall time."""
    from mtl_tune.studies import open_study, study_results

    results = study_results(open_study(folder))
    scored = results.dropna(subset=["overall"])
    last = scored.loc[scored.groupby("trial_id")["epoch"].idxmax()]
    final = last[last["epoch"] == epochs]  # the trials that trained every epoch
    return {"method": "PBT" if method == "pbt" else "TPE + ASHA", "seed": seed,
            "trials": int(scored["trial_id"].nunique()),
            "best_overall": float(scored["overall"].max()),
            "final_best": float(final["overall"].max()) if not final.empty else float("nan"),
            "epochs": int(last["epoch"].sum()), "wall_s": wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--population", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--seeds", default="100,101", help="study seeds, one repeat each")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--methods", default="pbt,tpe", help="pbt, tpe or both")
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--record", type=Path, default=None,
                        help="JSON lines of runs, appended to (default: <work>/runs.jsonl)")
    args = parser.parse_args()
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if not methods or set(methods) - {"pbt", "tpe"}:
        parser.error(f"--methods must name pbt, tpe or both, but got {args.methods!r}")
    from mtl_tune.datasets import data_folder
    from mtl_tune.platform.atomic import replace_text

    args.data_dir = str(data_folder(Path(args.data_dir) if args.data_dir else None))
    work = args.work or Path(tempfile.mkdtemp(prefix="pbt-vs-search-"))
    work.mkdir(parents=True, exist_ok=True)
    record = args.record or work / "runs.jsonl"
    seeds = [int(s) for s in args.seeds.split(",")]
    for seed in seeds:
        for method in methods:
            row = run(method, seed, args, work)
            before = record.read_text() if record.is_file() else ""
            replace_text(record, before + json.dumps(row) + "\n")  # whole, old or new
            print(f"{row['method']:<11} seed {row['seed']}: best dev overall "
                  f"{row['best_overall']:.4f}, final best {row['final_best']:.4f}, "
                  f"{row['epochs']} epochs over {row['trials']} trials, {row['wall_s']:.0f} s",
                  flush=True)
    print_table([json.loads(line) for line in record.read_text().splitlines() if line.strip()],
                args, record)


def print_table(rows: list[dict[str, Any]], args: argparse.Namespace, record: Path) -> None:
    """Each method's medians over the runs in `rows` (the record's lines)."""
    print(f"\n{args.population} members x {args.epochs} epochs, {args.rows} rows per task, "
          f"bundled MiniLM on the CPU; study seeds "
          f"{', '.join(sorted({str(r['seed']) for r in rows}))} ({record})")
    print("| method | best dev overall (median) | final best (median) | epochs (median) | "
          "wall s (median) | runs |")
    print("|---|---:|---:|---:|---:|---|")
    for method in ("PBT", "TPE + ASHA"):
        mine = [r for r in rows if r["method"] == method]
        if not mine:
            continue
        runs = ", ".join(f"{r['best_overall']:.4f}" for r in mine)
        print(f"| {method} | {statistics.median(r['best_overall'] for r in mine):.4f} | "
              f"{statistics.median(r['final_best'] for r in mine):.4f} | "
              f"{statistics.median(r['epochs'] for r in mine):.0f} | "
              f"{statistics.median(r['wall_s'] for r in mine):.0f} | {runs} |")


if __name__ == "__main__":
    main()
