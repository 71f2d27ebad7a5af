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

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from decrappify.errors import OutputError


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
    path = Path(path)
    return path.with_name(f".{path.name}.partial")


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
        aside = final.with_name(f".{final.name}.replaced")
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
