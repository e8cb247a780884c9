"""One run at a time per output folder: a second run on the same folders stops at its start.

Every output folder (models_dir, tuning_dir, plots_dir and the tokenizer's folder) gets a file
`.run.lock`, locked with fcntl.flock and recording the locking process's id, host and start time for
the error message. The kernel drops a flock when its process ends, however it ends, so a lock
left by a killed run is free: the next run takes it over and logs whose it was. A pid file alone
could not tell a live run from a dead one whose pid was reused. The same process may lock its
folders again (a notebook re-run in one kernel). Locks are released at process exit, or earlier
by RunLock.release(), which deletes the lock file and a folder the lock had to create if nothing
else was written to it. A file system that cannot lock at all gets a warning instead of a lock.
"""

from __future__ import annotations

import atexit
import datetime
import errno
import fcntl
import json
import logging
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from data_pipeline.config import ExperimentConfig

logger = logging.getLogger("training_assets")

LOCK_FILE = ".run.lock"


class FolderInUseError(RuntimeError):
    """Another live process holds one of this run's output folders."""


@dataclass(frozen=True)
class _Held:
    descriptor: int
    created_folder: bool  # the lock made the folder: release removes it again if it stayed empty
    owner_pid: int  # a forked child inherits the descriptor but must not release its parent's lock


_HELD: dict[Path, _Held] = {}  # this process's locks, by resolved folder


@dataclass(frozen=True)
class RunLock:
    """The folders one lock_output_folders call took (not those the process already held)."""

    folders: tuple[Path, ...]

    def release(self) -> None:
        for folder in self.folders:
            _release(folder)


def output_folders(config: ExperimentConfig) -> dict[Path, tuple[str, list[str]]]:
    """Each local folder a run writes to -> (the folder as CONFIG names it, the keys naming it)."""
    named = {"models_dir": config.models_dir, "tuning_dir": config.tuning_dir,
             "plots_dir": config.plots_dir,
             "tokenizer_path": os.path.dirname(config.tokenizer_path) or "."}
    folders: dict[Path, tuple[str, list[str]]] = {}
    for key, folder in named.items():
        if "://" in folder:  # gs:// and other remote folders: no local file to lock
            logger.info("%s=%s is not a local folder: it is not locked against other runs", key, folder)
            continue
        folders.setdefault(Path(folder).resolve(), (folder, []))[1].append(key)
    return folders


def lock_output_folders(config: ExperimentConfig) -> RunLock:
    """Lock every output folder of `config` for this process (kept until it exits).

    Raises FolderInUseError, one line naming the folder, the holder's pid and the fix, if another
    live process holds one; nothing is locked then. Folders this process already holds are skipped.
    """
    taken: list[Path] = []
    try:
        for folder, (shown, keys) in output_folders(config).items():
            if folder not in _HELD and _acquire(folder, shown, keys):
                taken.append(folder)
    except BaseException:
        for folder in taken:
            _release(folder)
        raise
    return RunLock(tuple(taken))


def _acquire(folder: Path, shown: str, keys: list[str]) -> bool:
    """Lock `folder`; False (with a warning) where its file system cannot lock at all."""
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_FILE
    while True:
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            holder = _read_record(descriptor)
            os.close(descriptor)
            if error.errno in (errno.EAGAIN, errno.EACCES):
                raise FolderInUseError(_in_use_message(shown, keys, holder)) from None
            logger.warning("could not lock %s (%s): a second run on it would not be refused", shown, error)
            return False
        if _is_current_file(descriptor, path):
            break
        os.close(descriptor)  # its holder released and deleted it meanwhile: lock the new file
    previous = _read_record(descriptor)
    if previous:  # a clean release deletes the file, so its holder ended without releasing it
        logger.warning("%s: taking over the lock of a run that ended without releasing it (%s)",
                       shown, _describe(previous))
    os.ftruncate(descriptor, 0)
    os.pwrite(descriptor, json.dumps({
        "pid": os.getpid(), "host": socket.gethostname(),
        "started": datetime.datetime.now().isoformat(timespec="seconds")}).encode(), 0)
    _HELD[folder] = _Held(descriptor, created, os.getpid())
    return True


def _release(folder: Path) -> None:
    held = _HELD.pop(folder, None)
    if held is None or held.owner_pid != os.getpid():
        return
    path = folder / LOCK_FILE
    try:
        if _is_current_file(held.descriptor, path):
            path.unlink()  # while still locked: a waiting process then sees a new file
        if held.created_folder:
            folder.rmdir()  # only succeeds while empty
    except OSError:
        pass
    finally:
        os.close(held.descriptor)


@atexit.register
def _release_all() -> None:
    for folder in list(_HELD):
        _release(folder)


def _is_current_file(descriptor: int, path: Path) -> bool:
    try:
        here, there = os.fstat(descriptor), os.stat(path)
    except FileNotFoundError:
        return False
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)


def _read_record(descriptor: int) -> dict:
    try:
        record = json.loads(os.pread(descriptor, 4096, 0) or b"{}")
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def _describe(record: dict) -> str:
    started = str(record.get("started", "?"))
    if started.startswith(datetime.date.today().isoformat()):
        started = started[11:]  # today: the time is enough
    host = record.get("host")
    on_host = f" on {host}" if host and host != socket.gethostname() else ""
    return f"pid {record.get('pid', '?')}{on_host}, started {started.replace('T', ' ')}"


def _in_use_message(shown: str, keys: list[str], holder: dict) -> str:
    return (f"{shown} is in use by another run ({_describe(holder)}): wait for it to finish, "
            f"or set {' and '.join(keys)} to another folder")
