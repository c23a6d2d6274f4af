"""One run at a time per output directory: an exclusive lock on ``output.dir`` for the whole run.

The lock is ``output.dir/.stress-lock``, held with ``fcntl.flock`` (the kernel releases it when the
process ends, also on kill -9) and holding the process id, host and start time of its holder. A
second run into the directory stops at once naming the holder; a lock file left by a process that
is gone is taken over with a warning, and so are the temporaries (``.partial-PID@HOST-*``) of writers
that were killed: they are removed. Nested ``held`` calls of one process (the CLI around
``stress.run``) share the lock.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import fcntl
import json
import logging
import os
import re
import shutil
import socket
from pathlib import Path
from typing import Iterator

from ..errors import OutputError

log = logging.getLogger("stress")

FILENAME = ".stress-lock"
_held: dict[Path, int] = {}  # directory -> nesting depth, in this process
_PARTIAL = re.compile(r"\.partial-(\d+)@([A-Za-z0-9._]+)-")  # what partial_prefix() writes


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9.]", "_", socket.gethostname()) or "unknown"


def partial_prefix() -> str:
    """Name prefix of this process's temporary files and folders, ``.partial-PID@HOST-``: a later run
    can tell the leftovers of a writer that was killed from those of one still writing."""
    return f".partial-{os.getpid()}@{_host()}-"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def remove_stale_partials(directory: Path) -> None:
    """Delete the temporaries in ``directory`` left by processes of this host that are gone (kill -9
    while writing); never one of a live process, of another host, or without a process id."""
    try:
        entries = list(directory.glob(".partial-*"))
    except OSError:
        return
    for entry in entries:
        m = _PARTIAL.match(entry.name)
        if m is None or m.group(2) != _host() or _alive(int(m.group(1))):
            continue
        log.warning("removing %s, left by process %s, which ended while writing it", entry, m.group(1))
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                entry.unlink()


def _holder(fd: int) -> dict:
    """What the lock file on ``fd`` says about its holder ({} when empty or unreadable)."""
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        info = json.loads(os.read(fd, 4096) or b"{}")
        return info if isinstance(info, dict) else {}
    except (OSError, ValueError):
        return {}


def describe(info: dict) -> str:
    return (f"process {info.get('pid', '?')} on host {info.get('host', '?')}, started {info.get('started', '?')}"
            if info else "a process that left no details")


def _open_locked(path: Path) -> tuple[int, dict]:
    """Open and flock ``path`` (created if absent); return the descriptor and the previous holder's details."""
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise OutputError(f"the output directory {path.parent} is not writable: cannot create the lock file "
                              f"{path.name} ({exc.strerror})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            info = _holder(fd)
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise OutputError(f"{path.parent} is in use by another run ({describe(info)}; lock file {path}); "
                                  "wait for it to finish, or choose another output.dir") from None
            raise OutputError(f"cannot lock {path}: {exc.strerror} (a file system without locks?); "
                              "choose another output.dir") from None
        try:  # its previous holder may have removed the file between our open and flock: lock the new one
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                return fd, _holder(fd)
        except FileNotFoundError:
            pass
        os.close(fd)


@contextlib.contextmanager
def held(out_dir: str | os.PathLike) -> Iterator[None]:
    """Hold the lock of ``out_dir`` (created if absent) until the block ends; OutputError if another
    live process holds it."""
    directory = Path(out_dir).expanduser().resolve()
    if directory in _held:
        _held[directory] += 1
        try:
            yield
        finally:
            _held[directory] -= 1
        return
    created = not directory.exists()
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create the output directory {directory}: {exc.strerror}") from None
    path = directory / FILENAME
    try:
        fd, previous = _open_locked(path)
    except OutputError:
        if created:
            with contextlib.suppress(OSError):
                directory.rmdir()
        raise
    try:
        if previous:
            log.warning("took over the stale lock %s of %s, which no longer holds it (it ended without "
                        "releasing it, e.g. killed)", path, describe(previous))
        for leftovers in (directory, directory / "chunks"):  # the results folder, the chunk store
            remove_stale_partials(leftovers)
        me = {"pid": os.getpid(), "host": socket.gethostname(),
              "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(me).encode(), 0)
        os.fsync(fd)
        _held[directory] = 1
        try:
            yield
        finally:
            del _held[directory]
            with contextlib.suppress(OSError):
                os.unlink(path)  # while still locked: a run waiting on the old file sees it gone and retries
    finally:
        os.close(fd)
        if created:  # a run refused before writing anything leaves no empty directory behind
            with contextlib.suppress(OSError):
                directory.rmdir()
