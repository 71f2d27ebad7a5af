"""Pairing two lists of inputs (low-res with high-res images): by name, or in the order given.

``decrappify crappify --fit lr/ --hr hr/`` pairs ``lr/cell1.tif`` with ``hr/cell1.tif``
whatever the folders' order or format (``cell1.ome.zarr`` pairs with ``cell1.tif``). Only
files named one by one (``--fit a.tif --fit b.tif --hr c.tif --hr d.tif``) may be paired
in the order given when their names differ; folders and patterns whose names do not
match are refused, since their order says nothing about which image goes with which.
"""

from __future__ import annotations

import glob
from collections.abc import Sequence
from pathlib import Path

from decrappify.errors import InputError
from decrappify.io.paths import expand_inputs, image_stem, is_zarr_path

__all__ = ["pair_inputs"]


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
        One pair per image of ``first``, in its order: the image of ``second`` with the
        same name (:func:`~decrappify.io.paths.image_stem`), or, when both sides name
        their files one by one and as many, the image in the same position.

    Raises
    ------
    InputError
        When the names do not pair up one to one and the order cannot stand in for them
        (folders or patterns, or different counts): the message says how to give them.
    """
    one, two = expand_inputs(first), expand_inputs(second)
    by_name: dict[str, list[Path]] = {}
    for path in two:
        by_name.setdefault(image_stem(path), []).append(path)
    matches = [by_name.get(image_stem(path), []) for path in one]
    if len(one) == len(two) and all(len(m) == 1 for m in matches):
        return [(path, match[0]) for path, match in zip(one, matches, strict=True)]
    if len(one) == len(two) and all(_names_one_file(e) for e in (*first, *second)):
        return list(zip(one, two, strict=True))
    unmatched = [p.name for p, m in zip(one, matches, strict=True) if len(m) != 1]
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
