"""Wall time of `mtl-tune study status NAME` as a user runs it: a fresh process each time.

The reference is the same command in a process that first imports `scipy.stats`, as every
command did before the metrics imported it lazily (`mtl_tune.platform.metrics.pearson`): the two
alternate run by run (the current code first on even runs), and the summary gives each one's
median wall seconds and the median of the per-pair ratios current / reference (< 1: faster).

Run from the repository root, on a finished study (the demo study is the one quoted):

    .venv/bin/python benchmarks/status_time.py demo --storage ~/.mtl-tune/studies [--runs 9]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

COMMAND = ("import sys; from mtl_tune.cli import main; "
           "sys.argv = ['mtl-tune', *sys.argv[1:]]; main()")
REFERENCE = "import scipy.stats; " + COMMAND  # the eager import of before


def _seconds(code: str, args: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code, *args], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", help="the study's name")
    parser.add_argument("--storage", required=True, help="its storage folder or URI")
    parser.add_argument("--runs", type=int, default=9, help="pairs of runs (default 9)")
    options = parser.parse_args()
    args = ["study", "status", options.name, "--storage", options.storage]
    _seconds(COMMAND, args)  # warm-up: the file cache, the bytecode
    ours, theirs = [], []
    for run in range(options.runs):
        order = [(COMMAND, ours), (REFERENCE, theirs)]
        for code, times in order if run % 2 == 0 else order[::-1]:
            times.append(_seconds(code, args))
    ratios = [a / b for a, b in zip(ours, theirs, strict=True)]
    print(f"study status {options.name}: {statistics.median(ours):.2f} s median over "
          f"{options.runs} runs; with scipy.stats imported first (the reference): "
          f"{statistics.median(theirs):.2f} s; ratio current / reference, median of pairs: "
          f"{statistics.median(ratios):.2f}")


if __name__ == "__main__":
    main()
