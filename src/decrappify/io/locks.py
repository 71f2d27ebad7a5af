"""Advisory locks on outputs: two runs never write one output at the same time.

A run locks every output it plans before any work (:func:`lock_outputs`), and the
writers lock again the output they write (re-entrant within one thread). A second run,
in this process or another, that wants one of those outputs fails at once with
:class:`~decrappify.errors.OutputError` naming it, instead of computing for minutes and
then replacing (or corrupting) what the first one writes.

The locks are POSIX record locks (``fcntl.lockf``) on one byte per output of a hidden
file ``.decrappify.lock`` in the output's folder, at an offset derived from the output's
name, so a batch of any size holds one file descriptor per folder. The system releases
them when the process ends, however it ends, so a killed run never blocks the next
one. The lock file is deleted when the last run using it releases it. On file systems
without record locks (some network mounts), runs are not locked (a debug log says so).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import threading
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from decrappify.errors import OutputError
from decrappify.io.outputs import path_key

try:  # POSIX
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

#: Name of the lock file in an output folder.
LOCK_NAME = ".decrappify.lock"

log = logging.getLogger("decrappify")


@dataclass
class _Folder:
    """The lock file of one output folder, open in this process."""

    path: Path
    fd: int
    held: dict[int, list[int]] = field(default_factory=dict)  # byte -> [thread, count]


_FOLDERS: dict[str, _Folder] = {}
_GUARD = threading.Lock()


def _byte(key: str) -> int:
    """Pick the byte of the lock file that stands for the output keyed ``key``."""
    return zlib.crc32(os.fsencode(os.path.basename(key))) & 0x7FFFFFFF


def _open_folder(folder: Path) -> _Folder | None:
    """Open (or create) the lock file of ``folder``; None where locks cannot be taken."""
    key = path_key(folder)
    entry = _FOLDERS.get(key)
    if entry is not None:
        return entry
    if fcntl is None:  # pragma: no cover - Windows
        return None
    lock = folder / LOCK_NAME
    for _ in range(5):  # the file may be deleted by its last user between open and lock
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            log.debug("%s: outputs not locked (%s)", folder, err)
            return None
        try:
            same = os.fstat(fd).st_ino == os.stat(lock).st_ino
        except OSError:
            same = False
        if same:
            entry = _FOLDERS[key] = _Folder(lock, fd)
            return entry
        os.close(fd)
    return None


def _close_folder(key: str, entry: _Folder) -> None:
    """Close a lock file no output of this process holds; delete it if no one else does."""
    del _FOLDERS[key]
    try:
        fcntl.lockf(entry.fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 0, 0)  # the whole file: free?
        entry.path.unlink(missing_ok=True)
    except OSError:
        pass  # another run holds some of it: it deletes the file when it is done
    finally:
        os.close(entry.fd)


def acquire(path: str | Path) -> tuple[str, int] | None:
    """Lock one output for this thread (re-entrant); fail at once if anyone else holds it.

    Parameters
    ----------
    path : str or Path
        The output; its folder must exist.

    Returns
    -------
    tuple or None
        The handle to give :func:`release`; None when the folder cannot be locked.

    Raises
    ------
    OutputError
        When another run (or another job of this process) is writing ``path``.
    """
    path = Path(path)
    me = threading.get_ident()
    with _GUARD:
        for _ in range(5):
            entry = _open_folder(path.parent)
            if entry is None:
                return None
            handle = _lock_byte(entry, path, me)
            if handle is not None:
                return handle
        return None


def _lock_byte(entry: _Folder, path: Path, me: int) -> tuple[str, int] | None:
    """Take the byte of ``path`` in an open lock file; None to retry with a fresh file."""
    folder_key = path_key(path.parent)
    byte = _byte(path_key(path))
    held = entry.held.get(byte)
    if held is not None:
        if held[0] != me:
            raise OutputError(
                f"{path}: another job of this program is writing this output; wait for it to "
                "finish, or choose another output"
            )
        held[1] += 1
        return folder_key, byte
    try:
        fcntl.lockf(entry.fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, byte)
    except OSError as err:
        if not entry.held:
            _close_folder(folder_key, entry)
        if err.errno in (errno.EAGAIN, errno.EACCES):  # held by another process
            raise OutputError(
                f"{path}: another decrappify run is writing this output; wait for it to "
                "finish, or write to another folder"
            ) from None
        log.debug("%s: output not locked (%s)", path, err)
        return folder_key, -1
    try:
        current = os.stat(entry.path).st_ino == os.fstat(entry.fd).st_ino
    except OSError:
        current = False
    if not current and not entry.held:  # its last user deleted the file meanwhile
        _close_folder(folder_key, entry)
        return None
    entry.held[byte] = [me, 1]
    return folder_key, byte


def release(handle: tuple[str, int] | None) -> None:
    """Release a lock taken by :func:`acquire` (the last release frees it).

    Parameters
    ----------
    handle : tuple or None
        What :func:`acquire` returned.
    """
    if handle is None:
        return
    folder_key, byte = handle
    if byte < 0:
        return
    with _GUARD:
        entry = _FOLDERS.get(folder_key)
        if entry is None or byte not in entry.held:
            return
        held = entry.held[byte]
        held[1] -= 1
        if held[1] > 0:
            return
        del entry.held[byte]
        with contextlib.suppress(OSError):
            fcntl.lockf(entry.fd, fcntl.LOCK_UN, 1, byte)
        if not entry.held:
            _close_folder(folder_key, entry)


@contextlib.contextmanager
def lock_outputs(paths: Iterable[str | Path]) -> Iterator[None]:
    """Hold the locks of several outputs (all or none) for the duration of the block.

    Parameters
    ----------
    paths : iterable of str or Path
        The outputs; their folders must exist.

    Yields
    ------
    None
        While the outputs are locked.

    Raises
    ------
    OutputError
        When another run is writing one of them (nothing is left locked).
    """
    handles: list[tuple[str, int] | None] = []
    try:
        for path in dict.fromkeys(Path(p) for p in paths):
            handles.append(acquire(path))
        yield
    finally:
        for handle in reversed(handles):
            release(handle)
