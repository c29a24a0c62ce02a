"""Trial logs a killed driver had not copied to the study yet, recovered when it resumes.

Ray Tune's driver writes each trial's `result.json`, `progress.csv`, `params.json` and
TensorBoard file into a staging folder of its Ray session
(`<Ray's temp>/session_*/artifacts/<time>/<experiment>/driver_artifacts/<trial folder>`) and
copies them into the study's storage from time to time. A driver killed between two copies
leaves the newest lines only there: a trial that ended meanwhile had no results in the study
(`study status` showed it MISSING), one that resumes lost epochs from its logs. Before Tune
restores an experiment, `recover_trial_logs` copies each such file into its trial's folder
where the one there is shorter or missing. Staging folders of another machine (a driver that
ran elsewhere) are out of reach, and nothing is recovered from them.
"""

from __future__ import annotations

import logging
from pathlib import Path

from mtl_tune.studies.store import upload_if_longer

logger = logging.getLogger(__name__)


def recover_trial_logs(experiment_uri: str, ray_temp: Path) -> int:
    """Copies the trial logs that Ray sessions under `ray_temp` staged for the experiment at
    `experiment_uri` (a folder or a store URI) into its trial folders where they are longer;
    returns how many files were copied. A storage that cannot be read or written is logged
    and left as it is: the resume goes on with what the study holds."""
    import pyarrow.fs

    try:
        fs, experiment = pyarrow.fs.FileSystem.from_uri(experiment_uri)
        trials = {i.base_name for i in fs.get_file_info(
            pyarrow.fs.FileSelector(experiment, allow_not_found=True))
            if i.type == pyarrow.fs.FileType.Directory}
    except (OSError, ValueError) as err:
        logger.warning("cannot list %s to recover trial logs: %s", experiment_uri, err)
        return 0
    name = experiment.rstrip("/").rsplit("/", 1)[-1]
    copied = 0
    # trial folder names hold the trial id and its creation time: another study's never match
    for staged in sorted(ray_temp.glob(f"session_*/artifacts/*/{name}/driver_artifacts/*")):
        if staged.name not in trials or not staged.is_dir():
            continue
        for file in sorted(p for p in staged.iterdir() if p.is_file()):
            target = f"{experiment}/{staged.name}/{file.name}"
            try:
                (before,) = fs.get_file_info([target])
                upload_if_longer(file, fs, target)
                (after,) = fs.get_file_info([target])
            except OSError as err:
                logger.warning("cannot recover %s into %s: %s", file, target, err)
                continue
            copied += (after.size or 0) != (before.size or 0)
    if copied:
        logger.warning("recovered %d trial log file(s) of %s that the driver before this one "
                       "had not copied to the study (it was stopped first)", copied,
                       experiment_uri)
    return copied


def ray_temp_root() -> Path | None:
    """The temporary folder of the Ray this process runs (its sessions' parent); None before
    Ray starts."""
    import ray

    node = ray._private.worker._global_node  # the only place Ray names it for a driver
    return None if node is None else Path(node.get_temp_dir_path())
