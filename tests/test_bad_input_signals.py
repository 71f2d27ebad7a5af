"""Signals, concurrent runs, full disks, long names: a clean state (issue 20.1, .7, .8, .10).

Each case runs the real command in a subprocess (a signal, a file size limit and a second
process cannot be had in-process). A slowed model (``SLOW_FORWARD`` seconds per forward
pass) gives the time to act in the middle of a run.
"""

from __future__ import annotations

import linecache
import os
import resource
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile

from _tiny import SLOW_DRIVER, em_model
from decrappify.cli._signals import interruptible
from decrappify.config.train import TrainConfig
from decrappify.io import read_image
from decrappify.io.outputs import name_limit
from decrappify.sample import synthetic_image
from test_bad_input_train import TINY

#: Options of a quick prediction in many blocks (each a file of its own).
SMALL = ["--tile", "32", "--chunk", "32", "--block", "32", "--device", "cpu", "--threads", "1"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A ×2 model, a driver script, and two images: one small, one of 24 blocks."""
    folder = tmp_path_factory.mktemp("signals")
    model = em_model(folder)
    (folder / "driver.py").write_text(SLOW_DRIVER)
    for name, shape in (("small.tif", (32, 32)), ("big.tif", (96, 64))):
        tifffile.imwrite(folder / name, np.asarray(synthetic_image("em", shape, seed=1).data))
    return folder, model


def _start(setup, tmp_path, *args, slow="0.2", limit=None):
    folder, _ = setup
    command = [sys.executable, str(folder / "driver.py"), *map(str, args)]
    env = {**os.environ, "SLOW_FORWARD": slow, "COLUMNS": "200"}

    def limited():
        # as from a terminal, also under nohup or '&' (which ignore SIGHUP/SIGINT, and the
        # command keeps a signal ignored that it inherits ignored)
        for signum in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM):
            signal.signal(signum, signal.SIG_DFL)
        if limit is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return subprocess.Popen(
        command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=limited,
    )  # fmt: skip


def _wait_for(path: Path, child: subprocess.Popen, seconds: float = 180) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert child.poll() is None, child.communicate()
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def _finish(child: subprocess.Popen, seconds: float = 180) -> tuple[int, str]:
    try:
        _, err = child.communicate(timeout=seconds)
    except subprocess.TimeoutExpired:
        child.kill()
        raise
    return child.returncode, " ".join(err.split())


#: The signal comes while the main thread waits, inside ``Thread.start``, for the first
#: thread of a pool that it starts (dask's own pool, at the first block of a prediction):
#: that thread sends it to the main thread before it runs. Raised there, the interrupt left
#: a thread its pool never booked, and Python's exit waited for it forever (issue 20: the
#: one hang of the sweep, ``predict --resume`` stopped by Ctrl-C at its first block).
LATE_POOL_THREAD = textwrap.dedent(
    """
    import signal, threading, time
    from concurrent.futures import thread as futures_thread

    start, bootstrap = threading.Thread.start, threading.Thread._bootstrap
    sent = []

    def marked_start(self):
        self.from_main = threading.current_thread() is threading.main_thread()
        start(self)

    def late_bootstrap(self):
        if not sent and self._target is futures_thread._worker and self.from_main:
            sent.append(self.name)
            signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)
            time.sleep(0.1)  # the main thread waits in Thread.start meanwhile
        bootstrap(self)

    threading.Thread.start, threading.Thread._bootstrap = marked_start, late_bootstrap
    """
)


def _run_script(code: str, cwd: Path, seconds: float = 60) -> tuple[int, str]:
    """Run ``python -c code`` with Ctrl-C at its default; fail if it does not end."""
    child = subprocess.Popen(
        [sys.executable, "-c", code], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env={**os.environ, "SLOW_FORWARD": "0.2", "COLUMNS": "200"},
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    try:
        _, err = child.communicate(timeout=seconds)
    except subprocess.TimeoutExpired:
        child.kill()  # SIGKILL: a stopping command ignores further signals
        _, err = child.communicate()
        pytest.fail(f"no exit {seconds} s after the signal (a thread nobody wakes?)\n{err}")
    return child.returncode, " ".join(err.split())


def test_a_signal_while_a_pool_starts_its_thread_does_not_hang_the_exit(tmp_path):
    """The interrupt is raised once the pool has booked its thread, and the process ends."""
    code = LATE_POOL_THREAD + textwrap.dedent(
        """
        import sys
        import dask.array as da
        from decrappify.cli._signals import Interrupted, install_signal_handlers

        install_signal_handlers()
        slow = da.ones(4, chunks=4).map_blocks(lambda b: time.sleep(2) or b)
        try:
            slow.compute(scheduler="threads")
        except Interrupted as stop:
            time.sleep(1)  # a clean-up: the pool's thread runs meanwhile
            print(f"interrupted by {stop.signum} after starting {sent}", file=sys.stderr)
            sys.exit(130)
        """
    )
    returncode, err = _run_script(code, tmp_path)
    assert returncode == 130, err
    assert err.startswith("interrupted by 2 after starting ['ThreadPoolExecutor-"), err


def _verdicts(code, run, line: str = "") -> list[bool]:
    """``interruptible`` at each step of ``code`` (at ``line``, if given) while ``run()`` runs."""
    verdicts = []

    def trace(frame, event, arg):
        if frame.f_code is code:
            if not line or line in linecache.getline(frame.f_code.co_filename, frame.f_lineno):
                verdicts.append(interruptible(frame))
            return trace
        return None

    sys.settrace(trace)
    try:
        run()
    finally:
        sys.settrace(None)
    return verdicts


def test_a_signal_is_raised_only_where_the_thread_machinery_unwinds():
    """Inside ``Condition.__exit__`` an interrupt left the lock held (a pool's worker then
    waited forever for its task's future); in ``Condition.wait`` it must still stop the wait."""
    condition = threading.Condition()

    def enter_and_wait():
        with condition:
            condition.wait(0.01)

    exits = _verdicts(threading.Condition.__exit__.__code__, enter_and_wait)
    waits = _verdicts(threading.Condition.wait.__code__, enter_and_wait, "waiter.acquire(")
    assert exits and not any(exits)
    assert waits and all(waits)
    assert interruptible(sys._getframe()) and interruptible(None)


def test_ctrl_c_at_the_first_block_of_a_resumable_prediction_ends(setup, tmp_path):
    """Issue 20: ``predict --resume`` stopped at its first block printed its message and hung."""
    folder, model = setup
    args = [model, folder / "big.tif", "-o", "out", *SMALL, "-q", "--resume"]
    driver = LATE_POOL_THREAD + SLOW_DRIVER.replace(
        "sys.argv[1:]", repr(["predict", *map(str, args)])
    )
    returncode, err = _run_script(driver, tmp_path)
    assert returncode == 130, err
    assert (
        "interrupted (Ctrl-C); 0 of 1 inputs finished; the partial output out/.big.zarr.partial "
        "is kept: run the same command again with --resume to finish it"
    ) in err
    assert "Traceback" not in err and "Exception ignored" not in err


def _hidden(folder: Path) -> list[str]:
    return (
        sorted(p.name for p in folder.iterdir() if p.name.startswith("."))
        if folder.exists()
        else []
    )


@pytest.mark.slow
@pytest.mark.parametrize(("signum", "code", "words"), [
    (signal.SIGTERM, 143, "stopped by SIGTERM"),
    (signal.SIGHUP, 129, "stopped by SIGHUP (the terminal or ssh session closed)"),
])  # fmt: skip
def test_sigterm_and_sighup_stop_predict_as_ctrl_c_does(setup, tmp_path, signum, code, words):
    """Item 7: exit 143/129 left .partial files until the next run."""
    folder, model = setup
    child = _start(setup, tmp_path, "predict", model, folder / "small.tif", folder / "big.tif",
                   "-o", "out", *SMALL, "-q")  # fmt: skip
    _wait_for(tmp_path / "out" / ".big.zarr.partial" / "0", child)
    child.send_signal(signum)
    returncode, err = _finish(child)
    assert returncode == code, err
    assert f"error: {words}" in err and "Traceback" not in err
    assert "1 of 2 inputs finished (small.tif); nothing half-written was left behind" in err
    assert _hidden(tmp_path / "out") == []  # no .partial, no lock file
    assert read_image(tmp_path / "out" / "small.zarr").shape == (64, 64)


@pytest.mark.slow
def test_a_stop_with_resume_says_the_partial_is_kept_and_how_to_finish(setup, tmp_path):
    """Item 7: SIGINT with --resume said "nothing half-written was left behind"."""
    folder, model = setup
    args = ["predict", model, folder / "big.tif", "-o", "out", *SMALL, "-q", "--resume"]
    child = _start(setup, tmp_path, *args)
    _wait_for(tmp_path / "out" / ".big.zarr.partial" / ".decrappify-resume" / "done.txt", child)
    child.send_signal(signal.SIGINT)
    returncode, err = _finish(child)
    assert returncode == 130, err
    assert (
        "interrupted (Ctrl-C); 0 of 1 inputs finished; the partial output out/.big.zarr.partial "
        "is kept: run the same command again with --resume to finish it"
    ) in err
    assert "nothing half-written" not in err
    # the output and the by-product the trust maps of the finished blocks need
    assert _hidden(tmp_path / "out") == [".big.zarr.degraded.partial", ".big.zarr.partial"]
    returncode, err = _finish(_start(setup, tmp_path, *args, slow="0"))
    assert returncode == 0, err
    assert _hidden(tmp_path / "out") == [] and read_image(tmp_path / "out" / "big.zarr").shape == (
        192,
        128,
    )


@pytest.mark.slow
def test_sigterm_stops_crappify_to_zarr_cleanly(setup, tmp_path):
    folder, _ = setup
    big = tmp_path / "hr.tif"
    tifffile.imwrite(big, np.asarray(synthetic_image("em", (6, 1024, 1024), seed=2).data))
    child = _start(setup, tmp_path, "crappify", big, "-o", "out", "-f", "zarr", "-q")
    _wait_for(tmp_path / "out" / ".hr.zarr.partial", child)
    child.send_signal(signal.SIGTERM)
    returncode, err = _finish(child)
    assert returncode == 143 and "stopped by SIGTERM" in err, err
    assert not (tmp_path / "out").exists() or _hidden(tmp_path / "out") == []


@pytest.mark.slow
def test_a_second_run_into_the_same_output_fails_at_once(setup, tmp_path):
    """Item 1: two --overwrite runs into one --out corrupted the first one's output."""
    folder, model = setup
    tifffile.imwrite(tmp_path / "big.tif", np.asarray(synthetic_image("em", (96, 64), seed=7).data))
    first = _start(setup, tmp_path, "predict", model, folder / "big.tif", "-o", "out", *SMALL, "-q",
                   "--overwrite", slow="5")  # fmt: skip
    _wait_for(tmp_path / "out" / ".big.zarr.partial" / "0", first)
    second = _start(setup, tmp_path, "predict", model, "big.tif", "-o", "out", *SMALL, "-q",
                    "--overwrite", slow="0")  # fmt: skip
    returncode, err = _finish(second)
    assert first.poll() is None, "the first run ended: no overlap to test"
    assert returncode == 1, err
    assert "out/big.zarr: another decrappify run is writing this output" in err
    assert "Traceback" not in err
    first.send_signal(signal.SIGTERM)  # the first run was undisturbed: stop it cleanly
    returncode, err = _finish(first)
    assert returncode == 143, err
    assert _hidden(tmp_path / "out") == [] and not (tmp_path / "out" / "big.zarr").exists()


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["zarr", "tif"])
def test_a_file_size_limit_is_one_line_and_leaves_nothing(setup, tmp_path, fmt):
    """Item 8: ulimit -f gave a raw OSError [Errno 27] and left .partial files."""
    folder, model = setup
    child = _start(setup, tmp_path, "predict", model, folder / "big.tif", "-o", "out", "-f", fmt,
                   *SMALL, "-q", slow="0", limit=600)  # fmt: skip
    returncode, err = _finish(child)
    assert returncode == 1, err
    assert f"out/big.{fmt}: cannot write it: the file is larger than this process may write" in err
    assert "ulimit -f" in err and "Traceback" not in err and "Errno" not in err
    assert not (tmp_path / "out").exists() or _hidden(tmp_path / "out") == []


@pytest.mark.slow
def test_a_file_size_limit_while_training_or_exporting_is_one_line(setup, tmp_path):
    """Item 8: a SafetensorError traceback (train), a torch enforce-fail (export)."""
    folder, model = setup
    (tmp_path / "tiny.yaml").write_text(TrainConfig.validate_dict(TINY).to_yaml())
    for i in range(3):
        tifffile.imwrite(
            tmp_path / f"hr{i}.tif", np.asarray(synthetic_image("em", (96, 96), seed=i).data)
        )
    args = ["train", "--hr", "hr0.tif", "hr1.tif", "hr2.tif", "-o", "run", "-c", "tiny.yaml", "-q"]
    returncode, err = _finish(_start(setup, tmp_path, *args, slow="0", limit=100_000))
    assert returncode == 1, err
    assert "cannot write it: the file is larger than this process may write" in err
    assert "Traceback" not in err and "SafetensorError" not in err
    child = _start(setup, tmp_path, "export", model, "--bioimageio", "m.zip", "--no-test", "-q",
                   slow="0", limit=20_000)  # fmt: skip
    returncode, err = _finish(child)
    assert returncode == 1, err
    assert "m.zip: cannot write it: the file is larger" in err and "enforce fail" not in err
    assert _hidden(tmp_path) == []


def test_a_name_too_long_for_its_temporaries_works_or_is_refused_up_front(bad, setup):
    """Item 10: a 246-character input name failed with a raw OSError [Errno 36]."""
    folder, model = setup
    stem = "n" * (name_limit(bad.folder) - 9)  # <stem>.zarr fits, .<stem>.zarr.partial does not
    bad.tif(f"{stem}.tif", size=32)
    fast = ["--tile", "32", "--device", "cpu", "--threads", "1", "-q"]
    result = bad.run("predict", model, f"{stem}.tif", "-o", "out", *fast)
    assert result.exit_code == 0, result.output
    assert read_image(bad.path("out") / f"{stem}.zarr").shape == (64, 64)
    result = bad.run("predict", model, f"{stem}.tif", "-o", "tifs", "-f", "tif", *fast)
    bad.assert_clean_failure(result, f"tifs/{stem}.consistency.tif: the name is")
    assert "its file system allows" in bad.text_of(result) and not bad.path("tifs").exists()
