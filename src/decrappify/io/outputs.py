"""A run's outputs, planned before any work: never an input, never twice, names that fit.

Every command lists what it will write (the images of a batch, their trust maps, reports,
configs) in an :class:`OutputPlan` before it reads a pixel. :meth:`OutputPlan.check`
refuses, in one line naming the files:

* an output that is an input, lies inside one or holds one, after symbolic links, ``.``
  and ``..`` and, on case-insensitive file systems (macOS, Windows), letter case;
* two outputs of the run that are one file: two inputs with one stem (``d1/x.tif`` and
  ``d2/x.tif``, ``x.tif`` and ``x.ome.tif``), an input named like another's trust map
  (``x.consistency.tif``);
* a name longer than its file system allows.

Paths are compared by :func:`path_key`. The hidden temporaries beside an output
(``.<name>.partial``, ``.<name>.replaced``) are named by :func:`hidden_sibling`, which
shortens them with a digest when the full name would be too long.
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from decrappify.errors import OutputError

#: Longest file name (in bytes) when the file system does not say.
DEFAULT_NAME_MAX = 255


def name_limit(folder: str | Path) -> int:
    """Longest file name, in bytes, that the file system under ``folder`` accepts.

    Parameters
    ----------
    folder : str or Path
        A folder (it need not exist yet: its nearest existing ancestor is asked).

    Returns
    -------
    int
        ``PC_NAME_MAX`` there, or 255 when the system does not say.
    """
    existing = _existing_ancestor(Path(folder))
    try:
        return int(os.pathconf(existing, "PC_NAME_MAX"))
    except (OSError, ValueError, AttributeError):
        return DEFAULT_NAME_MAX


def hidden_sibling(path: str | Path, tag: str) -> Path:
    """Name the hidden file beside ``path`` that holds its temporary: ``.<name>.<tag>``.

    When that name would be longer than the file system allows, the output's name is cut
    and a digest of the full name keeps it unique: ``.<start of name>~<digest>.<tag>``.

    Parameters
    ----------
    path : str or Path
        The output.
    tag : str
        ``"partial"``, ``"replaced"`` ...

    Returns
    -------
    Path
        The sibling path (same folder, so a rename never crosses file systems).
    """
    path = Path(path)
    name = f".{path.name}.{tag}"
    limit = name_limit(path.parent)
    if len(os.fsencode(name)) <= limit:
        return path.with_name(name)
    digest = hashlib.sha256(os.fsencode(path.name)).hexdigest()[:16]
    room = limit - len(os.fsencode(f".~{digest}.{tag}"))
    start = path.name
    while len(os.fsencode(start)) > room:
        start = start[:-1]
    return path.with_name(f".{start}~{digest}.{tag}")


def path_key(path: str | Path) -> str:
    """Identity of a path for comparisons: symbolic links, ``.`` and ``..`` resolved.

    On a case-insensitive file system the key is also case-folded, so ``A.tif`` and
    ``a.tif`` are one file there (and two on Linux).

    Parameters
    ----------
    path : str or Path
        Any path; it need not exist.

    Returns
    -------
    str
        The key.
    """
    resolved = os.path.realpath(os.path.expanduser(os.fspath(path)))
    if _case_insensitive(str(_existing_ancestor(Path(resolved)))):
        return os.path.normcase(resolved).casefold()
    return resolved


def _existing_ancestor(path: Path) -> Path:
    return next((p for p in (path, *path.parents) if p.exists()), Path("."))


@functools.lru_cache(maxsize=64)
def _case_insensitive(folder: str) -> bool:
    """Whether the file system holding ``folder`` ignores letter case in names."""
    if os.name == "nt":
        return True
    for path in (Path(folder), *Path(folder).parents):
        name = path.name
        if name != name.swapcase():
            other = path.with_name(name.swapcase())
            try:
                return other.exists() and os.path.samefile(path, other)
            except OSError:
                return False
    return False


def inside(key: str, container: str) -> bool:
    """Whether the path keyed ``key`` lies strictly inside the one keyed ``container``."""
    return key.startswith(container.rstrip(os.sep) + os.sep)


@dataclass(frozen=True)
class Planned:
    """One output of a run.

    Parameters
    ----------
    path : Path
        Where it will be written.
    what : str
        What it is, for messages (``"the prediction of d1/x.tif"``, ``"--report"``).
    """

    path: Path
    what: str


@dataclass
class OutputPlan:
    """Everything a run will write, checked against its inputs and itself before any work.

    Parameters
    ----------
    inputs : list of Path
        The run's input files and stores (models, images, configs).
    outputs : list of Planned
        What it will write.
    """

    inputs: list[Path] = field(default_factory=list)
    outputs: list[Planned] = field(default_factory=list)

    def add(self, path: str | Path, what: str) -> Path:
        """Plan one more output; returns its path."""
        path = Path(path).expanduser()
        self.outputs.append(Planned(path, what))
        return path

    def add_inputs(self, paths: Iterable[str | Path | None]) -> None:
        """Add input paths (None entries and names that are not files are ignored)."""
        for item in paths:
            if item is not None and os.path.lexists(Path(item).expanduser()):
                self.inputs.append(Path(item).expanduser())

    def paths(self) -> list[Path]:
        """List the planned output paths, in order."""
        return [item.path for item in self.outputs]

    def check(self) -> None:
        """Refuse outputs that clobber an input, each other, or have names too long.

        Raises
        ------
        OutputError
            One line naming the output, what it is, and the input or other output it
            meets; the message never suggests ``--overwrite`` for these.
        """
        for item in self.outputs:
            check_name_length(item.path)
        sources = [(path_key(p), p) for p in self.inputs]
        keyed = sorted(((path_key(o.path), o) for o in self.outputs), key=lambda kv: kv[0])
        for key, item in keyed:
            check_not_an_input(item.path, key, sources, what=item.what)
        for (key_a, a), (key_b, b) in zip(keyed, keyed[1:], strict=False):
            if key_a == key_b:
                raise OutputError(
                    f"{b.path}: {a.what} and {b.what} would both be written here; rename one "
                    "of them, or run them separately into different output folders"
                )
            if inside(key_b, key_a):
                raise OutputError(
                    f"{b.path}: {b.what} would be written inside {a.path}, {a.what}; choose "
                    "another name"
                )


def check_name_length(path: Path) -> None:
    """Refuse a path whose file name (or its temporary) the file system cannot hold.

    Parameters
    ----------
    path : Path
        An output.

    Raises
    ------
    OutputError
        ``<path>: the name is 258 bytes long, its file system allows 255; choose a
        shorter name (or rename the input)``.
    """
    size, limit = len(os.fsencode(path.name)), name_limit(path.parent)
    if size > limit:
        raise OutputError(
            f"{path}: the name is {size} bytes long, its file system allows {limit}; "
            "choose a shorter name (or rename the input it comes from)"
        )


def check_not_an_input(
    out: Path, key: str, sources: Iterable[tuple[str, Path]], *, what: str = "output"
) -> None:
    """Refuse an output that is an input, lies inside one, or holds one.

    Parameters
    ----------
    out : Path
        The output.
    key : str
        Its :func:`path_key`.
    sources : iterable of (str, Path)
        The inputs with their keys.
    what : str
        What the output is, for the message.

    Raises
    ------
    OutputError
        Naming the output and the input.
    """
    for source_key, source in sources:
        if source_key == key:
            raise OutputError(f"{out}: {what} would overwrite the input {source}")
        if inside(key, source_key):
            raise OutputError(
                f"{out}: {what} lies inside the input {source}; choose an output outside it"
            )
        if inside(source_key, key):
            raise OutputError(f"{out}: {what} would overwrite the input {source} inside it")
