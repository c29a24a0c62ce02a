"""Bad inputs a user gives: each gets one `Error:` line (what, where, how to fix) and exit 1,
and leaves nothing half-made behind."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mtl_tune.cli import app
from tests.studies.conftest import write_spec

TOP = 'name = "s"\ntrainables = ["it1-baseline"]\nsearch = "grid"'


def _error(args: list[str]) -> str:
    result = CliRunner().invoke(app, args)
    # a user's mistake: exit 1, one Error line on stderr, no traceback
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith("Error: ") and "Traceback" not in result.output
    return result.stderr


def _dry_run(path: Path, *extra: str) -> str:
    return _error(["study", "launch", str(path), "--dry-run", "--data-dir", str(path.parent),
                   *extra])


@pytest.mark.parametrize(
    ("top", "tables", "fixed", "message"),
    [
        (TOP + "\nsequential = 5", "", {}, r"`sequential` must be a list of \[\[sequential\]\] "
         r"tables in .*spec\.toml, but got 5"),
        (TOP.replace('"grid"', '"optuna"'), "", {},
         r"`search` 'optuna' needs a \[space\] table of the keys to search in .*spec\.toml"),
        (TOP.replace('"grid"', '"optuna"'), "[space]\nbatch_size = { choice = [[32], [32]] }",
         {}, r"space\.batch_size in .*: choice values must be strings, numbers or booleans, "
         r"but got \[\[32\], \[32\]\]"),
        (TOP, "", {"epochs": 1.5}, r"epochs must be of type int, but got 1\.5"),
        (TOP + "\nnum_samples = 1000000000", "", {},
         r"`num_samples` must be 1 to 100000 in .*, but got 1000000000"),
        ('name = "' + "n" * 300 + '"\ntrainables = ["it1-baseline"]', "", {},
         r"a study name must be a plain folder name of 1 to 100 characters.* \(300 characters\)"),
        (TOP.replace('"grid"', '"optuna"'), '[space]\npooling = { choice = ["cls", "mean"] }',
         {"pooling": "mean"}, r"'pooling' is both fixed \(\[fixed\] of .*spec\.toml\) and "
         r"searched \(\[space\] of .*spec\.toml\); keep one"),
        (TOP.replace("it1-baseline", "it7-cosrelu-tunned"), "", {},
         r"unknown trainable 'it7-cosrelu-tunned' in .* \(did you mean 'it7-cosrelu-tuned'\?\)"),
        (TOP + "\nmax_concurent = 2", "", {},
         r"unknown key\(s\) \['max_concurent'\] in .* \(did you mean 'max_concurrent'\?\)"),
        (TOP, "", {"lrr": 1e-5},
         r"unknown training key 'lrr' in \[fixed\] of .* \(did you mean 'lr'\?\)"),
        (TOP, '[scheduler]\ntype = "asha"\ngrace_perod = 1', {},
         r"unknown key\(s\) \['grace_perod'\] in \[scheduler\] of .* \(did you mean "
         r"'grace_period'\?\)"),
    ],
    ids=["sequential-not-a-list", "optuna-without-space", "unhashable-choice", "epochs-fraction",
         "num-samples-huge", "name-too-long", "fixed-and-space", "trainable-typo",
         "top-key-typo", "fixed-key-typo", "scheduler-key-typo"],
)
def test_a_bad_spec_is_refused_with_rule_and_value(
    tmp_path: Path, top: str, tables: str, fixed: dict, message: str
) -> None:
    path = write_spec(tmp_path, top, {"epochs": 1, **fixed}, tables)
    # the dry run refuses what a launch refuses, with the rule and the value
    stderr = _dry_run(path)
    assert re.search(message, stderr), stderr


def test_a_spec_that_is_not_utf8_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "spec.toml"
    path.write_bytes(b'name = "s"\ntrainables = ["it1-baseline"]\n# caf\xe9\n')
    stderr = _dry_run(path)
    # the file, the line and the byte, and how to fix it
    assert f"{path}:3: not UTF-8 text (byte 0xe9 at offset" in stderr
    assert "save the spec as UTF-8" in stderr


@pytest.mark.parametrize("name", ["a\x00b", "a/b", ".."])
def test_a_name_that_cannot_be_a_folder_is_refused_by_the_dry_run_too(
    tmp_path: Path, name: str
) -> None:
    path = write_spec(tmp_path, TOP, {"epochs": 1})
    # --dry-run and launch apply the same rule to --name
    assert "a study name must be a plain folder name" in _dry_run(path, "--name", name)


def test_a_storage_that_is_a_file_is_refused(tmp_path: Path) -> None:
    storage = tmp_path / "not-a-folder"
    storage.write_text("x")
    # the rule, the path and what to give instead
    assert f"the study storage {storage} is a file, not a folder" in _error(
        ["study", "list", "--storage", str(storage)])


def _study(root: Path, meta: str | None = None, spec: str | None = None) -> Path:
    folder = root / "s"
    (folder / "tune" / "main").mkdir(parents=True)
    (folder / "study.json").write_text(meta if meta is not None else json.dumps(
        {"name": "s", "search": "grid", "metric": "overall", "mode": "max",
         "optuna_storage": f"sqlite:///{folder}/optuna.db", "folder": str(folder)}))
    (folder / "spec.toml").write_text(spec if spec is not None else TOP + "\n")
    return folder


@pytest.mark.parametrize("command", ["list", "status", "resume"])
def test_a_damaged_study_json_is_an_error_with_file_and_line(
    tmp_path: Path, command: str
) -> None:
    root = tmp_path / "studies"
    folder = _study(root, '{"name": "s",\n  "search": ')
    args = ["study", command, *([] if command == "list" else ["s"]), "--storage", str(root)]
    # every command that reads it says which file and line, and how to fix it
    assert f"{folder / 'study.json'}:2: not valid JSON" in _error(args)


@pytest.mark.parametrize("command", [["study", "status", "s"], ["report", "search", "s"]])
def test_a_study_json_key_of_the_wrong_type_is_named(tmp_path: Path, command: list[str]) -> None:
    root = tmp_path / "studies"
    folder = _study(root, json.dumps({"name": "s", "search": "grid", "experiments": "main"}))
    # the key, the type it must have, and the value found
    assert (f"{folder / 'study.json'}: `experiments` must be list, but got 'main'"
            in _error([*command, "--storage", str(root)]))


def test_a_damaged_spec_toml_is_an_error_on_resume(tmp_path: Path) -> None:
    root = tmp_path / "studies"
    folder = _study(root, spec='name = "s"\ntrainables = [\n')
    # the study's own spec, by file and line
    assert f"{folder / 'spec.toml'}: not valid TOML" in _error(
        ["study", "resume", "s", "--storage", str(root)])


@pytest.mark.parametrize("kind", ["ablation", "search"])
def test_a_report_of_a_study_whose_trials_all_errored_says_so(tmp_path: Path, kind: str) -> None:
    from mtl_tune.studies.store._trial_log import append_event

    root = tmp_path / "studies"
    folder = _study(root)
    for trial_id in ("t1", "t2"):
        trial = folder / "tune" / "main" / f"trial_{trial_id}"
        trial.mkdir()
        (trial / "error.txt").write_text("ValueError: boom\n")
        append_event(folder, "main", trial_id, "created", {"trainable": "it1-baseline"},
                     str(trial))
        append_event(folder, "main", trial_id, "errored", {"trainable": "it1-baseline"},
                     str(trial), error_file=str(trial / "error.txt"))
    stderr = _error(["report", kind, "s", "--storage", str(root)])
    # what is wrong and where to look, instead of a TypeError from the figures (ablation) or an
    # empty report with exit 0 (search)
    assert "no trial of study 's'" in stderr and "(2 of 2 errored; `mtl-tune study status s` " \
        "lists the trials); nothing to report until one has" in stderr
    # and no empty report folder is left behind
    assert not (folder / "reports").exists()


def test_a_bad_set_is_blamed_on_the_command_line_not_the_spec() -> None:
    from mtl_tune.exceptions import ConfigError
    from mtl_tune.studies.spec import load_spec

    with pytest.raises(ConfigError, match=r"^lr must be of type float, but got 'abc' \(in --set "
                                          r"lr=abc on the command line\)$"):
        load_spec("demo", {"lr": "abc"})
    with pytest.raises(ConfigError, match=r"\['learning_rate'\] \(did you mean 'lr'\?\) in --set "
                                          r"learning_rate=1e-5 on the command line"):
        load_spec("demo", {"learning_rate": "1e-5"})


def test_a_set_of_a_searched_key_is_refused(tmp_path: Path) -> None:
    path = write_spec(tmp_path, TOP.replace('"grid"', '"optuna"'), {"epochs": 1},
                      '[space]\npooling = { choice = ["cls", "mean"] }')
    stderr = _dry_run(path, "--set", "pooling=mean")
    # the --set would be silently dropped by the search: refused, both places named
    assert re.search(r"'pooling' is both fixed \(--set pooling=mean on the command line\) and "
                     r"searched \(\[space\] of .*spec\.toml\)", stderr), stderr


def test_a_spec_saved_with_a_byte_order_mark_is_read(tmp_path: Path) -> None:
    from mtl_tune.studies import launch_spec

    path = write_spec(tmp_path, TOP, {"epochs": 1})
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    # some editors write a UTF-8 BOM: the spec reads as without it
    plan = launch_spec(str(path), {}, data_dir=tmp_path)
    assert plan.spec.name == "s" and plan.spec.trainables == ("it1-baseline",)


def test_a_launch_checks_its_spec_once_and_resolves_each_trainable_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mtl_tune.studies.spec import _resolved, _spec_file

    checked, resolved = [], []
    validate, resolve = _spec_file.validate, _resolved.resolve_config
    monkeypatch.setattr(_spec_file, "validate",
                        lambda spec: (checked.append(spec), validate(spec))[1])
    monkeypatch.setattr(_resolved, "resolve_config",
                        lambda name, fixed: (resolved.append(name), resolve(name, fixed))[1])
    top = TOP.replace('["it1-baseline"]', '["it1-baseline", "it3-cosine-sts"]')
    path = write_spec(tmp_path, top + "\n[scheduler]\ntype = \"asha\"", {"epochs": 4})
    result = CliRunner().invoke(app, ["study", "launch", str(path), "--dry-run", "--data-dir",
                                      str(tmp_path), "--name", "other", "--seeds", "2",
                                      "--gpus-per-trial", "0"])
    assert result.exit_code == 0, result.output
    # one check, of the spec with the command line's name, seeds and GPUs in it ...
    assert [(s.name, s.seeds, s.resources.gpu) for s in checked] == [("other", 2, 0)]
    # ... and one resolution per trainable, whose epochs the plan's ASHA rungs use
    assert resolved == ["it1-baseline", "it3-cosine-sts"]
    assert json.loads(result.stdout)["spec"]["scheduler"]["rungs"] == [1, 2]


@pytest.mark.parametrize(("flag", "message"), [
    (("--seeds", "0"), "--seeds must be >= 1 (on the command line), but got 0"),
    (("--gpus-per-trial", "-1"), "--gpus-per-trial must be >= 0 (on the command line), but "
                                 "got -1"),
])
def test_a_bad_launch_option_is_blamed_on_the_command_line(
    tmp_path: Path, flag: tuple[str, str], message: str
) -> None:
    path = write_spec(tmp_path, TOP, {"epochs": 1})
    assert _dry_run(path, *flag).startswith(f"Error: {message}")


def test_data_dir_in_a_set_is_the_launch_data_folder(tmp_path: Path) -> None:
    from mtl_tune.studies import launch_spec

    path = write_spec(tmp_path, TOP, {"epochs": 1})
    data = tmp_path / "my-data"
    data.mkdir()
    # --set data_dir is honoured, not replaced by $MTL_TUNE_DATA
    plan = launch_spec(str(path), {"data_dir": str(data)})
    assert plan.overrides["data_dir"] == str(data.resolve())
    assert plan.spec.fixed["data_dir"] == str(data.resolve())
    # a folder that does not exist is refused, named with where it came from
    stderr = _error(["study", "launch", str(path), "--dry-run", "--set",
                     f"data_dir={tmp_path / 'nope'}"])
    assert f"data folder {tmp_path / 'nope'} does not exist (from --set data_dir=" in stderr
    # and both ways at once are refused
    stderr = _dry_run(path, "--set", f"data_dir={data}")
    assert f"--data-dir {tmp_path} and --set data_dir={data} both name the data folder" in stderr


def test_an_empty_format_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "studies"
    _study(root)
    stderr = _error(["report", "ablation", "s", "--storage", str(root), "--format", ""])
    # exit 1, naming the option and the formats there are, and no report folder made
    assert stderr.startswith("Error: --format '' on the command line names no format; give one "
                             "or more of md,latex,csv,html")
    assert not (root / "s" / "reports").exists()


def test_a_storage_that_does_not_exist_is_refused(tmp_path: Path) -> None:
    missing = tmp_path / "nonexistent"
    # an explicit --storage that is not there: an error, not an empty list
    assert _error(["study", "list", "--storage", str(missing)]).startswith(
        f"Error: the study storage {missing} (--storage) does not exist; check the path")
    assert not missing.exists()


@pytest.mark.parametrize("command", ["status", "resume"])
def test_a_study_without_its_study_json_names_the_file(tmp_path: Path, command: str) -> None:
    root = tmp_path / "studies"
    folder = _study(root)
    (folder / "study.json").unlink()
    stderr = _error(["study", command, "s", "--storage", str(root)])
    # not "no study 's'": the study is there, without the file that describes it
    assert stderr.startswith(f"Error: study 's' in {root} has lost its {folder / 'study.json'} "
                             "(its other files are still there)"), stderr
    # and the rest of the folder is left as it was
    assert sorted(p.name for p in folder.iterdir()) == ["spec.toml", "tune"]


def _finished_study(root: Path, seeds: int = 2) -> Path:
    """Study `s` with two finished trials (seeds 0 and 1), each with one epoch in its
    result.json; its spec plans `seeds` trials."""
    from mtl_tune.studies.store._trial_log import append_event

    folder = _study(root, spec=f"{TOP}\nseeds = {seeds}\n")
    for seed, trial_id in enumerate(("t1", "t2")):
        trial = folder / "tune" / "main" / f"trial_{trial_id}"
        trial.mkdir()
        (trial / "result.json").write_text(json.dumps(
            {"trial_id": trial_id, "training_iteration": 1, "epoch": 1, "overall": 0.5,
             "time_total_s": 1.0}) + "\n")
        config = {"trainable": "it1-baseline", "seed": seed}
        append_event(folder, "main", trial_id, "created", config, str(trial))
        append_event(folder, "main", trial_id, "finished", config, str(trial))
    return folder


def _states(root: Path) -> dict[str, tuple[str, int | None]]:
    result = CliRunner().invoke(app, ["study", "status", "s", "--storage", str(root), "--json"])
    assert result.exit_code == 0, result.output
    return {t["trial_id"]: (t["state"], t["epochs"]) for t in json.loads(result.stdout)["trials"]}


def test_a_finished_trial_whose_folder_is_gone_is_missing_not_done(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "studies"
    folder = _finished_study(root)
    assert _states(root) == {"t1": ("TERMINATED", 1), "t2": ("TERMINATED", 1)}
    import shutil

    shutil.rmtree(folder / "tune" / "main" / "trial_t2")
    # a trial without results is never "done": it is missing, and the warning names its folder
    assert _states(root) == {"t1": ("TERMINATED", 1), "t2": ("MISSING", 0)}
    assert f"trial t2 is recorded finished, but its folder {folder / 'tune' / 'main'}" in (
        caplog.text)


def test_a_copied_study_is_itself(tmp_path: Path) -> None:
    import shutil

    root = tmp_path / "studies"
    shutil.copytree(_finished_study(root), root / "d1")
    result = CliRunner().invoke(app, ["study", "list", "--storage", str(root), "--json"])
    assert result.exit_code == 0, result.output
    rows = {r["study"]: r for r in json.loads(result.stdout)["studies"]}
    # each row is named by its folder, says where it is and, for the copy, what it was
    assert sorted(rows) == ["d1", "s"]
    assert rows["d1"]["folder"] == str(root / "d1") and rows["d1"]["launched_as"] == "s"
    assert rows["s"]["launched_as"] is None
    text = CliRunner().invoke(app, ["study", "list", "--storage", str(root)]).stdout
    assert [line.split()[0] for line in text.splitlines()[2:]] == ["d1", "s"]
    # the copy's status and reports name the copy
    from mtl_tune.studies import open_study, seeds_launch_command

    info = open_study(root / "d1")
    assert (info.name, info.launched_as) == ("d1", "s")
    assert "--name d1-5-seeds" in seeds_launch_command(root / "d1", 5)


def test_cuda_without_gpus_is_refused_before_the_launch(tmp_path: Path) -> None:
    path = write_spec(tmp_path, TOP, {"epochs": 1})
    # every trial would fail on a machine Ray gives no GPU: refused by the dry run already
    stderr = _dry_run(path, "--set", "device=cuda")
    assert re.search(r"device 'cuda' in .*spec\.toml \(or a --set\) needs GPUs, but the trials "
                     r"get none \(\[resources\] gpu = 0\); pass --gpus-per-trial N", stderr), stderr
    # the fix it names is taken: the GPUs per trial are given before the check
    planned = CliRunner().invoke(app, ["study", "launch", str(path), "--dry-run", "--data-dir",
                                       str(path.parent), "--set", "device=cuda",
                                       "--gpus-per-trial", "1"])
    assert planned.exit_code == 0, planned.output
    assert json.loads(planned.stdout)["resources"]["per_trial"]["gpu"] == 1


def test_list_and_status_json_give_values_not_display_text(tmp_path: Path) -> None:
    root = tmp_path / "studies"
    _finished_study(root)
    listed = CliRunner().invoke(app, ["study", "list", "--storage", str(root), "--json"])
    (row,) = json.loads(listed.stdout)["studies"]
    # the metric by its key, the best value a number, the disk in bytes (an int)
    assert (row["metric"], row["best"]) == ("overall", 0.5)
    assert isinstance(row["disk_bytes"], int) and row["disk_bytes"] > 0
    assert "best overall" not in row and "disk" not in row
    text = CliRunner().invoke(app, ["study", "list", "--storage", str(root)]).stdout
    assert text.splitlines()[1].split()[-3:] == ["best", "Overall", "disk"]
    # --best is honoured with --json: the best trial and the command that trains it again
    status = CliRunner().invoke(app, ["study", "status", "s", "--storage", str(root), "--json",
                                      "--best"])
    best = json.loads(status.stdout)["best_trial"]
    assert (best["trial_id"], best["epoch"], best["metric"], best["value"]) == (
        "t1", 1, "overall", 0.5)
    assert best["command"].startswith("mtl-tune train it1-baseline") and best["checkpoint"] is None
    plain = CliRunner().invoke(app, ["study", "status", "s", "--storage", str(root), "--json"])
    assert "best_trial" not in json.loads(plain.stdout)


def test_launch_over_a_study_without_its_study_json_names_the_file(tmp_path: Path) -> None:
    root = tmp_path / "studies"
    folder = _study(root)
    (folder / "study.json").unlink()
    path = write_spec(tmp_path, TOP, {"epochs": 1})
    stderr = _error(["study", "launch", str(path), "--storage", str(root), "--data-dir",
                     str(tmp_path)])
    # not "already exists: resume it" (which then says there is no such study)
    assert stderr.startswith(f"Error: a folder of study 's' is in {root} without its study.json "
                             "(its other files are still there)"), stderr
    assert sorted(p.name for p in folder.iterdir()) == ["spec.toml", "tune"]


def test_a_study_with_fewer_trials_than_planned_is_unfinished(tmp_path: Path) -> None:
    # two of three planned seeds ran: what a Ctrl-C between two trials leaves
    root = tmp_path / "studies"
    _finished_study(root, seeds=3)
    status = CliRunner().invoke(app, ["study", "status", "s", "--storage", str(root)])
    # status counts the plan, and says the study stopped before finishing and how to go on
    assert "2 of 3 planned trials finished, 1 not ended" in status.stdout
    assert (f"no driver runs this study: it stopped before finishing; continue it with:\n"
            f"  mtl-tune study resume s --storage {root}") in status.stdout
    listed = CliRunner().invoke(app, ["study", "list", "--storage", str(root), "--json"])
    (row,) = json.loads(listed.stdout)["studies"]
    assert (row["trials"], row["planned"], row["finished"]) == (2, 3, 2)
    # a report of it is one of results so far, and names the trial not started
    from mtl_tune.reports._study_notes import summary, unfinished_note
    from mtl_tune.studies import open_study, study_results

    info = open_study(root / "s")
    results = study_results(info)
    assert summary(info, results)["state"] == (
        f"interrupted (results so far; `mtl-tune study resume s --storage {root}` goes on)")
    assert summary(info, results)["trials"].endswith(" (3 planned)")
    assert unfinished_note(info, results) == (
        "1 of the 3 planned trials not started yet: the study was interrupted; "
        f"`mtl-tune study resume s --storage {root}` runs them.")


def test_a_trial_stopped_before_its_first_epoch_is_interrupted_in_status_and_report(
    tmp_path: Path,
) -> None:
    from mtl_tune.reports._study_notes import summary, unfinished_note
    from mtl_tune.studies import open_study, study_results
    from mtl_tune.studies.store._trial_log import append_event

    root = tmp_path / "studies"
    folder = _finished_study(root, seeds=3)
    # the third trial was created, and its driver killed before its first epoch
    trial = folder / "tune" / "main" / "trial_t3"
    trial.mkdir()
    append_event(folder, "main", "t3", "created", {"trainable": "it1-baseline", "seed": 2},
                 str(trial))
    assert _states(root)["t3"] == ("INTERRUPTED", 0)
    info = open_study(root / "s")
    results = study_results(info)
    # the report names it as status does, not "pending"
    assert summary(info, results)["trials"] == "2 done, 1 interrupted"
    assert summary(info, results)["state"].startswith("interrupted (results so far; ")
    assert unfinished_note(info, results) == "Trials not finished yet: main/t3 (interrupted)."
    page = CliRunner().invoke(app, ["report", "search", "s", "--storage", str(root), "--out",
                                    str(tmp_path / "r"), "--format", "md"])
    assert page.exit_code == 0, page.output
    text = (tmp_path / "r" / "report.md").read_text()
    assert "2 done, 1 interrupted" in text and "pending" not in text


def test_a_study_whose_planned_trials_all_ran_is_finished(tmp_path: Path) -> None:
    root = tmp_path / "studies"
    _finished_study(root, seeds=2)
    status = CliRunner().invoke(app, ["study", "status", "s", "--storage", str(root)])
    assert "2 of 2 planned trials finished\n" in status.stdout
    assert "no driver runs this study" not in status.stdout
    from mtl_tune.reports._study_notes import summary, unfinished_note
    from mtl_tune.studies import open_study, study_results

    info = open_study(root / "s")
    results = study_results(info)
    assert summary(info, results)["state"] == "finished"
    assert unfinished_note(info, results) is None


def test_a_study_whose_recorded_set_no_longer_checks_still_shows(tmp_path: Path) -> None:
    root = tmp_path / "studies"
    folder = _finished_study(root)
    meta = json.loads((folder / "study.json").read_text())
    # a --set value this version refuses, recorded at launch by an earlier one
    (folder / "study.json").write_text(json.dumps({**meta, "overrides": {"dropout": "2"}}))
    status = CliRunner().invoke(app, ["study", "status", "s", "--storage", str(root), "--json"])
    # the trials are shown; the plan is unknown, not an error blamed on the command line
    assert status.exit_code == 0, status.output
    record = json.loads(status.stdout)
    assert record["planned_trials"] is None and len(record["trials"]) == 2
    listed = CliRunner().invoke(app, ["study", "list", "--storage", str(root), "--json"])
    assert listed.exit_code == 0 and json.loads(listed.stdout)["studies"][0]["planned"] is None
