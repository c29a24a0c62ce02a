"""The course's public data files, downloaded with pooch and checked against pinned sha256s.

`mtl-tune data fetch` downloads the `data/` folder of the default final project's repository
(`gpoesia/minbert-default-final-project`) into a local folder. pooch retries dropped
connections, writes each file atomically and shows a progress bar; each file must match the
sha256 pinned below (taken from the public files themselves), so a tampered or truncated
download is refused, and a different file already in the folder is never overwritten. The two
Quora files this project could not read were not pinned: they are downloaded unverified, with a
warning. Nothing here runs unless the user asks for a download.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from mtl_tune.exceptions import FetchError
from mtl_tune.platform.config import DATA_ENV

logger = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://raw.githubusercontent.com/gpoesia/minbert-default-final-project/main/data"
HOME_ENV = "MTL_TUNE_HOME"
RETRIES = 3

# name -> sha256 of the public file; None: not pinned (not available where this was written)
PINNED: dict[str, str | None] = {
    "ids-sst-train.csv": "03b2b625c090f94a6afd59f114cde5282e2053aab0b101e87ed695d8a0c5b1df",
    "ids-sst-dev.csv": "a186ce94577635fbe10beaaddd50f16cccf6c30973221cefdf90deed2a584bfe",
    "ids-sst-test-student.csv": "bdd5a767faa0c26782117e37767ece154c30d5d04fb8727d09c71e3850a55c7b",
    "ids-cfimdb-train.csv": "140fc513045a966109faed46a5c7a898767b96714d71bcb9c15f659129fadcea",
    "ids-cfimdb-dev.csv": "3087f571b66860fe5d035b5a018d08202ad3fd3720e4821c04b2acf6c7ded559",
    "ids-cfimdb-test-student.csv":
        "7ae611548c9eac879e9ebb406cc9f8ae68ff12f78090e4965af5cbdfa06240f4",
    "quora-train.csv": None,
    "quora-dev.csv": "bfa3cc954a9ba300ae776a980141de65f622a3c1b97e3fd905d63245bc36d5ad",
    "quora-test-student.csv": None,
    "sts-train.csv": "15d12efc2d656fffb1d61ac1f08ec4227f43925fd16f420c037cbd063699c21b",
    "sts-dev.csv": "ce3cad6f16062586ac7ba462c28b010a9be10c530fd5074165860d7b7ab4e93d",
    "sts-test-student.csv": "dee455745b72e9ca3ff74e7c056bd73e34bad5b8d5641045a2c1e7e131866f47",
}


@dataclass(frozen=True)
class FetchedFile:
    name: str
    size: int
    sha256: str
    status: str  # "downloaded", or "verified" when a matching copy was already there


def default_data_dir() -> Path:
    """`$MTL_TUNE_HOME/data` when set, else `~/.mtl-tune/data` (not created here)."""
    home = os.environ.get(HOME_ENV)
    return Path(home).expanduser() / "data" if home else Path.home() / ".mtl-tune" / "data"


def data_folder(data_dir: Path | None, given_as: str = "--data-dir") -> Path:
    """The data folder a command uses: `--data-dir` (or what `given_as` names, e.g. a `--set`),
    else `$MTL_TUNE_DATA`, else the folder `data fetch` fills when it exists.

    Raises:
        DataError: The folder given or configured does not exist, or none is (what to do).
    """
    from mtl_tune.platform.data_files import resolve_data_dir

    if data_dir is None and not os.environ.get(DATA_ENV) and default_data_dir().is_dir():
        return default_data_dir()
    return resolve_data_dir(data_dir, given_as).resolve()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _offline(url: str, err: Exception) -> FetchError:
    return FetchError(
        f"cannot reach {url} ({err}); fetching needs network access. On an offline machine, "
        "copy the data/ folder of the default final project "
        "(github.com/gpoesia/minbert-default-final-project) onto it another way and point "
        f"mtl-tune at it with --data-dir DIR or {DATA_ENV}=DIR instead of fetching"
    )


def fetch_data(
    dest: Path, base_url: str = DEFAULT_BASE_URL, names: tuple[str, ...] = tuple(PINNED),
    progress: bool = True,
) -> list[FetchedFile]:
    """Downloads the public files into `dest`; a file already there is checked, not fetched.

    Raises:
        FetchError: The server cannot be reached (how to go offline instead), a file is missing
            there (404), a download does not match its pinned sha256, or a different file of
            that name is already in `dest` (it is left untouched).
    """
    import pooch
    import requests

    unknown = sorted(set(names) - set(PINNED))
    if unknown:
        raise FetchError(f"not files of the course: {unknown}; choose from {list(PINNED)}")
    dest = Path(dest).expanduser()
    pooch.get_logger().setLevel(logging.WARNING)  # the progress bar says it already
    registry = {n: (f"sha256:{h}" if h else None) for n, h in PINNED.items()}
    fetcher = pooch.create(path=dest, base_url=base_url.rstrip("/") + "/", registry=registry,
                           retry_if_failed=RETRIES)
    fetched = []
    for name in names:
        target, pinned = dest / name, PINNED[name]
        existed = target.is_file()
        if existed and pinned and _sha256(target) != pinned:
            raise FetchError(
                f"{target} is not the course's {name} (its sha256 differs from the pinned one); "
                f"it was left untouched: move it away to download the file, or pass another --dest"
            )
        if pinned is None and not existed:
            logger.warning("%s has no pinned sha256 here: it is downloaded unverified", name)
        try:
            path = Path(fetcher.fetch(name, progressbar=progress))
        except requests.exceptions.HTTPError as err:
            raise FetchError(f"{base_url}/{name} could not be downloaded: {err}") from None
        except requests.exceptions.RequestException as err:
            raise _offline(base_url, err) from None
        except ValueError as err:  # pooch: the download does not match the pinned sha256
            raise FetchError(f"the download of {name} from {base_url} is corrupt or not the "
                             f"course's file ({err}); nothing was kept") from None
        fetched.append(FetchedFile(name, path.stat().st_size, pinned or _sha256(path),
                                   "verified" if existed else "downloaded"))
    return fetched
