"""Atomic outputs: write under ``.<name>.partial`` beside the target, rename at the end.

Every decrappify output follows the same pattern, so that an error, a crash or a
cancelled run never leaves a half-written file under the final name:

1. write to :func:`partial_path` (``.<name>.partial`` in the same folder, so the final
   rename never crosses file systems);
2. :func:`commit` it: an atomic ``os.replace`` for a new name or a file over a file;
   for an existing folder (a ``.zarr`` store), the old one is moved aside, the new one
   moved in and only then the old one deleted (restored if the move fails);
3. on failure, :func:`remove_path` the partial.

:func:`atomic_write` wraps the three steps around a callback; :func:`atomic_write_text`
and :func:`atomic_write_bytes` are the common cases (configs, reports).
"""

from __future__ import annotations

import errno
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from decrappify.errors import OutputError
from decrappify.io.outputs import hidden_sibling


def partial_path(path: str | os.PathLike[str]) -> Path:
    """Temporary path an output is written under before it is renamed: ``.<name>.partial``.

    Parameters
    ----------
    path : str or Path
        The final output path.

    Returns
    -------
    Path
        The temporary path beside it.
    """
    return hidden_sibling(path, "partial")


def remove_path(path: str | os.PathLike[str]) -> None:
    """Delete a file, link or folder tree if it exists (errors inside trees are ignored).

    Parameters
    ----------
    path : str or Path
        What to delete.
    """
    path = Path(path)
    if path.is_symlink() or path.is_file():
        path.unlink(missing_ok=True)
    elif path.exists():
        shutil.rmtree(path, ignore_errors=True)


def commit(tmp: str | os.PathLike[str], final: str | os.PathLike[str], *, overwrite: bool) -> Path:
    """Move a finished temporary output to its final name.

    Parameters
    ----------
    tmp : str or Path
        The finished temporary file or folder.
    final : str or Path
        The final name.
    overwrite : bool
        Replace an existing ``final``; when False an existing ``final`` is an error.

    Returns
    -------
    Path
        ``final``.

    Raises
    ------
    OutputError
        When ``final`` exists and ``overwrite`` is False, or the rename fails.
    """
    tmp, final = Path(tmp), Path(final)
    try:
        if not os.path.lexists(final):
            os.replace(tmp, final)
            return final
        if not overwrite:
            raise OutputError(f"{final}: already exists; pass --overwrite to replace it")
        if tmp.is_file() and final.is_file() and not final.is_symlink():
            os.replace(tmp, final)
            return final
        aside = hidden_sibling(final, "replaced")
        remove_path(aside)
        os.replace(final, aside)
        try:
            os.replace(tmp, final)
        except BaseException:
            os.replace(aside, final)
            raise
        remove_path(aside)
        return final
    except OutputError:
        raise
    except OSError as err:
        raise OutputError(
            f"{final}: cannot move the finished output in place ({err.strerror or err})"
        ) from err


def atomic_write(
    path: str | os.PathLike[str], write: Callable[[Path], Any], *, overwrite: bool = True
) -> Path:
    """Call ``write(tmp)`` on a temporary path beside ``path``, then rename it to ``path``.

    Parameters
    ----------
    path : str or Path
        The final output.
    write : callable
        Writes the output to the path it is given.
    overwrite : bool
        Replace an existing ``path`` (the default for small files such as configs).

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    OutputError
        When ``path`` exists and ``overwrite`` is False, or its folder is missing or cannot
        be written.
    """
    path = Path(path)
    if not overwrite and os.path.lexists(path):
        raise OutputError(f"{path}: already exists; pass --overwrite to replace it")
    if not path.parent.is_dir():
        raise OutputError(f"{path}: folder {path.parent} does not exist")
    tmp = partial_path(path)
    done = False
    try:
        try:
            write(tmp)
        except OSError as err:
            raise OutputError(f"{path}: cannot write ({err.strerror or err})") from err
        if tmp.is_file() and path.is_dir():  # never replace a folder by a file
            raise OutputError(f"{path}: expected a file path, got a folder")
        commit(tmp, path, overwrite=overwrite)
        done = True
    finally:
        if not done:
            remove_path(tmp)
    return path


def atomic_write_text(
    path: str | os.PathLike[str], text: str, *, encoding: str = "utf-8", overwrite: bool = True
) -> Path:
    """Write text to ``path`` atomically.

    Parameters
    ----------
    path : str or Path
        The file.
    text : str
        Its content.
    encoding : str
        Text encoding.
    overwrite : bool
        Replace an existing file.

    Returns
    -------
    Path
        ``path``.
    """
    return atomic_write(
        path, lambda tmp: tmp.write_text(text, encoding=encoding), overwrite=overwrite
    )


def atomic_write_bytes(
    path: str | os.PathLike[str], data: bytes, *, overwrite: bool = True
) -> Path:
    """Write bytes to ``path`` atomically.

    Parameters
    ----------
    path : str or Path
        The file.
    data : bytes
        Its content.
    overwrite : bool
        Replace an existing file.

    Returns
    -------
    Path
        ``path``.
    """
    return atomic_write(path, lambda tmp: tmp.write_bytes(data), overwrite=overwrite)


#: What each errno of a failed write means to the user, and what to do.
WRITE_ERRORS = {
    errno.ENOSPC: "the disk is full; free some space or write to another disk",
    errno.EDQUOT: "the disk quota is exceeded; free some space or write to another disk",
    errno.EFBIG: (
        "the file is larger than this process may write (the shell's file size limit, "
        "ulimit -f, or the file system's, such as FAT32's 4 GB); raise the limit or write "
        "to another disk"
    ),
    errno.ENAMETOOLONG: "a file name is too long for the file system; choose a shorter name",
    errno.EROFS: "the file system is read-only; write to another folder",
    errno.EACCES: "permission denied; write to a folder you may write to",
    errno.EPERM: "permission denied; write to a folder you may write to",
}
#: How libraries that wrap the system's error spell it (safetensors: ``code: 28``).
_CODE = re.compile(r"(?:\[Errno |\bcode: |os error )(\d+)")
_TEXTS = {
    "no space left on device": errno.ENOSPC,
    "file too large": errno.EFBIG,
    "disk quota exceeded": errno.EDQUOT,
    "file name too long": errno.ENAMETOOLONG,
    "read-only file system": errno.EROFS,
}


def write_errno(error: BaseException) -> int | None:
    """Find the system error of a failed write in an exception and the ones behind it.

    Looks at ``OSError.errno``, then at the causes, contexts and groups of the exception,
    then at messages of libraries that wrap the error in their own type (safetensors'
    ``SafetensorError``, torch's ``RuntimeError``, zarr's asyncio errors).

    Parameters
    ----------
    error : BaseException
        What a write raised.

    Returns
    -------
    int or None
        One of the errnos of :data:`WRITE_ERRORS`, or None.
    """
    seen: set[int] = set()
    stack = [error]
    while stack:
        item = stack.pop()
        if item is None or id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, OSError) and item.errno in WRITE_ERRORS:
            return int(item.errno)
        text = str(item).lower()
        match = _CODE.search(text)
        if match and int(match.group(1)) in WRITE_ERRORS:
            return int(match.group(1))
        for needle, number in _TEXTS.items():
            if needle in text:
                return number
        stack += [item.__cause__, item.__context__, *getattr(item, "exceptions", ())]
    return None


def write_failure(
    path: str | os.PathLike[str], error: BaseException, *, writing: bool = False
) -> OutputError | None:
    """Make the one-line error of a write of ``path`` that failed with ``error``, if it is one.

    Parameters
    ----------
    path : str or Path
        The output being written.
    error : BaseException
        What the write raised.
    writing : bool
        ``error`` certainly came from writing, but says no system error (torch's
        ``PytorchStreamWriter`` failures): the cause is then read from the state of the
        system, a disk with less than 1 MB free or a file size limit (``ulimit -f``).

    Returns
    -------
    OutputError or None
        ``<path>: cannot write it: the disk is full; ...``, or None when ``error`` is not
        a failure of the file system (a bug, a bad input).
    """
    number = write_errno(error)
    if number is None and writing:
        number = _likely_cause(Path(path))
    if number is None:
        return None
    return OutputError(f"{path}: cannot write it: {WRITE_ERRORS[number]}")


def _likely_cause(path: Path) -> int | None:
    """ENOSPC when the disk under ``path`` is (almost) full, EFBIG under a file size limit."""
    folder = next((p for p in (path.parent, *path.parents) if p.exists()), Path("."))
    try:
        if shutil.disk_usage(folder).free < 2**20:
            return errno.ENOSPC
    except OSError:
        pass
    try:
        import resource

        if resource.getrlimit(resource.RLIMIT_FSIZE)[0] != resource.RLIM_INFINITY:
            return errno.EFBIG
    except (ImportError, OSError, ValueError):
        pass
    return None
