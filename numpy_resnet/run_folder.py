"""A run folder, and which run owns it.

    runs/resnet18/
        checkpoint.npz      model, optimizer and schedule after the last finished epoch
        metrics.json        the config and one row per finished epoch
        metrics.csv         the same rows as a table
        .lock               "<pid> <host>" while a run owns the folder

One run at a time: `owned(folder)` creates `.lock` with O_CREAT | O_EXCL, which succeeds for
exactly one process however many try at once, and removes it when the run ends, even on an
error or Ctrl-C. A lock whose process is gone (kill -9, a crash) is stale: the next run takes
it over and says so. A lock held by a live process refuses the newcomer in one line.

The files are written atomically (serialization.atomic_write: a temporary `.NAME.XXXXXXXX.tmp`
renamed over NAME), so a kill -9 mid-write leaves the old file intact plus that temporary
file; the run that next owns the folder removes such leftovers.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

RUN_FILES = ("checkpoint.npz", "metrics.json", "metrics.csv")
LOCK_NAME = ".lock"


def one_line(err: OSError, message: str) -> OSError:
    """An error of err's type and errno whose whole text is `message` (no chained traceback
    when raised `from None`)."""
    failure = type(err)(message)
    failure.errno = err.errno
    return failure


def make(folder: Path) -> list[Path]:
    """Create the run folder and its missing parents -> the folders made, outermost first.
    One line if that cannot be done."""
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(f"{folder} is a file, not a run folder")
    made = [path for path in (folder, *folder.parents) if not path.exists()][::-1]
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise one_line(err, f"cannot create the run folder {folder}: {err.strerror}") from None
    return made


def remove_empty(made: list[Path]) -> None:
    """Undo make() for a run that failed before saving anything: remove the folders it made,
    innermost first, as long as they are empty."""
    for path in reversed(made):
        try:
            path.rmdir()
        except OSError:                             # not empty (or gone): keep it and its parents
            return


def _holder() -> str:
    return f"{os.getpid()} {socket.gethostname()}"


def _is_alive(pid: int) -> bool:
    if os.name == "nt":                             # os.kill would terminate it: assume it lives
        return True
    try:
        os.kill(pid, 0)                             # signal 0: only asks whether pid exists
    except ProcessLookupError:
        return False
    except PermissionError:                         # exists, owned by another user
        return True
    return True


def _try_create(lock: Path) -> bool:
    """Create the lock holding our pid; False if it exists already."""
    try:
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    try:
        with os.fdopen(fd, "w") as f:
            f.write(_holder() + "\n")
    except BaseException:
        lock.unlink()
        raise
    return True


def _created(lock: Path) -> bool:
    """_try_create, with an unwritable folder said in one line."""
    try:
        return _try_create(lock)
    except OSError as err:                          # read-only folder or file system, full disk
        raise one_line(err, f"cannot write in the run folder {lock.parent}: {err.strerror}") from None


def _take_over(lock: Path, seen: str) -> bool:
    """Remove the stale lock whose content was `seen`; False if another process changed it first.

    Renaming is atomic, so of several processes taking over the same stale lock only one moves
    it; one that finds it moved a live lock instead (replaced since it was read) puts it back.
    """
    claim = lock.with_name(f"{LOCK_NAME}.{os.getpid()}.stale")
    try:
        os.replace(lock, claim)
    except FileNotFoundError:
        return False
    moved = claim.read_text()
    if moved != seen:
        try:
            os.link(claim, lock)                    # fails rather than overwrite a newer lock
        except FileExistsError:
            pass
    claim.unlink()
    return moved == seen


def acquire(folder: Path, log: Callable[[str], None] = print) -> Path:
    """Own `folder` (it must exist): create its lock, taking over a stale one. -> the lock's path.

    FileExistsError if a live process owns it; PermissionError if the folder is not writable.
    """
    lock = folder / LOCK_NAME
    while not _created(lock):
        try:
            seen = lock.read_text()
        except FileNotFoundError:                   # its owner just released it: try again
            continue
        fields = seen.split()
        if len(fields) != 2 or not fields[0].isdigit():
            raise FileExistsError(f"{folder} is locked by {lock}, which names no process "
                                  f"({seen.strip()!r}); if no run uses the folder, delete {lock}")
        pid, host = int(fields[0]), fields[1]
        if host != socket.gethostname():
            raise FileExistsError(f"{folder} is in use by process {pid} on {host}; if that run "
                                  f"has ended, delete {lock}")
        if _is_alive(pid):
            raise FileExistsError(f"{folder} is in use by process {pid}, still running; wait "
                                  f"for it to end or choose another folder")
        if _take_over(lock, seen):
            log(f"note: {lock} was left by process {pid}, which has ended; taken over")
    return lock


def release(lock: Path) -> None:
    """Remove the lock if it is still ours."""
    try:
        if lock.read_text().strip() == _holder():
            lock.unlink()
    except FileNotFoundError:
        pass


@contextmanager
def owned(folder: Path, log: Callable[[str], None] = print) -> Iterator[Path]:
    """Hold `folder`'s lock inside the block."""
    lock = acquire(folder, log)
    try:
        yield lock
    finally:
        release(lock)


def run_files(folder: Path) -> list[str]:
    """The names of RUN_FILES present in `folder`: a run has been saved there if any."""
    return [name for name in RUN_FILES if (folder / name).exists()]


def remove_run(folder: Path) -> list[str]:
    """Delete the run files (nothing else) from `folder`; -> their names."""
    names = run_files(folder)
    for name in names:
        (folder / name).unlink()
    return names


def remove_stale_tmp_files(folder: Path) -> list[Path]:
    """Delete atomic_write's leftovers of RUN_FILES (`.checkpoint.npz.XXXXXXXX.tmp`, ...).

    Call it only while owning the folder: another run's temporary file is not stale.
    """
    stale = sorted(path for name in RUN_FILES for path in folder.glob(f".{name}.*.tmp"))
    for path in stale:
        path.unlink(missing_ok=True)
    return stale
