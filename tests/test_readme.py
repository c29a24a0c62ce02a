"""The README's two commands are the ones CI and users run."""

import re

from tests.conftest import REPO


def _bash_blocks() -> list[str]:
    return re.findall(r"```bash\n(.*?)\n```", (REPO / "README.md").read_text(), re.S)


def test_readme_opens_with_the_two_commands() -> None:
    main_job, tests = _bash_blocks()[:2]
    # the first command sets up, fetches data if needed, runs the demo study and its report
    assert "study launch demo" in main_job and "report ablation demo" in main_job
    # the second sets up and runs lint, types and tests
    assert tests.endswith("pytest -q") and "ruff check" in tests and "mypy" in tests


def test_ci_runs_the_readme_test_command() -> None:
    ci_lines = (REPO / ".ci" / "run").read_text().strip().splitlines()
    # .ci/run runs exactly the README's test command, then the chaos set
    assert ci_lines[-2:] == [_bash_blocks()[1], ".venv/bin/pytest -q -m chaos"]


def test_the_glossary_is_the_one_the_outputs_use() -> None:
    from mtl_tune.names import SCORES, STATES, TASKS

    text = (REPO / "README.md").read_text()
    glossary = text[text.index("### Glossary"):]
    glossary = glossary[: glossary.index("\n### ", 1)]
    rows = [line for line in glossary.splitlines() if line.startswith("| ") and "`" in line]
    expected = [f"| {kind} | {name} | `{key}` | {what} |"
                for kind, table in (("score", SCORES), ("task", TASKS), ("state", STATES))
                for key, (name, what) in table.items()]
    assert rows == expected
