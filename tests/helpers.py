"""Test helpers: tiny checkpoints and data folders; a recorder of the host's waits on a GPU."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import traceback
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, NoReturn

import torch
import torch.utils._pytree as pytree
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

from tests.conftest import TINY_BERT, minilm_path


def save_tiny_bert(folder: Path, seed: int = 0, **overrides: int) -> Path:
    """Saves a random BERT (HF names, model.safetensors) plus MiniLM's tokenizer files."""
    from safetensors.torch import save_file

    from mtl_tune.platform.bert import BertConfig, BertModel

    config = {**TINY_BERT, **overrides}
    torch.manual_seed(seed)
    model = BertModel(BertConfig(**config))
    for p in model.parameters():  # non-trivial biases and LayerNorm weights, for parity tests
        torch.nn.init.normal_(p, std=0.05)
    (folder / "config.json").write_text(
        json.dumps({**config, "model_type": "bert", "hidden_act": "gelu"})
    )
    save_file(
        {k: v.contiguous() for k, v in model.state_dict().items()}, folder / "model.safetensors"
    )
    for name in ("tokenizer.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json"):
        if (minilm_path() / name).is_file():
            shutil.copy(minilm_path() / name, folder / name)
    return folder


def tiny_trial(bert: Path, data: Path, **extra: object) -> dict:
    """Config keys of a fast trial: the tiny random BERT, the small data folder, short batches."""
    return {"backbone": str(bert), "data_dir": str(data), "epochs": 1, "batch_size": 8,
            "max_length": 32, "eval_batch_size": 64, **extra}


def write_subset(source: Path, dest: Path, rows: int) -> Path:
    """Copies the header and first `rows` rows of each CSV file in `source` into `dest`."""
    dest.mkdir(parents=True, exist_ok=True)
    for path in sorted(source.glob("*.csv")):
        with path.open(encoding="utf-8") as handle:
            lines = list(itertools.islice(handle, rows + 1))  # all of a shorter file
        (dest / path.name).write_text("".join(lines), encoding="utf-8")
    return dest


SPLITS = ("train", "dev", "test")


def _words(seed: int) -> list[str]:
    """Whole words of the bundled tokenizer's vocabulary (no `##` pieces, no [special])."""
    vocab = (minilm_path() / "vocab.txt").read_text(encoding="utf-8").split()
    return [w for w in vocab[2000:] if w.isalpha() and w.isascii() and len(w) > 2]


def write_tiny_data(dest: Path, rows: int = 48, seed: int = 0) -> Path:
    """Writes a labeled data folder in the course's format from random words, no real file read.

    Every task of the course (sst, cfimdb, quora, sts) gets train, dev and test files of `rows`
    rows each: tab-separated, a leading unnamed index column, then `id` (25 hex digits), the text
    column(s) and the label, as `../shared/data/cs224n` has them. Labels cycle through the task's
    classes (so every class is present in any 5 rows): 0..4 for SST, 0/1 for CFIMDB, 0.0/1.0
    for Quora, 0.0..5.0 in steps of 0.2 for STS. SST and CFIMDB sentences start with a space,
    as the course's PTB-tokenised ones do; a pair's second sentence shares words with its first.
    """
    import random

    from mtl_tune.platform.tasks import TASKS

    rng = random.Random(seed)
    words = _words(seed)
    dest.mkdir(parents=True, exist_ok=True)

    def sentence(low: int, high: int) -> str:
        return " ".join(rng.choices(words, k=rng.randint(low, high))).capitalize() + " ."

    for task, spec in TASKS.items():
        for split in SPLITS:
            lines = ["\t".join(["", "id", *spec.text_columns, spec.label_column])]
            for number in range(rows):
                if spec.pair:
                    first = sentence(4, 14)
                    kept = first.split()[: rng.randint(1, 6)]
                    texts = [first, " ".join(kept + [sentence(2, 8)])]
                else:
                    texts = [" " + sentence(5, 24 if task == "sst" else 40)]
                if spec.num_classes:  # the course writes Quora's labels as floats
                    label = number % spec.num_classes
                    text = f"{float(label)}" if task == "para" else str(label)
                else:
                    text = f"{(number * 7 % 26) / 5:.1f}"
                ident = f"{rng.getrandbits(100):025x}"
                lines.append("\t".join([str(number), ident, *texts, text]))
            (dest / f"{spec.prefix}-{split}.csv").write_text("\n".join(lines) + "\n",
                                                             encoding="utf-8")
    return dest


def write_tiny_public_files(dest: Path, rows: int = 8, seed: int = 0) -> Path:
    """Writes the course's public files in miniature: what `data fetch` downloads, from random
    words (see `write_tiny_data`), no real file read.

    The names are those `mtl_tune.datasets.PINNED` pins a hash for (the public mirror lacks the
    two unpinned Quora files, and so does this folder): train and dev files labeled, the
    `-test-student` files without the label column.
    """
    import tempfile

    from mtl_tune.datasets import PINNED
    from mtl_tune.platform.tasks import TASKS

    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest) as scratch:
        labeled = write_tiny_data(Path(scratch), rows=rows, seed=seed)
        for name, pinned in PINNED.items():
            if pinned is None:
                continue
            if not name.endswith("-test-student.csv"):
                (dest / name).write_bytes((labeled / name).read_bytes())
                continue
            prefix = name.removesuffix("-test-student.csv")
            spec = next(s for s in TASKS.values() if s.prefix == prefix)
            lines = (labeled / f"{prefix}-test.csv").read_text(encoding="utf-8").splitlines()
            unlabeled = ["\t".join(["", "id", *spec.text_columns])]
            unlabeled += ["\t".join(line.split("\t")[:-1]) for line in lines[1:]]
            (dest / name).write_text("\n".join(unlabeled) + "\n", encoding="utf-8")
    return dest


def _caller() -> str:
    """`file:line` of the innermost mtl_tune frame of the current stack."""
    frame = next(
        (f for f in reversed(traceback.extract_stack()) if "/mtl_tune/" in f.filename), None
    )
    return f"{Path(frame.filename).name}:{frame.lineno}" if frame else "?"


class HostTraffic:
    """Records the GPU-waiting traffic of code run on the CPU: host reads of model values and
    blocking uploads of host data.

    On a GPU, reading a value computed on the card (`.item()`, `float(t)`, `if t:`, `.tolist()`,
    `.cpu()`, `.numpy()`, or an op whose output size depends on the values, like `nonzero`)
    makes the host wait for the card, and so does a copy of host data to the card without
    `non_blocking=True` (`torch.tensor(data, device=...)`, `t.to(device)`). On a CPU nothing
    waits, so a CPU test sees them here instead.

    A model value is one computed from `sources` (e.g. the parameters): every op with such an
    input makes its outputs model values (views and in-place results included, so a buffer
    written from a gradient is one too), followed by storage. Host-made tensors (batches, an
    optimizer's step counters) are not. Followed tensors are kept alive while recording, so a
    freed storage's address is never mistaken for another's.

    Attributes:
        reads: One `op at file:line` (the innermost mtl_tune frame) per read of a model value.
        uploads: One `op at file:line` per blocking copy of host data to a device.
    """

    READ_METHODS = {
        torch.Tensor.item, torch.Tensor.tolist, torch.Tensor.numpy, torch.Tensor.cpu,
        torch.Tensor.__bool__, torch.Tensor.__float__, torch.Tensor.__int__,
        torch.Tensor.__index__, torch.Tensor.__array__,
    }
    DATA_DEPENDENT = {  # ops whose result (or its size) the host must learn
        torch.ops.aten._local_scalar_dense.default,
        torch.ops.aten.is_nonzero.default,
        torch.ops.aten.equal.default,
        torch.ops.aten.nonzero.default,
        torch.ops.aten.masked_select.default,
    }
    UPLOADS = {torch.tensor, torch.as_tensor}

    def __init__(self, sources: Iterable[torch.Tensor]) -> None:
        self.reads: list[str] = []
        self.uploads: list[str] = []
        self._followed: set[int] = set()
        self._kept: list[torch.Tensor] = []
        self._reading = False  # a read seen by its method: its aten op is the same read
        for t in sources:
            self._follow(t)
        self._modes = (_Following(self), _Calls(self))

    def __enter__(self) -> HostTraffic:
        for mode in self._modes:
            mode.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        for mode in reversed(self._modes):
            mode.__exit__(*exc)

    def _follow(self, t: torch.Tensor) -> None:
        if t.layout == torch.strided and t.untyped_storage().data_ptr():
            self._followed.add(t.untyped_storage().data_ptr())
            self._kept.append(t)

    def _is_followed(self, t: torch.Tensor) -> bool:
        return t.layout == torch.strided and t.untyped_storage().data_ptr() in self._followed


class _Mode:
    """A mode that hands what it sees to its `HostTraffic`."""

    def __init__(self, traffic: HostTraffic) -> None:
        super().__init__()
        self.traffic = traffic


class _Following(_Mode, TorchDispatchMode):
    """Marks the outputs of ops on model values; records data-dependent ops on them."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        kwargs = kwargs or {}
        traffic = self.traffic
        leaves = pytree.tree_leaves((args, kwargs))
        followed = any(isinstance(x, torch.Tensor) and traffic._is_followed(x) for x in leaves)
        if followed and func in HostTraffic.DATA_DEPENDENT and not traffic._reading:
            traffic.reads.append(f"{func} at {_caller()}")
        out = func(*args, **kwargs)
        if followed:
            for x in pytree.tree_leaves(out):
                if isinstance(x, torch.Tensor):
                    traffic._follow(x)
        return out


class _Calls(_Mode, TorchFunctionMode):
    """Records reads of model values by tensor methods, and uploads of host data."""

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        kwargs = kwargs or {}
        traffic = self.traffic
        if _uploads(func, args, kwargs, traffic):
            traffic.uploads.append(f"{func.__name__} at {_caller()}")
        read = (
            func in HostTraffic.READ_METHODS
            and isinstance(args[0], torch.Tensor)
            and traffic._is_followed(args[0])
        )
        if not read:
            return func(*args, **kwargs)
        traffic.reads.append(f"Tensor.{func.__name__} at {_caller()}")
        traffic._reading = True
        try:
            return func(*args, **kwargs)
        finally:
            traffic._reading = False


def _uploads(func: Any, args: tuple, kwargs: dict, traffic: HostTraffic) -> bool:
    """Whether the call copies host data to a device and waits: `torch.tensor(data,
    device=...)`, or `host_tensor.to(device)` without `non_blocking=True`."""
    if func in HostTraffic.UPLOADS:
        return kwargs.get("device") is not None
    if func is not torch.Tensor.to or traffic._is_followed(args[0]):
        return False
    to_device = any(isinstance(a, torch.device | str) for a in (*args[1:], kwargs.get("device")))
    return to_device and not kwargs.get("non_blocking", False)


@contextlib.contextmanager
def tmpfs(folder: Path, options: str) -> Iterator[Path]:
    """A tmpfs mounted at `folder` (made) with mount `options` ("size=13m", "ro,size=1m"), for
    full or read-only disks; `unavailable` where this machine cannot mount one."""
    import subprocess

    folder.mkdir(parents=True, exist_ok=True)
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)],
                          capture_output=True, text=True)
    if made.returncode != 0:
        unavailable(f"cannot mount a tmpfs here ({made.stderr.strip()}): the read-only and "
                    "full-disk tests need mount rights (root, or a container with CAP_SYS_ADMIN)")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def in_ci() -> bool:
    """Whether this is a CI run (`CI=true`, which `.ci/run` sets): every test must run."""
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def need_module(name: str, how: str) -> Any:
    """The module `name`, imported; `unavailable` (with `how` to install it) without it."""
    import importlib

    try:
        return importlib.import_module(name)
    except ImportError as err:
        unavailable(f"{name} cannot be imported ({err}): {how}")


def unavailable(reason: str) -> NoReturn:
    """Skips a test whose real part (files, a program) is missing, with the reason; in CI
    (`CI=true`, which `.ci/run` sets) fails it instead: CI must run every such test."""
    import pytest

    if in_ci():
        pytest.fail(f"{reason} (CI runs every test: .ci/run installs or points at it)",
                    pytrace=False)
    pytest.skip(reason)


def tensorboard_scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """Tag -> (step, value) of every scalar in the TensorBoard event files under `folder`,
    read record by record (length, its crc, the Event, its crc) as TensorBoard reads them."""
    from tensorboardX.proto import event_pb2

    scalars: dict[str, list[tuple[int, float]]] = {}
    for path in sorted(folder.rglob("events.out.tfevents.*")):
        data, at = path.read_bytes(), 0
        while at + 12 <= len(data):
            length = int.from_bytes(data[at : at + 8], "little")
            event = event_pb2.Event.FromString(data[at + 12 : at + 12 + length])
            at += 12 + length + 4
            for value in event.summary.value:
                scalars.setdefault(value.tag, []).append((event.step, value.simple_value))
    return scalars
