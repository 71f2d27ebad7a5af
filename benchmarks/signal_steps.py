"""Ctrl-C at chosen steps of the main thread: does ``predict --resume`` still end cleanly?

A signal handler runs between two steps of the main thread, wherever it is; a few of those
steps are inside Python's thread machinery, where an exception raised there can leave a lock
held or a thread nobody wakes (see docs/robustness.md, "The one hang, found and fixed").
Waiting for a real signal to land there takes thousands of runs; this script puts it there.

Each run starts ``decrappify predict MODEL big.tif -o out --resume`` (a 96 x 64 image, 24
blocks, a model that sleeps ``--slow`` s per forward pass) through a driver that traces the
main thread from the first level-0 block on: at its K-th line step in ``threading``,
``queue``, ``concurrent.futures``, dask's scheduler, zarr's ``sync`` or decrappify's writer,
the driver calls the installed SIGINT handler with that step's frame, as the signal would.
The run is ok when it ends with exit 130 and no traceback; a run still alive 60 s after the
step dumps every thread's stack (``faulthandler``) and counts as a hang.

Usage::

    python benchmarks/signal_steps.py MODEL --random 30 --seed 23   # 30 random steps
    python benchmarks/signal_steps.py MODEL --steps 1,5,20 --at __exit__:add_done_callback
    python benchmarks/signal_steps.py MODEL --src /tmp/before/src --steps 1   # another tree

``MODEL`` is a x2 model folder (``bad_input_sweep.py`` makes one in its scratch folder).
``--at NAME:CALLER`` counts only the steps of functions named NAME called from CALLER.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

DRIVER = textwrap.dedent(
    """
    import atexit, faulthandler, os, signal, sys, time
    from decrappify.models.unet import SuperResolutionNet

    forward = SuperResolutionNet.forward

    def slow_forward(self, x):
        time.sleep(float(os.environ["SLOW_FORWARD"]))
        return forward(self, x)

    SuperResolutionNet.forward = slow_forward
    STEP = int(os.environ["SIGNAL_STEP"])
    AT = os.environ.get("SIGNAL_AT", "").split(":") if os.environ.get("SIGNAL_AT") else None
    FILES = ("threading.py", "queue.py", "concurrent/futures", "local_pipeline.py",
             "dask/local.py", "dask/threaded.py", "zarr/core/sync.py", "omezarr_write.py",
             "io/write.py", "io/_blocks.py", "io/chunks.py", "api/common.py",
             "predict/engine.py", "cli/_shell.py", "contextlib.py")
    state = {"count": 0, "at": None}

    def local(frame, event, arg):
        if event != "line" or state["at"] is not None:
            return local
        if AT and not (frame.f_code.co_name == AT[0] and frame.f_back is not None
                       and frame.f_back.f_code.co_name == AT[1]):
            return local
        state["count"] += 1
        if state["count"] == STEP:
            state["at"] = f"{frame.f_code.co_filename}:{frame.f_lineno} {frame.f_code.co_name}"
            sys.settrace(None)
            faulthandler.dump_traceback_later(60, exit=True)
            signal.getsignal(signal.SIGINT)(signal.SIGINT, frame)  # as the signal would
        return local

    def tracer(frame, event, arg):
        if state["at"] is None and any(f in frame.f_code.co_filename for f in FILES):
            return local
        return None

    from decrappify.io import omezarr_write

    blocks = omezarr_write.iter_blocks

    def traced_blocks(*args, **kwargs):
        sys.settrace(tracer)
        return blocks(*args, **kwargs)

    omezarr_write.iter_blocks = traced_blocks

    @atexit.register
    def _said():
        print(f"STEP {state['count']} at {state['at']}", file=sys.stderr, flush=True)

    from decrappify.cli import main

    sys.argv = ["decrappify", *sys.argv[1:]]
    main()
    """
)


def run_step(model: Path, step: int, folder: Path, args: argparse.Namespace) -> tuple[str, str]:
    """One run with the signal at ``step``; its outcome and where the signal came."""
    import numpy as np
    import tifffile

    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    image = np.random.default_rng(1).random((96, 64)) * 200
    tifffile.imwrite(folder / "big.tif", image.astype("uint8"))
    (folder / "driver.py").write_text(DRIVER)
    env = {**os.environ, "SIGNAL_STEP": str(step), "SIGNAL_AT": args.at or "",
           "SLOW_FORWARD": str(args.slow), "COLUMNS": "200"}  # fmt: skip
    if args.src is not None:
        env["PYTHONPATH"] = str(args.src.resolve())
    command = [sys.executable, "driver.py", "predict", str(model.resolve()), "big.tif", "-o",
               "out", "--tile", "32", "--chunk", "32", "--block", "32", "--device", "cpu",
               "--threads", "1", "-q", "--resume"]  # fmt: skip
    try:
        done = subprocess.run(
            command, cwd=folder, env=env, capture_output=True, text=True, timeout=300,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        return "hang", "no end in 300 s"
    said = next((line for line in done.stderr.splitlines() if line.startswith("STEP")), "")
    if done.returncode == 130 and "Traceback" not in done.stderr:
        return "ok", said
    if done.returncode == 0:
        return "no signal", said  # the run had fewer steps
    if "Timeout" in done.stderr:
        (folder.parent / f"hang-step{step}.txt").write_text(done.stderr)
        return "hang", f"stacks in {folder.parent / f'hang-step{step}.txt'}"
    return f"exit {done.returncode}", done.stderr[-300:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--steps", default="", help="comma-separated step numbers")
    parser.add_argument("--random", type=int, default=0, help="this many random steps")
    parser.add_argument("--top", type=int, default=40_000, help="largest random step")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--at", default="", metavar="NAME:CALLER")
    parser.add_argument("--slow", type=float, default=0.05, help="seconds per forward pass")
    parser.add_argument("--src", type=Path, default=None, help="source tree to test")
    parser.add_argument("--scratch", type=Path, default=None)
    args = parser.parse_args(argv)
    steps = [int(s) for s in args.steps.split(",") if s]
    rng = random.Random(args.seed)
    steps += sorted(rng.randrange(1, args.top) for _ in range(args.random))
    scratch = args.scratch or Path(tempfile.mkdtemp(prefix="decrappify-steps-"))
    counts: dict[str, int] = {}
    for step in steps:
        start = time.monotonic()
        outcome, note = run_step(args.model, step, scratch / f"step{step}", args)
        counts[outcome] = counts.get(outcome, 0) + 1
        print(f"step {step:6d} {outcome:10} {time.monotonic() - start:5.1f} s  {note}", flush=True)
    print(", ".join(f"{n} {outcome}" for outcome, n in counts.items()))
    return 0 if set(counts) <= {"ok", "no signal"} else 1


if __name__ == "__main__":
    sys.exit(main())
