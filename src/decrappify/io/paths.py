"""Paths for batches: expand CLI inputs, name outputs, refuse outputs that clobber inputs."""

from __future__ import annotations

import errno
import logging
import os
import re
import shutil
import stat
from collections.abc import Iterable
from pathlib import Path

from decrappify.errors import InputError, OutputError
from decrappify.io.outputs import check_not_an_input, inside, path_key

#: File name endings of images decrappify reads (lower case), longest first.
IMAGE_SUFFIXES = (".ome.zarr", ".ome.tiff", ".ome.tif", ".zarr", ".tiff", ".tif")
#: Endings of TIFF files.
TIFF_SUFFIXES = (".tif", ".tiff")
#: Output formats and the names that select them.
FORMAT_NAMES = {
    "tif": "tiff",
    "tiff": "tiff",
    "ome-tiff": "tiff",
    "ome.tif": "tiff",
    "zarr": "zarr",
    "ome-zarr": "zarr",
    "ome.zarr": "zarr",
}
#: Trust maps ``decrappify predict`` writes beside a TIFF output (``<stem>.<map>.tif``).
TRUST_MAP_NAMES = ("uncertainty", "consistency")
_GLOB_CHARS = re.compile(r"[*?\[]")

log = logging.getLogger("decrappify")
_DIGITS = re.compile(r"(\d+)")


def natural_key(text: str | Path) -> tuple[tuple[int, int | str], ...]:
    """Sort key that orders ``img2`` before ``img10`` (case-insensitive).

    Parameters
    ----------
    text : str or Path
        A name or path.

    Returns
    -------
    tuple
        The key.
    """
    parts = _DIGITS.split(str(text))
    return tuple((0, int(p)) if p.isdigit() else (1, p.lower()) for p in parts if p)


def is_zarr_path(path: Path) -> bool:
    """Whether ``path`` is a Zarr store (v2 or v3 array or group)."""
    return path.is_dir() and any(
        (path / name).is_file() for name in ("zarr.json", ".zarray", ".zgroup")
    )


def image_stem(path: str | Path) -> str:
    """File name without ``.ome.zarr``, ``.zarr``, ``.ome.tif(f)`` or ``.tif(f)``.

    Parameters
    ----------
    path : str or Path
        An input path.

    Returns
    -------
    str
        The stem used to name outputs.
    """
    name = Path(path).name
    lower = name.lower()
    for suffix in IMAGE_SUFFIXES:
        if lower.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return Path(name).stem or name


def output_format(path: str | Path, format: str | None = None) -> str:
    """Output format, ``"tiff"`` or ``"zarr"``, from ``format`` or the path's ending.

    Parameters
    ----------
    path : str or Path
        The output path.
    format : str or None
        ``"tiff"``/``"tif"``/``"ome-tiff"`` or ``"zarr"``/``"ome-zarr"``; None to use the
        path's ending.

    Returns
    -------
    str
        ``"tiff"`` or ``"zarr"``.

    Raises
    ------
    OutputError
        When neither names a known format.
    """
    if format is not None:
        key = format.lower().lstrip(".")
        if key not in FORMAT_NAMES:
            raise OutputError(f"format must be one of 'tiff' or 'zarr', got {format!r}")
        return FORMAT_NAMES[key]
    lower = Path(path).name.lower()
    if lower.endswith(TIFF_SUFFIXES):
        return "tiff"
    if lower.endswith(".zarr"):
        return "zarr"
    raise OutputError(
        f"{path}: unknown output format; use a .tif/.tiff or .zarr/.ome.zarr name, or pass format"
    )


def output_path_for(input: str | Path, out_dir: str | Path, format: str) -> Path:
    """Output path of one input in a batch: ``out_dir/<stem>.tif`` or ``out_dir/<stem>.zarr``.

    Parameters
    ----------
    input : str or Path
        The input image path.
    out_dir : str or Path
        The output folder.
    format : str
        ``"tiff"`` or ``"zarr"`` (or one of their aliases, see :data:`FORMAT_NAMES`).

    Returns
    -------
    Path
        The output path.
    """
    suffix = ".tif" if output_format(input, format) == "tiff" else ".zarr"
    return Path(out_dir) / f"{image_stem(input)}{suffix}"


def expand_inputs(paths: str | Path | Iterable[str | Path]) -> list[Path]:
    """Expand CLI inputs: files as given, folders to their images, glob patterns to matches.

    A folder that is itself a Zarr store counts as one image. Other folders expand to
    their ``.tif``/``.tiff``/``.zarr``/``.ome.zarr`` children (hidden names skipped);
    folders and patterns are sorted naturally (``img2`` before ``img10``); the order of
    the arguments is kept and duplicates are dropped.

    What a folder or a pattern finds that is not an image is skipped with a warning
    naming it: symbolic link loops and dangling links, FIFOs, sockets and devices (which
    would block or fail when opened), links to a folder that holds them, and the trust
    maps ``decrappify predict`` writes beside a TIFF output (``x.consistency.tif``
    beside ``x.tif``). ``**`` in a pattern does not follow links to folders, so a link
    back to a parent folder cannot make it endless. A file named explicitly that is one
    of these is refused.

    Parameters
    ----------
    paths : str, Path or iterable of them
        What the user typed.

    Returns
    -------
    list of Path
        The images, in order.

    Raises
    ------
    InputError
        For a missing path, a pattern that matches nothing, a folder without images, or
        a named path that is a link loop or not a regular file or folder.
    """
    if isinstance(paths, str | Path):
        paths = [paths]
    result: list[Path] = []
    seen: set[str] = set()
    for entry in paths:
        for path in _expand_one(str(entry)):
            key = path_key(path)
            if key not in seen:
                seen.add(key)
                result.append(path)
    return result


def drop_trust_maps(paths: list[Path]) -> list[Path]:
    """Drop, with a warning, the trust maps of images that are in the list too.

    ``evaluate --pred sr/*.tif``: the shell lists ``x.consistency.tif`` beside ``x.tif``,
    and a trust map is never a prediction to score.

    Parameters
    ----------
    paths : list of Path
        Expanded inputs.

    Returns
    -------
    list of Path
        ``paths`` without them.
    """
    keys = {path_key(p) for p in paths}
    kept = []
    for path in paths:
        owner = _map_owner(path)
        if owner is not None and path_key(owner) in keys:
            log.warning("skipped %s: %s", path, _map_note(path, owner))
        else:
            kept.append(path)
    return kept


def _expand_one(entry: str) -> list[Path]:
    path = Path(entry).expanduser()
    problem = not_an_image_file(path)
    if problem and problem != "missing":
        raise InputError(f"{path}: {problem}; expected a TIFF file, a Zarr store or a folder")
    if not problem:
        if path.is_dir() and not is_zarr_path(path):
            found = [p for p in path.iterdir() if _is_image_name(p.name)]
            images = _usable(found)
            if not images:
                skipped = f" ({len(found)} skipped: see the warnings)" if found else ""
                raise InputError(f"{path}: folder contains no .tif, .tiff or .zarr images{skipped}")
            return sorted(images, key=lambda p: natural_key(p.name))
        return [path]
    if _GLOB_CHARS.search(entry):
        found = _glob(os.path.expanduser(entry))
        matches = _usable(found)
        if not matches:
            skipped = f" ({len(found)} skipped: see the warnings)" if found else ""
            raise InputError(f"{entry}: no files match this pattern{skipped}")
        return sorted(matches, key=natural_key)
    raise InputError(f"{path}: file not found")


def _is_image_name(name: str) -> bool:
    return not name.startswith(".") and name.lower().endswith(IMAGE_SUFFIXES)


def not_an_image_file(path: Path) -> str | None:
    """Say why ``path`` cannot be an image file or store, without opening it.

    Parameters
    ----------
    path : Path
        A path.

    Returns
    -------
    str or None
        ``"missing"``, ``"a symbolic link loop"``, ``"a dangling symbolic link"``, ``"a
        FIFO (named pipe), not a file"`` (sockets and devices alike), ``"a link to a
        folder that holds it"``; None for a regular file or a folder.
    """
    try:
        info = os.stat(path)
    except OSError as err:
        if err.errno == errno.ELOOP:
            return "a symbolic link loop"
        if os.path.islink(path):
            return "a dangling symbolic link"
        return "missing"
    mode = info.st_mode
    for test, kind in _SPECIAL_KINDS:
        if test(mode):
            return f"{kind}, not a file"
    if stat.S_ISDIR(mode) and os.path.islink(path):
        target = os.path.realpath(path)
        holder = os.path.realpath(path.parent)
        if holder == target or holder.startswith(target.rstrip(os.sep) + os.sep):
            return "a link to a folder that holds it"
    return None


_SPECIAL_KINDS = (
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def _usable(candidates: Iterable[Path]) -> list[Path]:
    """Drop (with a warning) what a folder or pattern found that is not an image."""
    kept = []
    for path in candidates:
        problem = not_an_image_file(path) or _sidecar_of(path)
        if problem and problem != "missing":
            log.warning("skipped %s: %s", path, problem)
        elif not problem:
            kept.append(path)
    return kept


def _map_owner(path: Path) -> Path | None:
    """Name the image a trust map ``<stem>.<map>.tif`` belongs to (existing or not)."""
    lower = path.name.lower()
    for map_name in TRUST_MAP_NAMES:
        ending = f".{map_name}.tif"
        if lower.endswith(ending) and len(lower) > len(ending):
            return path.with_name(path.name[: -len(ending)] + path.name[-4:])
    return None


def _map_note(path: Path, owner: Path) -> str:
    kind = path.name[len(owner.name) - 3 : -4]
    return f"the {kind} map of {owner.name} (written by decrappify predict)"


def _sidecar_of(path: Path) -> str | None:
    """Say which prediction a trust map was written beside, when that prediction exists."""
    owner = _map_owner(path)
    return _map_note(path, owner) if owner is not None and owner.is_file() else None


def _glob(pattern: str) -> list[Path]:
    """Match a pattern like :func:`glob.glob` (``**`` recursive) without following links.

    ``**`` never enters a link to a folder; hidden names match only a pattern part that
    starts with ``.``.
    """
    parts = Path(pattern).parts
    fixed = next((i for i, part in enumerate(parts) if _GLOB_CHARS.search(part)), len(parts))
    root = Path(*parts[:fixed]) if fixed else Path(".")
    rest = parts[fixed:]
    if not rest:
        return [root] if os.path.lexists(root) else []
    try:
        found = list(root.glob(str(Path(*rest))))
    except (OSError, ValueError):
        return []
    return [p for p in found if not _hidden_match(p, root, rest)]


def _hidden_match(path: Path, root: Path, pattern: tuple[str, ...]) -> bool:
    try:
        names = path.relative_to(root).parts
    except ValueError:
        return False
    allow_hidden = any(part.startswith(".") for part in pattern)
    return not allow_hidden and any(name.startswith(".") for name in names)


def check_output_path(
    out: str | Path,
    inputs: Iterable[str | Path | None] = (),
    *,
    is_folder: bool | None = None,
) -> Path:
    """Refuse an output that would clobber an input; create its folder if missing.

    ``out`` is either an output image (a name ending in ``.tif``/``.tiff``/``.zarr``) or
    an output folder (any other name, e.g. the ``--out`` folder of a batch). An image
    must not be an input, lie inside an input (e.g. inside an input ``.zarr``) or contain
    one (replacing it would delete the input); a folder must not be or lie inside an
    input, but may hold inputs beside the outputs. The folder that receives the output
    (the parent of an image, or the folder itself) is created if missing and must be
    writable.

    Parameters
    ----------
    out : str or Path
        The output image or folder.
    inputs : iterable of str or Path
        The input paths of the run (None entries and non-paths such as layer names are
        ignored).
    is_folder : bool or None
        Whether ``out`` is an output folder; None to decide from its name.

    Returns
    -------
    Path
        ``out`` as a Path.

    Raises
    ------
    OutputError
        When ``out`` clobbers an input as described, or the folder cannot be created or
        written.
    """
    out = Path(out).expanduser()
    if is_folder is None:
        is_folder = not out.name.lower().endswith(IMAGE_SUFFIXES)
    is_image = not is_folder
    sources = [
        (path_key(source), source)
        for source in (Path(item).expanduser() for item in inputs if item is not None)
        if os.path.lexists(source)
    ]
    key = path_key(out)
    if is_image:
        check_not_an_input(out, key, sources)
    else:
        check_not_an_input(out, key, [s for s in sources if not inside(s[0], key)])
    folder = out.parent if is_image else out
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputError(
            f"{folder}: cannot create the output folder ({err.strerror or err})"
        ) from err
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"{folder}: output folder is not writable")
    return out


def missing_folders(path: str | Path) -> list[Path]:
    """List the folders of ``path`` (itself included) that do not exist yet, deepest first.

    Parameters
    ----------
    path : str or Path
        A folder about to be created.

    Returns
    -------
    list of Path
        What ``mkdir(parents=True)`` would create; pass it to
        :func:`remove_empty_folders` to undo a run that wrote nothing.
    """
    path = Path(path).expanduser()
    missing = []
    for folder in (path, *path.parents):
        if os.path.lexists(folder):
            break
        missing.append(folder)
    return missing


def remove_empty_folders(folders: Iterable[Path]) -> None:
    """Remove the given folders, deepest first, as long as they are empty.

    Parameters
    ----------
    folders : iterable of Path
        Folders created by this run (from :func:`missing_folders`).
    """
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return


def check_free_space(path: str | Path, nbytes: int, what: str) -> None:
    """Refuse up front an output of ``nbytes`` bytes that the disk under ``path`` cannot hold.

    Parameters
    ----------
    path : str or Path
        The output (it and its folders need not exist yet).
    nbytes : int
        Bytes the output may take.
    what : str
        What is written, for the message (``"a 3000000x3000000 uint8 image"``).

    Raises
    ------
    OutputError
        When the file system holding ``path`` has less than ``nbytes`` free.
    """
    existing = next((p for p in (Path(path), *Path(path).parents) if p.exists()), Path("."))
    try:
        free = shutil.disk_usage(existing).free
    except OSError:
        return
    if nbytes > free:
        raise OutputError(
            f"{path}: {what} needs {format_bytes(nbytes)}, but its disk has only "
            f"{format_bytes(free)} free"
        )


def format_bytes(nbytes: float) -> str:
    """Format a byte count for people (``"9.0 TB"``, ``"512 MB"``).

    Parameters
    ----------
    nbytes : float
        Bytes.

    Returns
    -------
    str
        The size with a decimal unit.
    """
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(nbytes) < 1000 or unit == "TB":
            return f"{nbytes:.0f} {unit}" if unit == "B" else f"{nbytes:.1f} {unit}"
        nbytes /= 1000
    return f"{nbytes:.1f} PB"  # pragma: no cover
