"""The tokenized data of a run or a whole study, built once and shared with every trial."""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from mtl_tune.exceptions import ConfigError
from mtl_tune.platform.bert import resolve_model_dir
from mtl_tune.platform.config import TrainConfig
from mtl_tune.platform.data import DataConfig, read_splits
from mtl_tune.platform.splits import Splits, tokenize_splits
from mtl_tune.platform.tasks import MAIN_TASKS
from mtl_tune.platform.tokenizer import WordPieceTokenizer

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DataBundle:
    """Tokenized splits per pair encoding, plus the settings they were made with."""

    backbone: str
    max_length: int
    max_examples: int | None
    data_dir: str
    splits: Mapping[str, Splits]  # pair_encoding -> task -> split -> TaskSplit

    def for_config(self, config: TrainConfig) -> Splits:
        """The splits a trial with `config` trains on; refuses a config the bundle cannot serve."""
        wanted = {
            "backbone": str(config.backbone_path),
            "max_length": config.max_length,
            "max_examples": config.max_examples,
        }
        have = {
            "backbone": self.backbone,
            "max_length": self.max_length,
            "max_examples": self.max_examples,
        }
        for key, value in wanted.items():
            if have[key] != value:
                raise ConfigError(
                    f"{key}={value!r} differs from the study's tokenized data ({key}="
                    f"{have[key]!r}); data is tokenized once per study, so fix {key} in the spec"
                )
        if config.pair_encoding not in self.splits:
            raise ConfigError(
                f"pair_encoding={config.pair_encoding!r} was not tokenized for this study "
                f"(have {sorted(self.splits)}); list it in the spec's search space"
            )
        return self.splits[config.pair_encoding]


def build_bundle(
    config: TrainConfig,
    pair_encodings: Sequence[str] = ("siamese",),
    splits: Sequence[str] = ("train", "dev"),
    strict: bool = False,
) -> DataBundle:
    """Reads the data files once and tokenizes them once per pair encoding.

    Raises:
        CheckpointError: The backbone folder does not exist (or is a hub name).
        DataError: A data file is missing, unreadable or has no usable rows.
    """
    resolve_model_dir(config.backbone_path)  # a missing backbone is named before any reading
    examples = read_splits(
        DataConfig(
            data_dir=config.data_dir or None,
            tasks=MAIN_TASKS,
            splits=tuple(splits),
            max_examples=config.max_examples,
            strict=strict,
        )
    )
    tokenizer = WordPieceTokenizer.from_pretrained(config.backbone_path, config.max_length)
    tokenized = {
        enc: tokenize_splits(examples, tokenizer, enc) for enc in sorted(set(pair_encodings))
    }
    return DataBundle(
        backbone=str(config.backbone_path),
        max_length=config.max_length,
        max_examples=config.max_examples,
        data_dir=config.data_dir,
        splits=tokenized,
    )


def cached_bundle(config: TrainConfig) -> DataBundle:
    """One bundle per process and data setting, for trials started without a shared bundle."""
    return _cached(
        config.backbone,
        config.max_length,
        config.max_examples,
        config.data_dir,
        config.pair_encoding,
    )


@functools.lru_cache(maxsize=2)
def _cached(
    backbone: str, max_length: int, max_examples: int | None, data_dir: str, pair_encoding: str
) -> DataBundle:
    logger.info("reading and tokenizing data in this process (no shared bundle was given)")
    config = TrainConfig(
        backbone=backbone,
        max_length=max_length,
        max_examples=max_examples,
        data_dir=data_dir,
        pair_encoding=pair_encoding,
    )
    return build_bundle(config, (pair_encoding,))
