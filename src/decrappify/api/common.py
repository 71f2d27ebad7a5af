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
    *,
    sidecars: Any = None,
    extra_inputs: Sequence[PathLike | None] = (),
    extra_outputs: Sequence[tuple[PathLike, str]] = (),
    prepare: Any = None,
    finish: Any = None,
) -> Generator[Progress, None, list[FileResult]]:
    """Run ``work(path, out_path)`` (a progress generator) on each input; one failure fails alone.

    Before any work, every output of the batch is planned and checked
    (:class:`decrappify.io.outputs.OutputPlan`): none may be an input (after links, ``.``
    and case), two may not be one file (two inputs with one stem, an input named like
    another's trust map), and every name must fit its file system. Then all of them are
    locked (:func:`decrappify.io.locks.lock_outputs`) until the batch ends, so a second
    run into the same outputs fails at once.

    When the batch is interrupted (Ctrl-C, SIGTERM, Cancel), the exception carries notes
    (``__notes__``) saying which inputs finished and whether the interrupted input's
    partial output was kept for ``--resume``.

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
    sidecars : callable or None
        ``sidecars(out_path)`` lists the other files written beside an output, as
        ``(path, what)`` pairs (the trust maps of a TIFF prediction).
    extra_inputs : sequence of path
        Other inputs of the run that no output may replace (the model).
    extra_outputs : sequence of (path, str)
        Other outputs of the run and what they are (``(report, "the --report")``).
    prepare : callable or None
        ``prepare()`` checks the other outputs further once the plan holds (e.g.
        :func:`check_report_target`), before anything is created.
    finish : callable or None
        ``finish(results)`` writes those other outputs once the inputs are done (while
        the outputs are still locked).

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
    from decrappify.io.locks import lock_outputs
    from decrappify.io.paths import missing_folders, remove_empty_folders

    paths = expand_inputs(inputs)
    out_dir = Path(out_dir)
    plan = plan_batch(paths, out_dir, fmt, sidecars)
    plan.add_inputs(extra_inputs)
    for path, what in extra_outputs:
        plan.add(path, what)
    plan.check()
    if prepare is not None:
        prepare()
    created = missing_folders(out_dir)
    check_output_path(out_dir, [*paths, *(p for p in extra_inputs if p is not None)])
    try:
        for path, _ in extra_outputs:
            check_output_path(path, (), is_folder=False)  # creates its folder
        with lock_outputs(plan.paths()):
            results = yield from _run_batch(paths, out_dir, fmt, work)
            if finish is not None:
                finish(results)
            return results
    finally:
        remove_empty_folders(created)  # a batch that wrote nothing leaves no empty folder


def plan_batch(paths: Sequence[Path], out_dir: Path, fmt: Format, sidecars: Any = None) -> Any:
    """List the outputs of a batch: ``out_dir/<stem>.<fmt>`` per input, and their sidecars.

    Parameters
    ----------
    paths : sequence of Path
        The expanded inputs.
    out_dir : Path
        The output folder.
    fmt : {"tif", "zarr"}
        Output format.
    sidecars : callable or None
        ``sidecars(out_path)`` lists the ``(path, what)`` written beside an output.

    Returns
    -------
    OutputPlan
        The plan (not yet checked).
    """
    from decrappify.io import output_path_for
    from decrappify.io.outputs import OutputPlan

    plan = OutputPlan()
    plan.add_inputs(paths)
    for path in paths:
        out_path = plan.add(output_path_for(path, out_dir, fmt), f"the output of {path}")
        for extra, what in sidecars(out_path) if sidecars is not None else ():
            plan.add(extra, f"the {what} of {path}")
    return plan


def _run_batch(
    paths: list[Path], out_dir: Path, fmt: Format, work: Any
) -> Generator[Progress, None, list[FileResult]]:
    from decrappify.io import output_path_for

    results: list[FileResult] = []
    for index, path in enumerate(paths):
        out_path = output_path_for(path, out_dir, fmt)
        result = FileResult(input=str(path))
        start = time.perf_counter()
        try:
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
        except (Cancelled, KeyboardInterrupt, GeneratorExit) as stop:
            _note_stop(stop, results, len(paths), out_path)
            raise
        except DecrappifyError as err:
            result.error = str(err)
        except Exception as err:  # one bad input fails alone, whatever went wrong
            log.debug("%s failed", path, exc_info=True)
            result.error = f"{path}: failed with {type(err).__name__}: {short_message(err)}"
        result.seconds = time.perf_counter() - start
        results.append(result)
    return results


def _note_stop(stop: BaseException, results: list[FileResult], total: int, out: Path) -> None:
    """Add to an interruption what finished and what a rerun with ``--resume`` picks up."""
    import os

    from decrappify.io.atomic import partial_path

    if isinstance(stop, GeneratorExit):
        return  # closed from outside: nobody reads notes
    done = [r for r in results if r.ok]
    names = ", ".join(Path(r.input).name for r in done[:10]) + (", ..." if len(done) > 10 else "")
    line = f"{len(done)} of {total} inputs finished" + (f" ({names})" if done else "")
    failed = len(results) - len(done)
    stop.add_note(line + (f", {failed} failed" if failed else ""))
    partial = partial_path(out)
    if os.path.lexists(partial):
        stop.add_note(
            f"the partial output {partial} is kept: run the same command again with "
            "--resume to finish it"
        )
    else:
        stop.add_note("nothing half-written was left behind")


def check_report_target(
    path: PathLike,
    what: str,
    *,
    overwrite: bool = False,
    resume: bool = False,
    kind: str = "predict",
) -> None:
    """Refuse, before any work, a report path that is a folder or someone else's file.

    An existing file is replaced only with ``overwrite``, or with ``resume`` when it is a
    JSON report of ``decrappify <kind>`` (a rerun of the same command).

    Parameters
    ----------
    path : path
        The report file.
    what : str
        The option, for messages (``"--report"``).
    overwrite, resume : bool
        The run's flags.
    kind : str
        The command whose report may be replaced on resume.

    Raises
    ------
    OutputError
        For a folder, or an existing file that may not be replaced.
    """
    import json
    import os

    from decrappify.errors import OutputError

    path = Path(path).expanduser()
    if path.is_dir():
        raise OutputError(f"{what} {path}: is a folder; give the report's file name")
    if not os.path.lexists(path) or overwrite:
        return
    if resume:
        try:
            if json.loads(path.read_text(encoding="utf-8")).get("command") == kind:
                return
        except (OSError, ValueError, AttributeError):
            pass
    raise OutputError(f"{what} {path}: already exists; pass --overwrite to replace it")
