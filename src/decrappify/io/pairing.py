"""Pair two lists of images by their names (predictions and ground truths, LR and HR).

Files are matched by stem, whatever order they were given or expanded in:
``--pred b.zarr --pred a.zarr --gt a.tif --gt b.tif`` scores ``a`` against ``a``. When the
stems differ by a part every name of a list shares (``pred_a``, ``pred_b`` against ``a``,
``b``; ``img1_sr`` against ``img1_gt``), that part is set aside first; files of one name
in folders of their own are told apart by their folders (``tune0-lr/img.tif`` against
``tune0-gt/img.tif``). Lists whose names
still do not match are refused with the names that have no partner: pairing by position
would score one image against another without a word. A single pair needs no names.

:func:`pair_inputs` pairs what a user gave for two options (files, folders, patterns: LR
and HR images of ``crappify --fit``): by name as above, or, when both options name their
files one by one and as many (``--fit a.tif --fit b.tif --hr c.tif --hr d.tif``), in the
order given.
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Sequence
from pathlib import Path

from decrappify.errors import InputError
from decrappify.io.paths import expand_inputs, image_stem, is_zarr_path

__all__ = ["pair_by_name", "pair_inputs"]

#: Characters where a shared prefix or suffix of names may end.
_SEPARATORS = "_-. /"


def pair_by_name(
    first: Sequence[Path], second: Sequence[Path], labels: tuple[str, str], what: str
) -> list[Path]:
    """Order ``second`` so that its i-th file is the partner of ``first[i]``.

    Parameters
    ----------
    first, second : sequence of Path
        The two lists (same length).
    labels : tuple of str
        Their options, for messages (``("--pred", "--gt")``).
    what : str
        What a file of ``first`` is, for messages (``"prediction"``).

    Returns
    -------
    list of Path
        ``second`` in the order of ``first``.

    Raises
    ------
    InputError
        For lists of different lengths, repeated names, or names that do not match.
    """
    a, b = labels
    if len(second) != len(first):
        raise InputError(
            f"{b}: got {len(second)} images for {len(first)} {what}s; give one per {what} "
            f"(they are paired by name)"
        )
    if len(first) <= 1:
        return list(second)
    for keys in (_stems, _distinct_parts, _folder_stems, _distinct_folder_stems):
        ours, theirs = keys(first), keys(second)
        if _unique(ours) and _unique(theirs) and set(ours) == set(theirs):
            where = {key: i for i, key in enumerate(theirs)}
            return [second[where[key]] for key in ours]
    ours, theirs = _stems(first), _stems(second)
    alone = [p.name for p, k in zip(first, ours, strict=True) if k not in theirs]
    others = [p.name for p, k in zip(second, theirs, strict=True) if k not in ours]
    raise InputError(
        f"{a} and {b} name different images ({a} {_listed(alone or [p.name for p in first])}; "
        f"{b} {_listed(others or [p.name for p in second])}): files are paired by name, so give "
        f"each {what} the name of its partner (or evaluate one pair per run)"
    )


def _listed(names: list[str], limit: int = 4) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _unique(keys: list[str]) -> bool:
    return len(set(keys)) == len(keys)


def _stems(paths: Sequence[Path]) -> list[str]:
    return [image_stem(p) for p in paths]


def _folder_stems(paths: Sequence[Path]) -> list[str]:
    """``folder/stem``: for files of one name in folders of their own (``tune0-lr/img.tif``)."""
    return [f"{Path(p).parent.name}/{image_stem(p)}" for p in paths]


def _distinct_folder_stems(paths: Sequence[Path]) -> list[str]:
    return _distinct_parts(paths, _folder_stems(paths))


def _distinct_parts(paths: Sequence[Path], stems: list[str] | None = None) -> list[str]:
    """Strip the stems of the prefix and suffix (ending at a separator) they all share."""
    stems = _stems(paths) if stems is None else stems
    prefix = _cut_at_separator(os.path.commonprefix(stems))
    reversed_suffix = os.path.commonprefix([s[::-1] for s in stems])
    suffix = _cut_at_separator(reversed_suffix)[::-1]
    return [s[len(prefix) : len(s) - len(suffix)] for s in stems]


def _cut_at_separator(shared: str) -> str:
    """Cut ``shared`` after its last separator (nothing when it has none)."""
    match = re.match(rf"^(.*[{re.escape(_SEPARATORS)}])", shared)
    return match.group(1) if match else ""


def pair_inputs(
    first: Sequence[str | Path],
    second: Sequence[str | Path],
    *,
    labels: tuple[str, str] = ("--fit", "--hr"),
) -> list[tuple[Path, Path]]:
    """Pair the images of two lists of inputs (files, folders or glob patterns).

    Parameters
    ----------
    first, second : sequence of path
        What the user gave for each side.
    labels : (str, str)
        The options' names, for messages.

    Returns
    -------
    list of (Path, Path)
        One pair per image of ``first``, in its order: the image of ``second`` of the
        same name (:func:`pair_by_name`), or, when both sides name their files one by
        one and as many, the image in the same position.

    Raises
    ------
    InputError
        When the names do not pair up one to one and the order cannot stand in for them
        (folders or patterns, or different counts): the message says how to give them.
    """
    one, two = expand_inputs(first), expand_inputs(second)
    if len(one) == len(two):
        try:
            return list(zip(one, pair_by_name(one, two, labels, "image"), strict=True))
        except InputError:
            if all(_names_one_file(e) for e in (*first, *second)):
                return list(zip(one, two, strict=True))
    stems = {image_stem(path) for path in two}
    unmatched = [p.name for p in one if image_stem(p) not in stems]
    named = f"; no {labels[1]} image is named like {', '.join(unmatched[:3])}" if unmatched else ""
    raise InputError(
        f"{labels[1]}: cannot pair {len(two)} image(s) with {len(one)} {labels[0]} image(s) by "
        f"name{named}; name each pair alike (lr/cell1.tif and hr/cell1.tif, folders or "
        f"patterns then pair by name), or repeat {labels[0]} and {labels[1]} before each file, "
        "in the same order"
    )


def _names_one_file(entry: str | Path) -> bool:
    """Whether an input names one image file itself (not a folder nor a pattern)."""
    path = Path(entry).expanduser()
    if glob.has_magic(str(entry)) and not path.exists():
        return False
    return path.is_file() or is_zarr_path(path)
