"""Pair two lists of images by their names (predictions and ground truths, LR and HR).

Files are matched by stem, whatever order they were given or expanded in:
``--pred b.zarr --pred a.zarr --gt a.tif --gt b.tif`` scores ``a`` against ``a``. When the
stems differ by a part every name of a list shares (``pred_a``, ``pred_b`` against ``a``,
``b``; ``img1_sr`` against ``img1_gt``), that part is set aside first; files of one name
in folders of their own are told apart by their folders (``tune0-lr/img.tif`` against
``tune0-gt/img.tif``). Lists whose names
still do not match are refused with the names that have no partner: pairing by position
would score one image against another without a word. A single pair needs no names.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

from decrappify.errors import InputError
from decrappify.io.paths import image_stem

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
