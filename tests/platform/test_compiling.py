"""The `compile` setting: when the encoder is compiled, and that compiling changes no result."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mtl_tune.exceptions import ConfigError
from mtl_tune.platform.batches import make_batch
from mtl_tune.platform.bundle import build_bundle
from mtl_tune.platform.compiling import AUTO_MIN_BATCHES, BUCKET, compile_encoder, use_compile
from mtl_tune.platform.config import TrainConfig
from mtl_tune.platform.model import MultitaskBERT
from mtl_tune.platform.splits import TaskSplit
from mtl_tune.platform.tasks import MAIN_TASKS
from mtl_tune.platform.train import Trainer
from tests.helpers import save_tiny_bert

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


@pytest.mark.parametrize(
    ("setting", "device", "batches", "expected"),
    [
        ("on", CPU, 1, True),
        ("off", CUDA, 10**9, False),
        ("auto", CPU, 10**9, False),  # compiling never paid on CPU in our benchmarks
        ("auto", CUDA, AUTO_MIN_BATCHES - 1, False),  # too short to pay for compiling
        ("auto", CUDA, AUTO_MIN_BATCHES, True),
    ],
)
def test_when_the_encoder_is_compiled(
    setting: str, device: torch.device, batches: int, expected: bool
) -> None:
    # on/off are obeyed; auto compiles only on CUDA runs of at least AUTO_MIN_BATCHES batches
    assert use_compile(setting, device, batches) is expected


def test_bad_compile_setting_is_refused() -> None:
    # the config names the key, the allowed values and the value received
    with pytest.raises(ConfigError, match=r"compile must be one of \('auto', 'on', 'off'\), "
                       r"but got 'yes'"):
        TrainConfig(compile="yes")
    with pytest.raises(ValueError, match=r"compile must be one of .* but got 'always'"):
        use_compile("always", CPU, 1)


@pytest.fixture(scope="module")
def no_dropout_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random BERT without dropout, so eager and compiled training can be compared."""
    folder = tmp_path_factory.mktemp("tiny-bert-no-dropout")
    bert = save_tiny_bert(folder, seed=3)
    config = (bert / "config.json").read_text()
    (bert / "config.json").write_text(
        config.replace('"model_type"', '"hidden_dropout_prob": 0.0, '
                       '"attention_probs_dropout_prob": 0.0, "model_type"')
    )
    return bert


@torch.no_grad()
def dev_outputs(model: MultitaskBERT, split: TaskSplit) -> torch.Tensor:
    """The head's raw outputs (logits or similarity) for every row of a split, in eval mode."""
    model.eval()
    batch = make_batch(split, torch.arange(len(split)), joint=True)
    return model.forward_task(split.task, batch.segments)


@pytest.mark.process
def test_compiled_training_equals_eager(
    no_dropout_bert: Path, tiny_data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch._inductor.codecache as codecache

    # inductor's precompiled headers go to <temp>/torchinductor_<user> whatever
    # TORCHINDUCTOR_CACHE_DIR says: the test's own folder keeps /tmp clean
    monkeypatch.setattr(codecache, "_HEADER_DIR", str(tmp_path / "headers"), raising=False)
    monkeypatch.setattr(codecache, "_HEADER_LOCK_DIR", str(tmp_path / "headers" / "locks"),
                        raising=False)
    config = TrainConfig(
        backbone=str(no_dropout_bert), data_dir=str(tiny_data_dir), epochs=1, batch_size=8,
        max_length=32, eval_batch_size=64, max_examples=24, dropout=0.0, combine="pcgrad",
        pooling="mean", sts_head="cosine-relu", device="cpu",
    )
    splits = build_bundle(config).for_config(config)
    eager = Trainer(config.replace(compile="off"), splits)
    compiled = Trainer(config.replace(compile="on"), splits)
    # "on" compiles even on CPU, and then pads batches to multiples of the bucket
    assert (eager.compiled, compiled.compiled) == (False, True)
    assert (eager.batch_multiple, compiled.batch_multiple) == (1, BUCKET)
    first = eager.run_epoch(1).metrics
    second = compiled.run_epoch(1).metrics
    for key in ("train_loss_sst", "train_loss_para", "train_loss_sts"):
        # the same training, compiled or not (float32 on CPU: to 1e-4)
        assert second[key] == pytest.approx(first[key], rel=1e-4, abs=1e-4), key
    # ... and the same raw dev outputs of every head. Not the dev Pearson: this random model
    # scores every pair within 1e-3 of 5, so its Pearson turns CPU-specific rounding into 3e-3
    with torch.compiler.set_stance("force_eager"):
        eager_out, compiled_out = (
            torch.cat([dev_outputs(t.model, splits[task]["dev"]).flatten() for task in MAIN_TASKS])
            for t in (eager, compiled)
        )
    assert eager_out.std() > 1e-2  # outputs that differ, so the comparison means something
    torch.testing.assert_close(compiled_out, eager_out, rtol=1e-3, atol=1e-4)
    # the compile cost is reported once, in the epoch that compiled
    assert "compile_seconds" not in first and second["compile_seconds"] > 0
    # every weight ends up the same (float32 kernels of other shapes round differently)
    for a, b in zip(eager.model.parameters(), compiled.model.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize(("device", "mode"), [(CUDA, "reduce-overhead"), (CPU, "default")])
def test_compile_mode_by_device(
    monkeypatch: pytest.MonkeyPatch, device: torch.device, mode: str
) -> None:
    # on CUDA the compiled encoder replays CUDA graphs; shapes are dynamic on both (one compile
    # for every bucketed width), checked without a card by catching the call
    encoder = torch.nn.Linear(2, 2)
    calls: list[dict] = []
    monkeypatch.setattr(encoder, "compile", lambda **kwargs: calls.append(kwargs))
    compile_encoder(encoder, device)
    assert calls == [{"mode": mode, "dynamic": True}]
