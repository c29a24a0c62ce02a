"""A spec's training configurations, resolved once per command and handed to every part that
needs one (the data, Tune's scheduler, the study's metadata, the dry run)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from mtl_tune.platform.config import TrainConfig
from mtl_tune.platform.presets import resolve_config
from mtl_tune.studies.spec._pbt import check_pbt
from mtl_tune.studies.spec._spec import StudySpec


@dataclass(frozen=True)
class ResolvedStudy:
    """A spec and, for each of its trainables, the preset overridden by the spec's fixed keys
    (the searched keys vary per trial: each trial resolves its own)."""

    spec: StudySpec
    configs: Mapping[str, TrainConfig]

    @property
    def base(self) -> TrainConfig:
        """The first trainable's configuration: the data, the epochs every trial plans."""
        return self.configs[self.spec.trainables[0]]

    def pair_encodings(self) -> tuple[str, ...]:
        """Every pair encoding a trial can use: each trainable's, plus the searched ones."""
        encodings = {c.pair_encoding for c in self.configs.values()}
        if "pair_encoding" in self.spec.space:
            encodings |= set(self.spec.space["pair_encoding"].values)
        for stage in self.spec.stages:
            if stage.key == "pair_encoding":
                encodings |= set(stage.values)
        return tuple(sorted(encodings))


def resolve_study(spec: StudySpec) -> ResolvedStudy:
    fixed = dict(spec.fixed)
    study = ResolvedStudy(spec, {name: resolve_config(name, fixed) for name in spec.trainables})
    if spec.search == "pbt":  # now that the epochs each member plans are known
        check_pbt(spec, spec.pbt, study.base.epochs)
    return study
