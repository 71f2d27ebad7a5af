"""What the batch operations of the API share: per-file results, seeds and the batch loop."""

from __future__ import annotations

import logging
import time
import zlib
from collections.abc import Generator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from decrappify.errors import Cancelled, DecrappifyError, short_message
from decrappify.events import Progress

PathLike = str | Path
Format = Literal["tif", "zarr"]

log = logging.getLogger("decrappify")


@dataclass
class FileResult:
    """What happened to one input of a batch.

    Parameters
    ----------
    input : str
        The input path.
    output : str or None
        The output written, or None on failure.
    ok : bool
        Whether the input succeeded.
    error : str or None
        The one-line error when it failed.
    seconds : float
        Wall-clock time spent on it.
    info : dict
        Extra figures (shapes, pixels/s ...).
    """

    input: str
    output: str | None = None
    ok: bool = False
    error: str | None = None
    seconds: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form for JSON reports.

        Returns
        -------
        dict
            The fields.
        """
        return asdict(self)


def file_seed(seed: int, path: PathLike) -> int:
    """Seed of one file in a batch: the user seed and a checksum of the file's stem.

    The result does not depend on the order of the batch, and two files of the same
    shape do not receive the same noise.

    Parameters
    ----------
    seed : int
        The user's seed.
    path : str or Path
        The file.

    Returns
    -------
    int
        ``seed * 2**32 + crc32(stem)``: a non-negative seed unique to the file.
    """
    stem = Path(path).name.split(".")[0]
    return int(seed) * 2**32 + zlib.crc32(stem.encode())


def iter_batch(
    inputs: Sequence[PathLike],
    out_dir: PathLike,
    fmt: Format,
    work: Any,
) -> Generator[Progress, None, list[FileResult]]:
    """Run ``work(path, out_path)`` (a progress generator) on each input; one failure fails alone.

    Parameters
    ----------
    inputs : sequence of path
        Files, folders or globs (expanded with :func:`decrappify.io.expand_inputs`).
    out_dir : path
        Output folder; each output is ``out_dir/<stem>.<fmt>``.
    fmt : {"tif", "zarr"}
        Output format.
    work : callable
        ``work(path, out_path)`` returns a generator of progress events whose return
        value (a dict) is merged into the file's ``info``.

    Yields
    ------
    Progress
        The work's events, with ``phase`` set to the input's file name.

    Returns
    -------
    list of FileResult
        One per input, in order.
    """
    from decrappify.io import check_output_path, expand_inputs
    from decrappify.io.paths import missing_folders, remove_empty_folders

    paths = expand_inputs(inputs)
    out_dir = Path(out_dir)
    created = missing_folders(out_dir)
    check_output_path(out_dir, paths)
    try:
        return (yield from _run_batch(paths, out_dir, fmt, work))
    finally:
        remove_empty_folders(created)  # a batch that wrote nothing leaves no empty folder


def _run_batch(
    paths: list[Path], out_dir: Path, fmt: Format, work: Any
) -> Generator[Progress, None, list[FileResult]]:
    from decrappify.io import check_output_path, output_path_for

    results: list[FileResult] = []
    for index, path in enumerate(paths):
        out_path = output_path_for(path, out_dir, fmt)
        result = FileResult(input=str(path))
        start = time.perf_counter()
        try:
            check_output_path(out_path, paths)
            gen = work(path, out_path)
            try:
                while True:
                    try:
                        event = next(gen)
                    except StopIteration as stop:
                        result.info.update(stop.value or {})
                        break
                    yield replace(
                        event,
                        phase=path.name,
                        info={**event.info, "file_index": index, "n_files": len(paths)},
                    )
            finally:
                gen.close()
            result.output, result.ok = str(out_path), True
        except Cancelled:
            raise
        except DecrappifyError as err:
            result.error = str(err)
        except Exception as err:  # one bad input fails alone, whatever went wrong
            log.debug("%s failed", path, exc_info=True)
            result.error = f"{path}: failed with {type(err).__name__}: {short_message(err)}"
        result.seconds = time.perf_counter() - start
        results.append(result)
    return results
