"""study.json: one dataclass, one reader, one writer; defaults in one place; unknown keys kept."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from mtl_tune.exceptions import MtlTuneError
from mtl_tune.studies.store import StudyMeta, read_meta, write_meta


def test_a_written_study_json_reads_back_equal(tmp_path: Path) -> None:
    meta = StudyMeta(name="s", search="optuna-mo", metric="mean_score", mode="max",
                     objectives={"sst_acc": "max", "sts_corr": "max"},
                     trainables=("it1-baseline",), overrides={"lr": "3e-5"},
                     resources={"cpu": 1.0, "gpu": 0.5}, seeds=3, optuna_storage="sqlite:///x",
                     data_dir="/data", started_at=1.5, experiments=("main",))
    write_meta(tmp_path, meta)
    assert read_meta(tmp_path) == meta
    written = json.loads((tmp_path / "study.json").read_text())
    # what is not known yet is not written: no finished_at while a study runs
    assert "finished_at" not in written and written["trainables"] == ["it1-baseline"]


def test_missing_keys_take_the_defaults_and_the_folder_names_the_study(tmp_path: Path) -> None:
    folder = tmp_path / "old-study"
    folder.mkdir()
    (folder / "study.json").write_text("{}")
    meta = read_meta(folder)
    assert (meta.name, meta.search, meta.metric, meta.mode) == ("old-study", "grid", "overall",
                                                                 "max")
    assert meta.wall_seconds is None and meta.experiments == () and meta.seeds is None
    # a study from before rehearsals is a real one, of its spec's num_samples
    assert not meta.simulated and meta.num_samples is None and meta.epoch_seconds == 0.0


def test_keys_this_version_does_not_know_survive_a_rewrite(tmp_path: Path) -> None:
    (tmp_path / "study.json").write_text(json.dumps({"name": "s", "note": "by hand"}))
    write_meta(tmp_path, replace(read_meta(tmp_path), wall_seconds=3.0))
    assert json.loads((tmp_path / "study.json").read_text())["note"] == "by hand"
    assert read_meta(tmp_path).wall_seconds == 3.0


@pytest.mark.parametrize(("raw", "message"), [
    ({"seeds": "2"}, r"`seeds` must be int, but got '2'"),
    ({"seeds": True}, r"`seeds` must be int, but got True"),
    ({"simulated": "yes"}, r"`simulated` must be bool, but got 'yes'"),
    ({"epoch_seconds": True}, r"`epoch_seconds` must be int or float, but got True"),
    ({"num_samples": 2.5}, r"`num_samples` must be int, but got 2.5"),
    ({"search": "random"}, r"search must be one of .*but got 'random'"),
    ([1, 2], r"must hold a JSON object, but holds list"),
])
def test_a_bad_study_json_is_refused_naming_file_and_key(
    tmp_path: Path, raw: object, message: str
) -> None:
    (tmp_path / "study.json").write_text(json.dumps(raw))
    with pytest.raises(MtlTuneError, match=message) as caught:
        read_meta(tmp_path)
    assert str(tmp_path / "study.json") in str(caught.value)
