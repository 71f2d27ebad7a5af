"""Export a trained model for other tools: the door to :mod:`decrappify.export`.

The shells call these; the packaging itself (weights, generated architecture, rdf, test
tensors, bioimage.io's validation and test) lives in :mod:`decrappify.export`.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from typing import Any

from decrappify.api.common import PathLike
from decrappify.events import Progress, run_to_end
from decrappify.export import BioimageioExport, parse_people
from decrappify.export import iter_export_bioimageio as _iter_export

__all__ = ["BioimageioExport", "export_bioimageio", "iter_export_bioimageio"]


def iter_export_bioimageio(
    model: PathLike,
    out: PathLike,
    *,
    authors: Sequence[str] | None = None,
    maintainers: Sequence[str] | None = None,
    github_users: Sequence[str] | None = None,
    cite: Sequence[str] | None = None,
    license: str = "CC-BY-4.0",
    **options: Any,
) -> Generator[Progress, None, BioimageioExport]:
    """Write and test a bioimage.io package of ``model`` at ``out`` (a ``.zip``).

    ``authors``, ``maintainers`` (names, one per GitHub user), ``github_users``, ``cite``
    (text ending in a DOI or URL) and ``license`` (SPDX) are checked by
    :func:`decrappify.export.parse_people`; ``options`` are those of
    :func:`decrappify.export.iter_export_bioimageio` (``test_image``, ``name``,
    ``description``, ``weights``, ``test``, ``overwrite``, ``seed``).
    """
    people = parse_people(authors, maintainers, github_users, cite, license)
    return (yield from _iter_export(model, out, people=people, **options))


def export_bioimageio(model: PathLike, out: PathLike, **kwargs: Any) -> BioimageioExport:
    """Run :func:`iter_export_bioimageio` to the end (same arguments)."""
    result = run_to_end(iter_export_bioimageio(model, out, **kwargs))
    assert result is not None
    return result
