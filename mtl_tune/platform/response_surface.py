"""The scores a simulated trial reports (`study launch --simulate`): a smooth, made-up response
surface of its configuration, deterministic in configuration, seed and epoch.

It is a rehearsal's stand-in, not a model of BERT: it gives a study's scheduler and searcher
something shaped like real training to act on. Its rules (the README's "Simulated studies"):

- **Quality** `q` in about [0, 1]: a bell in log10(lr) around 2e-4 (the bundled MiniLM's
  dev-screen optimum; width 0.9 decades), less up to 0.05 for dropout away from 0.2, 0.03 for
  `layer_lr_decay` away from 0.9 and 0.02 for `warmup_ratio` away from 0.1, plus a fixed,
  arbitrary shift in [-0.015, 0.015] per value of each categorical key (heads, pooling, pair
  encoding, sampling, combination, schedule).
- **Each task** rises from a floor (SST 0.22, PD 0.55, STS r 0.10) toward `base + gain * q`
  (SST 0.25 + 0.27 q, PD 0.60 + 0.25 q, STS 0.45 + 0.43 q) as `1 - exp(-epoch / 1.5)`, and
  loses 0.004 SST per epoch after the sixth (overfitting).
- **Noise**: a seed shifts each task for the whole run by a normal draw of sd 0.02 SST (the
  spread measured between real seeds), 0.008 PD and 0.01 STS; each epoch adds sd 0.005. Draws
  come from a SHA-256 of the configuration (without its seed), the seed and the epoch, so a
  configuration scores the same in every process and on every resume. A run that sets
  `init_seed` or `data_seed` (crossed seeds) draws its whole-run shift as two halves of the
  variance, one from its initialisation seed and one from its data seed (each defaulting to
  `seed`), so that a rehearsal's variance table splits as a real study's can.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from collections.abc import Mapping
from typing import Any

from mtl_tune.platform.metrics import summary

CATEGORICAL = ("sts_head", "pooling", "pair_encoding", "sampling", "combine", "lr_schedule",
               "head_hidden", "pair_dropout")
FLOOR = {"sst_acc": 0.22, "para_acc": 0.55, "sts_corr": 0.10}
BASE = {"sst_acc": 0.25, "para_acc": 0.60, "sts_corr": 0.45}
GAIN = {"sst_acc": 0.27, "para_acc": 0.25, "sts_corr": 0.43}
SEED_SD = {"sst_acc": 0.02, "para_acc": 0.008, "sts_corr": 0.01}
EPOCH_SD = 0.005
SPLIT_SD = math.sqrt(0.5)  # each seed source's share of a split seed shift's sd
BEST_LR, LR_WIDTH = 2e-4, 0.9  # decades
# keys that change how a run is done, not what it learns: left out of the draws
NOT_LEARNED = ("seed", "data_dir", "epochs", "device", "threads", "compile", "checkpoint_dtype",
               "eval_batch_size", "patience", "min_delta")


def _draws(*parts: Any) -> random.Random:
    text = json.dumps(parts, sort_keys=True, default=str)
    return random.Random(int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big"))


def _bump(value: float, best: float, width: float) -> float:
    """1 at `best`, falling to 0 `width` away from it."""
    return max(0.0, 1.0 - ((value - best) / width) ** 2)


def quality(config: Mapping[str, Any]) -> float:
    """How good a configuration is on this surface (about 0 to 1)."""
    lr = float(config.get("lr", 1e-5))
    q = math.exp(-((math.log10(lr / BEST_LR) / LR_WIDTH) ** 2))
    q -= 0.05 * (1.0 - _bump(float(config.get("dropout", 0.1)), 0.2, 0.4))
    q -= 0.03 * (1.0 - _bump(float(config.get("layer_lr_decay", 1.0)), 0.9, 0.2))
    q -= 0.02 * (1.0 - _bump(float(config.get("warmup_ratio", 0.0)), 0.1, 0.2))
    for key in CATEGORICAL:
        if key in config:
            q += (_draws("shift", key, config[key]).random() - 0.5) * 0.03
    return q


def simulated_scores(config: Mapping[str, Any], epoch: int) -> dict[str, float]:
    """The five dev scores (`METRIC_KEYS`) a trial of `config` (its `seed` included) reports
    after `epoch` (1-based)."""
    seed = config.get("seed", 0)
    setting = {k: v for k, v in config.items() if k not in NOT_LEARNED}
    q = quality(setting)
    seed_draws, epoch_draws = _draws(setting, seed), _draws(setting, seed, epoch)
    shift = _seed_shift(setting, seed, seed_draws)
    rise = 1.0 - math.exp(-epoch / 1.5)
    scores = {}
    for task, floor in FLOOR.items():
        value = floor + (BASE[task] + GAIN[task] * q - floor) * rise
        if task == "sst_acc":
            value -= 0.004 * max(0, epoch - 6)
        value += shift[task] + epoch_draws.gauss(0.0, EPOCH_SD)
        scores[task] = min(max(value, 0.0 if task != "sts_corr" else -1.0), 1.0)
    return summary(scores["sst_acc"], scores["para_acc"], scores["sts_corr"])


def _seed_shift(setting: Mapping[str, Any], seed: Any,
                seed_draws: random.Random) -> dict[str, float]:
    """Each task's whole-run shift: one draw from the seed, or, for a run that sets
    `init_seed` or `data_seed`, a draw from each (the same total sd)."""
    init, data = setting.get("init_seed"), setting.get("data_seed")
    if init is None and data is None:  # the draws every earlier study made: unchanged
        return {task: seed_draws.gauss(0.0, SEED_SD[task]) for task in FLOOR}
    shared = {k: v for k, v in setting.items() if k not in ("init_seed", "data_seed")}
    by_init = _draws(shared, "init", seed if init is None else init)
    by_data = _draws(shared, "data", seed if data is None else data)
    return {task: SPLIT_SD * (by_init.gauss(0.0, SEED_SD[task])
                              + by_data.gauss(0.0, SEED_SD[task])) for task in FLOOR}
