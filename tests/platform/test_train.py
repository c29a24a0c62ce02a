import math
from pathlib import Path

import pytest
import torch

from mtl_tune.exceptions import CheckpointError, TrainingError
from mtl_tune.platform.bundle import build_bundle
from mtl_tune.platform.checkpoint import restore_trainer, save_checkpoint
from mtl_tune.platform.combinations import FAMO
from mtl_tune.platform.config import TrainConfig
from mtl_tune.platform.presets import resolve_config
from mtl_tune.platform.splits import Splits
from mtl_tune.platform.train import Trainer, steps_of
from tests.helpers import HostTraffic, write_tiny_data

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _config(tiny_bert_dir: Path, tiny_data_dir: Path, name: str = "it6-balanced", **extra):
    values = {
        "backbone": str(tiny_bert_dir),
        "data_dir": str(tiny_data_dir),
        "epochs": 2,
        "batch_size": 8,
        "max_length": 32,
        "eval_batch_size": 64,
        "max_examples": 24,
        **extra,
    }
    return resolve_config(name, values)


def test_steps_group_one_batch_per_task() -> None:
    # a step ends before a task would repeat: round-robin rounds, then single leftover tasks
    assert steps_of(["sst", "para", "sts", "sst", "para", "para"]) == [
        ["sst", "para", "sts"],
        ["sst", "para"],
        ["para"],
    ]


RECIPES = {
    "pcgrad": ("it5-pcgrad", {}),
    "cagrad-linear-warmup-clip": (
        "it6-balanced",
        {"combine": "cagrad", "lr_schedule": "linear", "warmup_ratio": 0.3, "max_grad_norm": 1.0},
    ),
    "uncertainty-cosine": ("it6-balanced", {"combine": "uncertainty", "lr_schedule": "cosine"}),
    "famo-temperature": (
        "it6-balanced", {"combine": "famo", "sampling": "temperature", "famo_lr": 0.5},
    ),
    "smart-hidden-heads": ("it6-balanced", {"smart_weight": 1.0, "head_hidden": 8}),
    "layer-decay-head-lr-weight-decay": (
        "it6-balanced",
        {"layer_lr_decay": 0.8, "head_lr": 1e-3, "weight_decay": 0.01, "lr_schedule": "linear"},
    ),
}


@pytest.mark.parametrize("recipe", list(RECIPES))
def test_restored_run_matches_uninterrupted(
    tiny_bert_dir: Path, tiny_data_dir: Path, tmp_path: Path, recipe: str
) -> None:
    name, extra = RECIPES[recipe]
    config = _config(tiny_bert_dir, tiny_data_dir, name, epochs=3, **extra)
    splits = build_bundle(config).for_config(config)
    straight = Trainer(config, splits)
    straight.run_epoch(1)
    uninterrupted = straight.run_epoch(2).metrics
    # the schedule, the learned task weights and the combination's state are all restored
    keys = [k for k in uninterrupted if k.startswith(("task_weight_", "lr"))]
    learned = {"uncertainty-cosine", "famo-temperature"}  # combinations with task weights
    expected = {f"task_weight_{t}" for t in ("sst", "para", "sts")} if recipe in learned else set()
    assert set(keys) == {"lr", *expected}

    first = Trainer(config, splits)
    result = first.run_epoch(1)
    save_checkpoint(first, tmp_path / "ckpt", result.metrics)
    resumed = Trainer(config, splits)
    restore_trainer(resumed, tmp_path / "ckpt")
    # the restored trainer knows it finished epoch 1
    assert resumed.epochs_done == 1
    after = resumed.run_epoch(2).metrics
    for key in (
        "sst_acc",
        "para_acc",
        "sts_corr",
        "overall",
        "train_loss_sst",
        "train_loss_para",
        "train_loss_sts",
        *keys,
    ):
        # epoch 2 after a restore equals epoch 2 of the uninterrupted run (CPU, same seed)
        assert after[key] == pytest.approx(uninterrupted[key], abs=1e-6), key


def test_checkpoint_of_other_head_layout_refused(
    tiny_bert_dir: Path, tiny_data_dir: Path, tmp_path: Path
) -> None:
    config = _config(tiny_bert_dir, tiny_data_dir, "it6-balanced", epochs=1)
    splits = build_bundle(config).for_config(config)
    trainer = Trainer(config, splits)
    save_checkpoint(trainer, tmp_path / "ckpt", {})
    other = Trainer(config.replace(sts_head="linear"), splits)
    # a checkpoint from another head layout is refused, naming the differing key
    with pytest.raises(
        CheckpointError,
        match=r"another head layout \(sts_head: checkpoint "
        r"'cosine' vs config 'linear'\)",
    ):
        restore_trainer(other, tmp_path / "ckpt")


def test_checkpoint_of_other_backbone_refused(
    tiny_bert_dir: Path, tiny_data_dir: Path, tmp_path: Path
) -> None:
    from tests.helpers import save_tiny_bert

    config = _config(tiny_bert_dir, tiny_data_dir, epochs=1)
    splits = build_bundle(config).for_config(config)
    save_checkpoint(Trainer(config, splits), tmp_path / "ckpt", {})
    (tmp_path / "wider").mkdir()
    wider = save_tiny_bert(tmp_path / "wider", hidden_size=48, intermediate_size=96)
    other = Trainer(config.replace(backbone=str(wider)), splits)
    # a checkpoint from another backbone is refused, naming the differing size
    with pytest.raises(
        CheckpointError,
        match=r"another backbone \(hidden_size: checkpoint 32 "
        r"vs config 48",
    ):
        restore_trainer(other, tmp_path / "ckpt")


def test_non_finite_loss_names_task_epoch_step(tiny_bert_dir: Path, tiny_data_dir: Path) -> None:
    config = _config(tiny_bert_dir, tiny_data_dir, "it6-balanced", epochs=1)
    trainer = Trainer(config, build_bundle(config).for_config(config))
    with torch.no_grad():
        trainer.model.sentiment.classifier.weight.fill_(math.inf)
    # a NaN/inf loss stops training with the task, epoch and step
    with pytest.raises(TrainingError, match=r"non-finite loss .* on task 'sst' at epoch 1, step 1"):
        trainer.run_epoch(1)


STEP_RECIPES = {"sum": ("it6-balanced", {"combine": "sum"}), **RECIPES}


@pytest.mark.parametrize("recipe", list(STEP_RECIPES))
def test_steps_do_not_wait_for_the_device(
    tiny_bert_dir: Path, tiny_data_dir: Path, recipe: str
) -> None:
    # on a GPU a host read of a model value, or a tensor built from host data on the device,
    # makes the host wait for the card; a step must do neither until the loss log is read
    # (every CHECK_EVERY steps, and at the epoch's end). The GPU benchmark counts syncs on a
    # card; this is its CPU twin, for every combination.
    name, extra = STEP_RECIPES[recipe]
    config = _config(tiny_bert_dir, tiny_data_dir, name, **extra)
    trainer = Trainer(config, build_bundle(config, splits=("train",)).for_config(config))
    trainer.model.encoder.embeddings.word_embeddings.sparse = False  # as on a GPU
    trainer.train_epoch(1, max_steps=1)  # the optimizers' state exists, as in any later step
    # every trained weight (the model's, uncertainty's log-variances) and FAMO's task logits
    sources = [p for group in trainer.optimizer.param_groups for p in group["params"]]
    if isinstance(trainer.combination, FAMO):
        sources.append(trainer.combination.logits)
    seen: list[tuple[int, int]] = []
    with HostTraffic(sources) as traffic:
        trainer.train_epoch(
            2, on_step=lambda step, total: seen.append((len(traffic.reads), len(traffic.uploads)))
        )
    steps = len(seen)
    assert steps > 1 and seen[-1][1] == 0, traffic.uploads
    in_steps, at_end = traffic.reads[: seen[-1][0]], traffic.reads[seen[-1][0] :]
    if config.combine == "cagrad":  # SLSQP on the host: one read of the Gram matrix per step
        assert len(in_steps) >= steps and all("cagrad.py" in r for r in in_steps), in_steps
    else:
        assert in_steps == []
    # the epoch's end reads the loss log, a model value: the recorder does see such reads
    assert any("loss_log.py" in r for r in at_end), at_end


def test_sst_only_trains_sst_batches_only(tiny_bert_dir: Path, tiny_data_dir: Path) -> None:
    config = _config(tiny_bert_dir, tiny_data_dir, "it1-baseline", epochs=1)
    trainer = Trainer(config, build_bundle(config).for_config(config))
    before = trainer.model.paraphrase.classifier.weight.clone()
    metrics = trainer.run_epoch(1).metrics
    # the baseline reports only an SST train loss: 24 rows / batch 8 = 3 steps
    assert (metrics["steps"], "train_loss_para" in metrics) == (3.0, False)
    # the paraphrase head is untouched by SST-only training (still evaluated)
    assert torch.equal(before, trainer.model.paraphrase.classifier.weight)
    assert "para_acc" in metrics


def _checkpointed(config: TrainConfig, folder: Path) -> tuple[Trainer, Splits]:
    """A trainer after one epoch, its checkpoint written to `folder`, and its data."""
    splits = build_bundle(config).for_config(config)
    trainer = Trainer(config, splits)
    trainer.run_epoch(1)
    save_checkpoint(trainer, folder, {})
    return trainer, splits


def test_weights_only_checkpoint_predicts_but_does_not_resume(
    tiny_bert_dir: Path, tiny_data_dir: Path, tmp_path: Path
) -> None:
    from mtl_tune.platform.checkpoint import load_model
    from mtl_tune.platform.checkpoint_files import drop_optimizer_state

    config = _config(tiny_bert_dir, tiny_data_dir, epochs=1)
    trainer, splits = _checkpointed(config, tmp_path / "full")
    save_checkpoint(trainer, tmp_path / "lean", {}, optimizer=False)
    # a weights-only checkpoint has no optimizer state ...
    assert not (tmp_path / "lean" / "optimizer.pt").exists()
    # ... rebuilds the same model for prediction ...
    model, _, _ = load_model(tmp_path / "lean")
    for ours, theirs in zip(model.parameters(), trainer.model.parameters(), strict=True):
        assert torch.equal(ours, theirs)
    # ... and refuses to resume, saying what it is for
    with pytest.raises(CheckpointError, match=r"has no optimizer.pt: it holds the weights of a "
                       r"finished run \(for prediction and reports\)"):
        restore_trainer(Trainer(config, splits), tmp_path / "lean")
    size = (tmp_path / "full" / "optimizer.pt").stat().st_size
    # dropping the optimizer state frees its bytes, once
    assert drop_optimizer_state(tmp_path / "full") == size > 0
    assert drop_optimizer_state(tmp_path / "full") == 0


def test_bfloat16_checkpoint_halves_the_weights(
    tiny_bert_dir: Path, tiny_data_dir: Path, tmp_path: Path
) -> None:
    from mtl_tune.platform.checkpoint import load_model

    config = _config(tiny_bert_dir, tiny_data_dir, epochs=1)
    splits = build_bundle(config).for_config(config)
    trainer = Trainer(config, splits)
    save_checkpoint(trainer, tmp_path / "f32", {}, optimizer=False)
    half = Trainer(config.replace(checkpoint_dtype="bfloat16"), splits, model=trainer.model)
    save_checkpoint(half, tmp_path / "bf16", {}, optimizer=False)
    sizes = [(tmp_path / d / "model.safetensors").stat().st_size for d in ("f32", "bf16")]
    # bfloat16 weights take half the bytes (to within the file's header)
    assert sizes[1] == pytest.approx(sizes[0] / 2, rel=0.01)
    model, _, loaded = load_model(tmp_path / "bf16")
    # they load back as float32 weights within bfloat16's precision (8 bits of mantissa)
    assert loaded.checkpoint_dtype == "bfloat16"
    for ours, theirs in zip(model.parameters(), trainer.model.parameters(), strict=True):
        assert ours.dtype == torch.float32
        torch.testing.assert_close(ours, theirs, rtol=2**-8, atol=1e-6)


def test_linear_schedule_warms_up_then_decays_to_zero(
    tiny_bert_dir: Path, tiny_data_dir: Path
) -> None:
    config = _config(tiny_bert_dir, tiny_data_dir, lr=1e-3, lr_schedule="linear",
                     warmup_ratio=0.25, epochs=2)
    trainer = Trainer(config, build_bundle(config).for_config(config))
    # 24 rows per task, batch 8: 3 balanced steps an epoch, 6 in the run, warmup 2 (of 6)
    assert trainer.planned_steps() == 6
    lrs = []
    for _ in range(6):
        lrs.append(trainer.optimizer.param_groups[0]["lr"])
        trainer.optimizer.step()
        trainer.scheduler.step()
    # warmup from lr/3 to lr, then linear decay over the 4 remaining steps (lr * 4/4 ... 1/4)
    assert lrs == pytest.approx([1e-3 / 3, 2e-3 / 3, 1e-3, 0.75e-3, 0.5e-3, 0.25e-3])
    assert trainer.scheduler.get_last_lr()[0] == pytest.approx(0.0)


def test_clipping_bounds_the_step_gradient(tiny_bert_dir: Path, tiny_data_dir: Path) -> None:
    norms = {}
    for clip in (0.0, 0.05):
        config = _config(tiny_bert_dir, tiny_data_dir, epochs=1, max_grad_norm=clip)
        trainer = Trainer(config, build_bundle(config).for_config(config))
        trainer.train_epoch(1, max_steps=1)
        grads = [p.grad for p in trainer.model.parameters() if p.grad is not None]
        norms[clip] = float(torch.linalg.vector_norm(torch.cat([g.flatten() for g in grads])))
    # without clipping the first step's gradient is far above 0.05; clipped, it is 0.05
    assert norms[0.0] > 0.5
    assert norms[0.05] == pytest.approx(0.05, rel=1e-4)


def test_patience_stops_train_run_early(
    tiny_bert_dir: Path, tiny_data_dir: Path, tmp_path: Path
) -> None:
    import json

    from mtl_tune.platform.standalone import train_run

    # no epoch can beat the first by a whole point of `overall`: the second is stale, and with
    # patience 1 the run ends there instead of training all 4 epochs
    config = _config(tiny_bert_dir, tiny_data_dir, epochs=4, patience=1, min_delta=1.0)
    history = train_run(config, tmp_path / "run")
    assert [m["stale_epochs"] for m in history] == [0.0, 1.0]
    summary = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert summary["stopped_early"] is True and len(summary["epochs"]) == 2
    # the stopped run's last checkpoint is final: weights only
    assert not (tmp_path / "run" / "last" / "optimizer.pt").exists()


def test_patience_counts_epochs_without_gain(tiny_bert_dir: Path, tiny_data_dir: Path) -> None:
    config = _config(tiny_bert_dir, tiny_data_dir, epochs=1, patience=2, min_delta=0.01)
    trainer = Trainer(config, build_bundle(config).for_config(config))
    trainer.patience_reference = 0.5
    for overall, stale, stop in ((0.505, 1, False), (0.52, 0, False), (0.52, 1, False),
                                 (0.4, 2, True)):
        # a gain under min_delta does not count; a gain of at least min_delta resets the count
        trainer.evaluate = lambda split="dev", o=overall: _evaluation(o)  # type: ignore[method-assign]
        trainer.train_epoch = lambda epoch, on_step=None: {}  # type: ignore[method-assign]
        trainer.run_epoch(1)
        assert (trainer.stale_epochs, trainer.should_stop) == (stale, stop), overall


def _evaluation(overall: float):
    from mtl_tune.platform.evaluate import Evaluation

    return Evaluation({"overall": overall}, {})


def test_checkpoint_from_before_head_hidden_still_resumes(
    tiny_bert_dir: Path, tiny_data_dir: Path, tmp_path: Path
) -> None:
    import json

    config = _config(tiny_bert_dir, tiny_data_dir, epochs=2)
    trainer, splits = _checkpointed(config, tmp_path / "ckpt")
    # a checkpoint written before head_hidden existed has no such key in its head layout
    state_file = tmp_path / "ckpt" / "trainer_state.json"
    state = json.loads(state_file.read_text())
    del state["heads"]["head_hidden"]
    state_file.write_text(json.dumps(state))
    resumed = Trainer(config, splits)
    restore_trainer(resumed, tmp_path / "ckpt")
    assert resumed.epochs_done == 1
    # while a checkpoint of hidden-layer heads does not fit linear ones
    state["heads"]["head_hidden"] = 64
    state_file.write_text(json.dumps(state))
    with pytest.raises(CheckpointError, match=r"another head layout \(head_hidden: checkpoint 64 "
                       r"vs config 0\)"):
        restore_trainer(Trainer(config, splits), tmp_path / "ckpt")


def test_temperature_sampling_draws_the_configured_schedule(
    tiny_bert_dir: Path, tiny_data_dir: Path
) -> None:
    import numpy as np

    from mtl_tune.platform.sampling import epoch_schedule

    config = _config(tiny_bert_dir, tiny_data_dir, sampling="temperature",
                     sampling_temperature=4.0, max_examples=40)
    trainer = Trainer(config, build_bundle(config).for_config(config))
    # the trainer's steps are the temperature schedule of (seed, epoch), grouped into steps
    drawn = epoch_schedule("temperature", {"sst": 5, "para": 5, "sts": 5},
                           np.random.default_rng([0, 2, 1]), 2, 2, 4.0)
    assert [t for step in trainer.epoch_steps(2) for t in step] == drawn
    assert steps_of(drawn) == trainer.epoch_steps(2)


def test_checkpoint_of_another_combination_is_refused(
    tiny_bert_dir: Path, tiny_data_dir: Path, tmp_path: Path
) -> None:
    config = _config(tiny_bert_dir, tiny_data_dir, epochs=2)
    trainer, splits = _checkpointed(config, tmp_path / "ckpt")
    # uncertainty weighting adds a parameter group (its log-variances) that a sum run never had
    other = Trainer(config.replace(combine="uncertainty"), splits)
    with pytest.raises(CheckpointError, match=r"optimizer.pt cannot be loaded into this run's "
                       r"optimizer .*; resume with the config its trainer_state.json records "
                       r"\(e.g. the same `combine`\), or from another checkpoint"):
        restore_trainer(other, tmp_path / "ckpt")


def test_loss_curve_has_a_point_every_50_steps_and_at_each_epochs_end(
    tiny_bert_dir: Path, tmp_path: Path
) -> None:
    # round-robin steps of batch 1 on 110 rows a task: 110 steps an epoch, counted from the
    # run's start
    data = write_tiny_data(tmp_path, rows=110)
    config = _config(tiny_bert_dir, data, "it4-round-robin", batch_size=1, max_examples=110,
                     max_length=16)
    trainer = Trainer(config, build_bundle(config).for_config(config))
    first, second = (len(trainer.epoch_steps(e)) for e in (1, 2))
    assert (first, second) == (110, 110)
    ends = [trainer.run_epoch(e).loss_curve for e in (1, 2)]
    expected = [*range(50, first, 50), first]
    assert [step for step, _ in ends[0]] == expected
    assert [step for step, _ in ends[1]] == [first + s for s in range(50, second, 50)] + [
        first + second
    ]
    # round-robin: every task has batches in every 50-step window, each loss a finite mean
    for _, losses in ends[0] + ends[1]:
        assert sorted(losses) == ["para", "sst", "sts"]
        assert all(math.isfinite(v) and v > 0 for v in losses.values())
