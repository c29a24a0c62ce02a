from datetime import datetime
from pathlib import Path

import pytest

from mtl_tune.exceptions import ConfigError, MtlTuneError
from mtl_tune.reports import _output
from mtl_tune.reports._html import defang, page


class FrozenClock:
    @staticmethod
    def now() -> datetime:
        return datetime(2026, 1, 2, 3, 4, 5)


def test_each_report_gets_a_new_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_output, "datetime", FrozenClock)
    first = _output.prepare_output(tmp_path, "ablation", None, force=False)
    second = _output.prepare_output(tmp_path, "ablation", None, force=False)
    # a dated folder under <study>/reports, and a numbered one when that name is taken
    assert first == tmp_path / "reports" / "ablation-20260102-030405"
    assert second == tmp_path / "reports" / "ablation-20260102-030405-2"


def test_explicit_out_is_never_silently_overwritten(tmp_path: Path) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "report.md").write_text("earlier")
    # a non-empty folder is refused without force
    with pytest.raises(MtlTuneError, match="is not empty"):
        _output.prepare_output(tmp_path, "ablation", out, force=False)
    # with force the folder is written into, and nothing else in it is removed
    assert _output.prepare_output(tmp_path, "ablation", out, force=True) == out
    assert (out / "report.md").read_text() == "earlier"
    # an empty or new folder needs no force
    assert _output.prepare_output(tmp_path, "ablation", tmp_path / "new", force=False).is_dir()


def test_unknown_format_is_refused() -> None:
    # formats are checked, naming the allowed ones
    with pytest.raises(ConfigError, match=r"among \('md', 'latex', 'csv', 'html'\).*'pdf'"):
        _output.check_formats(("md", "pdf"))


def test_urls_are_defanged_in_the_page() -> None:
    html = page("t", [("spec", "<pre>see https://a.b/c and HTTP://x.y</pre>")])
    # no text on the page can become a link or a fetch
    assert "://" not in html and defang("https://a") == "https[:]//a"
