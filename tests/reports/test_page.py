"""The report's HTML page in a real browser (headless Chromium): it reads at 1400 and 420 px."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from mtl_tune.reports import ReportResult, report_ablation
from tests.helpers import unavailable

MEASURE = """<script>
window.addEventListener("load", () => {
  const tables = [...document.querySelectorAll("table")].map((t) => {
    const box = t.parentElement.getBoundingClientRect();
    return {id: t.id || t.className, width: t.scrollWidth, box: t.parentElement.clientWidth,
            right: box.right};
  });
  const first = document.querySelector("p.headline").getBoundingClientRect().top;
  const body = document.body;
  document.title = JSON.stringify({page: document.documentElement.scrollWidth,
                                   window: window.innerWidth, body: body.scrollWidth,
                                   bodyBox: body.clientWidth, tables, headline: first});
});
</script>"""


def _chromium() -> str:
    return (shutil.which("chromium") or shutil.which("chromium-browser")
            or unavailable("headless Chromium is not installed (Debian: chromium)"))


def _run(chromium: str, width: int, height: int, profile: Path, *args: str) -> str:
    # flags the machine's closed network needs: nothing is fetched, nothing is synced
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--hide-scrollbars", f"--user-data-dir={profile}", f"--window-size={width},{height}",
             "--virtual-time-budget=5000"]
    run = subprocess.run([chromium, *flags, *args], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    return run.stdout


def _measure(chromium: str, page: Path, width: int, tmp: Path) -> dict:
    """The page's and its tables' widths in a window `width` px wide. Headless Chromium's
    windows are at least 500 px wide: a narrower one is the page's root cut to `width` px
    (the page has no media queries, so its layout is that of such a window)."""
    probe = tmp / f"probe-{width}.html"
    narrow = f"<style>html {{ width: {width}px; }}</style>" if width < 500 else ""
    probe.write_text(page.read_text().replace("</head>", narrow + "</head>")
                     .replace("</body>", MEASURE + "</body>"))
    dom = _run(chromium, max(width, 500), 900, tmp / f"profile-{width}", "--dump-dom",
               probe.as_uri())
    title = re.search(r"<title>(.*?)</title>", dom, re.S)
    assert title is not None, dom[:500]
    return json.loads(html.unescape(title.group(1)))


@pytest.fixture(scope="module")
def page(study: Path, tmp_path_factory: pytest.TempPathFactory) -> ReportResult:
    return report_ablation(study, out=tmp_path_factory.mktemp("page") / "report",
                           formats=("html",), n_resamples=50)


def test_the_page_reads_at_1400_and_420_px(page: ReportResult, tmp_path: Path) -> None:
    chromium = _chromium()
    assert page.page is not None
    wide = _measure(chromium, page.page, 1400, tmp_path)
    # at 1400 px: the page is no wider than the window, and every table, the dev table
    # included, fits its column whole: nothing to scroll to
    assert wide["page"] <= wide["window"] == 1400, wide
    assert all(t["width"] <= t["box"] for t in wide["tables"]), wide["tables"]
    assert any(t["id"].startswith("T_dev") for t in wide["tables"])
    # the verdict comes first, on the first screen
    assert wide["headline"] < 200
    narrow = _measure(chromium, page.page, 420, tmp_path)
    # at 420 px nothing runs past the page: wide tables scroll inside their own container,
    # which stays within it
    assert narrow["body"] <= narrow["bodyBox"] <= 420, narrow
    assert all(t["right"] <= 420 for t in narrow["tables"]), narrow["tables"]
    assert any(t["width"] > t["box"] for t in narrow["tables"])  # the dev table scrolls
    # a screenshot of the first 1400 x 2400 px, for a person to look at
    shot = tmp_path / "report-1400.png"
    _run(chromium, 1400, 2400, tmp_path / "profile-shot", f"--screenshot={shot}",
         page.page.as_uri())
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_page_starts_with_the_verdict_then_figures_then_tables(page: ReportResult) -> None:
    assert page.page is not None
    text = page.page.read_text()
    # one summary line per comparison that matters, before anything else
    first = page.headline[0]
    assert re.fullmatch(r"it\S+ is best: dev Overall \d\.\d{3} \[\d\.\d{3}, \d\.\d{3}\] "
                        r"over 2 seeds \(‡ fewer than 3: a wide interval\)\.", first), first
    assert page.headline[1].startswith(("Largest significant step: ", "No step between"))
    order = [text.index(s) for s in (html.escape(first), "<h2>Figures</h2>",
                                     "<h2>Dev table</h2>", "<h2>Study</h2>")]
    assert order == sorted(order)
    # a viewport for phones; each table in a container that scrolls sideways
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in text
    assert text.count('<div class="scroll">') >= 4  # dev, published, study, environment
    # the change under each row's name, not a column of its own; the bold cell explained
    assert ">Change<" not in text and "Bold: the best value of each score column." in text
