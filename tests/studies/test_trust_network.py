"""The trust check follows links; nothing leaves loopback unasked; an unreachable cluster
address fails fast with an `Error:` line."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mtl_tune.cli import app
from mtl_tune.exceptions import SpecError
from mtl_tune.studies.driver._local_ray import check_reachable
from mtl_tune.studies.store._storage import check_private
from tests.studies.conftest import tiny_fixed, write_spec


def _study(tmp_path: Path) -> Path:
    folder = tmp_path / "studies" / "s"
    (folder / "tune" / "main").mkdir(parents=True)
    (folder / "study.json").write_text("{}")
    for path in (tmp_path, tmp_path / "studies", *folder.rglob("*"), folder):
        path.chmod(0o755 if path.is_dir() else 0o644)
    return folder


def test_a_pickle_linked_out_of_the_study_is_refused(tmp_path: Path) -> None:
    folder = _study(tmp_path)
    outside = tmp_path / "anyone.pkl"
    outside.write_bytes(b"pickle")
    outside.chmod(0o666)
    (folder / "tune" / "main" / "tuner.pkl").symlink_to(outside)
    # a link that leads out of the study folder is refused, with the way out
    with pytest.raises(SpecError, match=r"tuner\.pkl is a link to .*anyone\.pkl, outside the "
                                        r"study folder: .*--trust"):
        check_private(folder)


def test_a_folder_linked_to_a_world_writable_place_is_refused(tmp_path: Path) -> None:
    folder = _study(tmp_path)
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    (folder / "tune" / "other").symlink_to(shared, target_is_directory=True)
    # a linked folder is checked, not skipped
    with pytest.raises(SpecError, match=r"other is a link to .*shared, outside the study"):
        check_private(folder)


def test_a_link_inside_the_study_to_a_world_writable_file_is_refused(tmp_path: Path) -> None:
    folder = _study(tmp_path)
    target = folder / "tune" / "main" / "params.pkl"
    target.write_bytes(b"pickle")
    target.chmod(0o666)
    (folder / "tune" / "main" / "tuner.pkl").symlink_to(target)
    # the link's target is checked like any file of the study
    with pytest.raises(SpecError, match=r"params\.pkl is writable by every user \(mode "
                                        r"-rw-rw-rw-\)"):
        check_private(folder)
    target.chmod(0o644)
    # a private study with a link inside it passes
    check_private(folder)


def test_an_unreachable_cluster_address_fails_fast(
    tmp_path: Path, tiny_bert_dir: Path, tiny_data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ray

    def no_ray(*args: object, **kwargs: object) -> None:
        raise AssertionError("the probe must refuse the address before ray.init")

    # as a user's fresh process: no Ray in it yet (the suite's shared one may run in this one)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", no_ray)
    path = write_spec(tmp_path, 'name = "far"\ntrainables = ["it1-baseline"]',
                      tiny_fixed(tiny_bert_dir, tiny_data_dir))
    result = CliRunner().invoke(app, ["study", "launch", str(path), "--address", "127.0.0.1:1",
                                      "--storage", str(tmp_path / "studies")])
    # one Error line from the probe before ray.init (Ray alone retries for minutes), exit 1
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith("Error: cannot reach a Ray cluster at 127.0.0.1:1 (")
    assert "ray start --head --port 1" in result.stderr
    # and no half-made study is left behind
    assert not (tmp_path / "studies" / "far").exists()


@pytest.mark.parametrize("address", ["10.0.0.1", "host:port", ":6379"])
def test_an_address_that_is_not_host_port_is_refused(address: str) -> None:
    # the rule and the value
    with pytest.raises(SpecError, match=r"--address must be host:port .* but got"):
        check_reachable(address)


def test_a_store_never_asks_the_cloud_metadata_service(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from mtl_tune.studies.store._object_store import _open

    monkeypatch.delenv("AWS_EC2_METADATA_DISABLED", raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    _open("s3://bucket/prefix")
    # opening a store turns the AWS SDK's metadata lookup (169.254.169.254) off ...
    assert os.environ["AWS_EC2_METADATA_DISABLED"] == "true"
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "false")
    _open("s3://bucket/prefix")
    # ... unless the user asked for it
    assert os.environ["AWS_EC2_METADATA_DISABLED"] == "false"
