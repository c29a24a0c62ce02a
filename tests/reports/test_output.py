from datetime import datetime
from pathlib import Path

import pytest

from mtl_tune.exceptions import ConfigError, MtlTuneError
from mtl_tune.reports import ReportResult, _output
from mtl_tune.reports._html import defang, page


class FrozenClock:
    @staticmethod
    def now() -> datetime:
        return datetime(2026, 1, 2, 3, 4, 5)


def _result(folder: Path) -> ReportResult:
    page = folder / "report.md"
    return ReportResult(folder=folder, tables={}, figures={"f": folder / "figures" / "f.png"},
                        files=[page, folder / "figures" / "f.png"], page=page)


def _write_parts(folder: Path, text: str) -> ReportResult:
    (folder / "figures").mkdir()
    (folder / "figures" / "f.png").write_bytes(b"png")
    (folder / "report.md").write_text(text)
    return _result(folder)


def test_each_report_gets_a_new_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_output, "datetime", FrozenClock)
    with _output.report_folder(tmp_path, "ablation", None, force=False) as staged:
        first = staged.put_in_place(_write_parts(staged.folder, "one"))
    with _output.report_folder(tmp_path, "ablation", None, force=False) as staged:
        second = staged.put_in_place(_write_parts(staged.folder, "two"))
    # a dated folder under <study>/reports, and a numbered one when that name is taken
    assert first.folder == tmp_path / "reports" / "ablation-20260102-030405"
    assert second.folder == tmp_path / "reports" / "ablation-20260102-030405-2"
    # the result's paths are those of the published folder, and nothing is left staged
    assert first.page == first.folder / "report.md" and first.page.read_text() == "one"
    assert first.figures["f"] == first.folder / "figures" / "f.png" and first.figures["f"].exists()
    assert all(p.parent in (first.folder, first.folder / "figures") for p in first.files)
    assert sorted(p.name for p in (tmp_path / "reports").iterdir()) == [
        "ablation-20260102-030405", "ablation-20260102-030405-2"]


def test_explicit_out_is_never_silently_overwritten(tmp_path: Path) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "report.md").write_text("earlier")
    (out / "notes.txt").write_text("my own notes")
    # a non-empty folder is refused without force
    with pytest.raises(MtlTuneError, match="is not empty"):
        with _output.report_folder(tmp_path, "ablation", out, force=False):
            pass
    assert (out / "report.md").read_text() == "earlier"
    # with force the report's files replace theirs, and nothing else in it is removed
    with _output.report_folder(tmp_path, "ablation", out, force=True) as staged:
        # until it is published, the report is written beside the folder, not in it
        assert staged.folder.parent == tmp_path and staged.folder.name.startswith(".mine.")
        _write_parts(staged.folder, "new")
        assert (out / "report.md").read_text() == "earlier"
        staged.put_in_place(_result(staged.folder))
    assert (out / "report.md").read_text() == "new"
    assert (out / "notes.txt").read_text() == "my own notes"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]
    # an empty or new folder needs no force
    with _output.report_folder(tmp_path, "ablation", tmp_path / "new", force=False) as staged:
        assert staged.put_in_place(_write_parts(staged.folder, "x")).folder.is_dir()


def test_a_failed_report_leaves_nothing_and_changes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "report.md").write_text("earlier")
    with pytest.raises(KeyError):
        with _output.report_folder(tmp_path, "ablation", out, force=True) as staged:
            _write_parts(staged.folder, "half")
            raise KeyError("a failure half-way")
    # the earlier report is as it was and no staged half is left
    assert (out / "report.md").read_text() == "earlier" and sorted(out.iterdir()) == [
        out / "report.md"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]
    # a dated folder made for the failed report goes too
    with pytest.raises(KeyboardInterrupt):
        with _output.report_folder(tmp_path, "ablation", None, force=False) as staged:
            raise KeyboardInterrupt
    assert list((tmp_path / "reports").iterdir()) == []


@pytest.mark.process
def test_a_full_disk_is_one_error_and_keeps_the_earlier_report(tmp_path: Path) -> None:
    from tests.helpers import tmpfs

    with tmpfs(tmp_path / "disk", "size=1m") as disk:
        out = disk / "mine"
        out.mkdir()
        (out / "report.md").write_text("earlier")
        with pytest.raises(MtlTuneError) as caught:
            with _output.report_folder(tmp_path, "ablation", out, force=True) as staged:
                _write_parts(staged.folder, "new")
                (staged.folder / "figures" / "big.png").write_bytes(b"x" * 2**21)
        # one message: the device's folder, what it was writing, the space, and what to do
        message = str(caught.value)
        assert message == (
            f"no space left on the device holding {disk} while writing the report {out} "
            "(0.0 MiB free; it had written 1.0 MiB): free some space and run the report again; "
            f"nothing of it was kept; {out} is as it was")
        assert (out / "report.md").read_text() == "earlier"
        assert sorted(p.name for p in disk.iterdir()) == ["mine"]


def test_unknown_format_is_refused() -> None:
    # formats are checked, naming the allowed ones
    with pytest.raises(ConfigError, match=r"among \('md', 'latex', 'csv', 'html'\).*'pdf'"):
        _output.check_formats(("md", "pdf"))


def test_urls_are_defanged_in_the_page() -> None:
    html = page("t", [("spec", "<pre>see https://a.b/c and HTTP://x.y</pre>")])
    # no text on the page can become a link or a fetch
    assert "://" not in html and defang("https://a") == "https[:]//a"


@pytest.mark.parametrize("width", [80, 120])
def test_a_remark_wraps_only_between_words(tmp_path: Path, width: int) -> None:
    from mtl_tune.reports._terminal import report_text

    command = ("mtl-tune train it7-cosrelu-tuned --set lr=3.1e-05 --set sts_head=cosine-relu "
               f"--data-dir {tmp_path}/some/rather/long/data-folder/cs224n --epochs 10")
    remark = f"Best single trial abc_00001 at epoch 3; train it again with: {command}"
    result = _result(tmp_path)
    text = report_text(ReportResult(**{**result.__dict__, "remarks": [remark]}), width)
    words = text.split()
    # every option and path of the command is whole on one line ("--data-" / "dir" once)
    assert all(word in words for word in command.split()), text
    assert " ".join(words).count(command) == 1


def test_force_never_leaves_two_reports_mixed_in_a_folder(tmp_path: Path) -> None:
    out = tmp_path / "r"

    def report(files: dict[str, str], force: bool) -> None:
        with _output.report_folder(tmp_path, "search", out, force=force) as staged:
            for name, text in files.items():
                (staged.folder / name).parent.mkdir(parents=True, exist_ok=True)
                (staged.folder / name).write_text(text)
            staged.put_in_place(_result(staged.folder))

    report({"report.md": "v1", "report.html": "v1", "top.csv": "v1", "figures/f.png": "v1"},
           force=False)
    (out / "notes.txt").write_text("mine")
    report({"report.md": "v2"}, force=True)
    # only the new report's files and the user's own: no html, csv or figure of the old one
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == [
        "notes.txt", "report-files.json", "report.md"]
    assert (out / "report.md").read_text() == "v2" and (out / "notes.txt").read_text() == "mine"


def test_a_seed_group_search_trains_again_the_best_configurations_best_seed() -> None:
    import pandas as pd

    from mtl_tune.reports._search import _best_rerun_notes
    from mtl_tune.studies import StudyInfo

    # group a: seeds 0.60 and 0.40 (mean 0.50); group b: 0.56 and 0.54 (mean 0.55, ranked 1)
    rows = [("a0", "a", 0.60), ("a1", "a", 0.40), ("b0", "b", 0.56), ("b1", "b", 0.54)]
    results = pd.DataFrame([
        {"experiment": "main", "trial_id": t, "trainable": "it1-baseline", "status": "TERMINATED",
         "epoch": 1, "overall": v, "checkpoint": f"/s/{t}/checkpoint_000001",
         "config/seed_group": g, "config/seed": int(t[1])} for t, g, v in rows])
    groups = pd.DataFrame([{"group": "b", "overall": 0.55}, {"group": "a", "overall": 0.50}])
    info = StudyInfo(folder=Path("/s"), name="s", search="optuna", metric="overall", mode="max",
                     trainables=(), data_dir=None, started_at=None, finished_at=None,
                     wall_seconds=None, spec_text=None, experiments={}, notes=())
    notes = _best_rerun_notes(info, results, groups)
    # the command trains the best seed of the configuration ranked first, not the lucky a0
    assert notes[0].startswith("Best seed of the configuration ranked first on its seeds' mean: "
                               "trial b0 (it1-baseline) at epoch 1: dev Overall 0.5600")
    assert notes[1] == ("The best single seed, trial a0 (dev Overall 0.6000), belongs to a "
                        "configuration ranked 2 on its seeds' mean: one lucky seed, not the "
                        "search's answer.")
