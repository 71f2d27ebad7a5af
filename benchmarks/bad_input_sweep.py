"""Sweep: the bad-input cases of issue 20, run through the real CLI, each judged in one word.

Every case sets up a scratch folder (a tiny ×2 model, small TIFF/OME-Zarr images), runs
the CLI's ``main`` in a subprocess through a driver script (with a signal, a second
process, a file size limit or a full disk where the case needs one) and judges the outcome:

* ``data loss``: an input or a file the user owns was changed or removed, or an output
  reported as written is unreadable;
* ``silent nonsense``: exit 0 (or "ok") for a wrong result (two inputs into one output,
  a prediction scored against another image, series 0 of a multi-series file);
* ``traceback``: a Python traceback or a raw library error (``[Errno 27]``,
  ``ValidationError``, ``enforce fail``) instead of one line;
* ``hang``: no end within the case's time limit;
* ``leftover``: ``.partial``/lock files left where nothing is resumable;
* ``unclear``: refused, but the message does not name what the case needs (the file,
  the option that helps);
* ``ok``: what the issue asks for.

The cases are those issue 20 lists, reconstructed from its text (six families). Run it
against another source tree (``--src /path/to/src``) to compare releases; ``--markdown``
prints the family table for ``docs/robustness.md``. ENOSPC cases need root (they mount a
small tmpfs) and are skipped otherwise.

Usage: python benchmarks/bad_input_sweep.py [--src DIR] [--scratch DIR] [--only SUBSTRING ...]
       [--json OUT.json] [--markdown] [--repeat N] [--jitter SECONDS]

With ``--only`` and an existing ``--json`` file, the cases run replace their rows in it (a
rerun of a few cases after a fix) and ``--markdown`` prints the table of the whole file.
``--repeat N`` runs each case N times (a case's row is then ok only if every run was, and
its note counts the outcomes); ``--jitter S`` sends each signal a random 0 to S seconds
after the moment the case waits for, so that repeats hit different points of the run.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import random
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

FAMILIES = {
    "outputs": "Outputs: collisions, reports over inputs, locks",
    "inputs": "Odd inputs: loops, FIFOs, series, dtypes, pairing",
    "models": "Models: swapped weights, damaged metadata",
    "signals": "Signals: SIGTERM, SIGHUP, SIGINT with --resume",
    "disk": "Full disks, file size limits, long names",
    "messages": "Messages and options",
}
OUTCOMES = ("ok", "unclear", "leftover", "traceback", "hang", "silent nonsense", "data loss")
RAW = re.compile(
    r"Traceback|\[Errno \d+\]|ValidationError|enforce fail|SafetensorError|RuntimeError:"
)
DRIVER = textwrap.dedent(
    """
    import faulthandler, os, signal, sys, time
    from decrappify.models.unet import SuperResolutionNet

    faulthandler.register(signal.SIGUSR1, all_threads=True)  # the sweep's stacks of a hang

    forward = SuperResolutionNet.forward

    def slow_forward(self, x):
        time.sleep(float(os.environ.get("SLOW_FORWARD", "0")))
        return forward(self, x)

    SuperResolutionNet.forward = slow_forward
    from decrappify.cli import main

    if __name__ == "__main__":  # dask's worker processes import this script again
        sys.argv = ["decrappify", *sys.argv[1:]]
        main()
    """
)
FAST = ["--tile", "32", "--device", "cpu", "--threads", "1", "-q"]
BLOCKS = ["--chunk", "32", "--block", "32"]


@dataclass
class Run:
    code: int | None
    out: str
    err: str
    seconds: float
    hung: bool = False
    stacks: str = ""

    @property
    def text(self) -> str:
        return " ".join((self.out + " " + self.err).split())


@dataclass
class Case:
    family: str
    name: str
    func: Callable[[Sweep, Path], tuple[str, str]]


@dataclass
class Sweep:
    src: Path | None
    scratch: Path
    model: Path = field(default=Path())
    results: list[dict] = field(default_factory=list)
    jitter: float = 0.0
    rng: random.Random = field(default_factory=lambda: random.Random(0))

    # ------------------------------------------------------------------ running commands

    def env(self, **extra: str) -> dict[str, str]:
        env = {**os.environ, "COLUMNS": "200", **extra}
        if self.src is not None:
            env["PYTHONPATH"] = str(self.src)
        return env

    def start(self, cwd: Path, *args, slow: str = "0", limit: int | None = None):
        def limited():
            # as from a terminal: a sweep started with nohup or '&' ignores SIGHUP/SIGINT,
            # and the command keeps a signal ignored that it inherits ignored
            for signum in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM):
                signal.signal(signum, signal.SIG_DFL)
            if limit is not None:
                resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

        command = [sys.executable, str(self.scratch / "driver.py"), *map(str, args)]
        return subprocess.Popen(
            command,
            cwd=cwd,
            env=self.env(SLOW_FORWARD=slow),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=limited,
            start_new_session=True,
        )

    def finish(self, child, timeout: float = 240) -> Run:
        start = time.monotonic()
        try:
            out, err = child.communicate(timeout=timeout)
            return Run(child.returncode, out, err, time.monotonic() - start)
        except subprocess.TimeoutExpired:
            # ask the driver for every thread's stack, keep them, then kill
            if child.poll() is None:
                os.kill(child.pid, signal.SIGUSR1)
                time.sleep(3)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGKILL)
            out, err = child.communicate()
            stacks = self.scratch / f"hang-{child.pid}.txt"
            stacks.write_text(err)
            return Run(None, out, err, time.monotonic() - start, hung=True, stacks=str(stacks))

    def run(self, cwd: Path, *args, timeout: float = 240, **kwargs) -> Run:
        return self.finish(self.start(cwd, *args, **kwargs), timeout)

    def python(self, cwd: Path, code: str, timeout: float = 240) -> Run:
        child = subprocess.Popen(
            [sys.executable, "-c", code], cwd=cwd, env=self.env(), stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, start_new_session=True,
        )  # fmt: skip
        return self.finish(child, timeout)

    # ------------------------------------------------------------------ inputs

    def folder(self, name: str) -> Path:
        path = self.scratch / "cases" / name
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
        return path

    @staticmethod
    def tif(path: Path, shape=(64, 64), seed: int = 0, dtype="uint8", axes=None) -> Path:
        import numpy as np
        import tifffile

        path.parent.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(seed)
        base = rng.random(shape) * (200 if dtype == "uint8" else 4000)
        tifffile.imwrite(path, base.astype(dtype), metadata={"axes": axes} if axes else None)
        return path


def digest(paths: list[Path]) -> dict[str, str]:
    out = {}
    for path in paths:
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        sha = hashlib.sha256()
        for item in files:
            sha.update(item.read_bytes())
        out[str(path)] = sha.hexdigest() if path.exists() else "missing"
    return out


def leftovers(folder: Path) -> list[str]:
    if not folder.exists():
        return []
    return sorted(
        str(p.relative_to(folder))
        for p in folder.rglob(".*")
        if p.name.endswith((".partial", ".replaced", ".old", ".lock"))
    )


def judge(
    run: Run,
    *,
    fail: bool = True,
    says: tuple[str, ...] = (),
    before: dict[str, str] | None = None,
    clean: Path | None = None,
) -> tuple[str, str]:
    """Judge a command that should be refused (``fail``) or succeed, in one word."""
    if before is not None and digest([Path(p) for p in before]) != before:
        return "data loss", "an input or a user's file changed"
    if run.hung:
        return "hang", f"no end after {run.seconds:.0f} s (stacks: {run.stacks})"
    if RAW.search(run.err):
        return "traceback", RAW.search(run.err).group(0)
    if fail and run.code == 0:
        return "silent nonsense", "exit 0"
    if not fail and run.code != 0:
        return "unclear", _last_error(run)
    if clean is not None and leftovers(clean):
        return "leftover", ", ".join(leftovers(clean))
    missing = [s for s in says if s.lower() not in run.text.lower()]
    if missing:
        return "unclear", f"no {missing[0]!r} in: {_last_error(run)}"
    return "ok", _last_error(run) if fail else ""


def _last_error(run: Run) -> str:
    lines = [line for line in run.text.split("error:") if line.strip()]
    return ("error:" + lines[-1])[:160] if "error:" in run.text else run.text[-160:]


# ====================================================================== the cases

CASES: list[Case] = []


def case(family: str):
    def register(func):
        CASES.append(Case(family, func.__name__.removeprefix("case_").replace("_", " "), func))
        return func

    return register


# ------------------------------------------------------------------ outputs


def _concurrent(s: Sweep, d: Path, first_args: list, second_args: list) -> tuple[Run, Run]:
    """Start a slow run, then a second one into the same output while the first works."""
    first = s.start(d, *first_args, slow="3")
    deadline = time.monotonic() + 300
    while not (d / "out" / ".h1.zarr.partial").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    second = s.run(d, *second_args)
    overlapped = first.poll() is None  # the second ended while the first still ran
    first_run = s.finish(first, 900)
    if not overlapped:
        raise RuntimeError("the first run ended before the second: no overlap to judge")
    return first_run, second


@case("outputs")
def case_concurrent_overwrite_runs_into_one_output(s: Sweep, d: Path):
    s.tif(d / "a" / "h1.tif", (96, 64), seed=1)
    s.tif(d / "b" / "h1.tif", (96, 64), seed=2)
    common = ["-o", "out", *FAST, *BLOCKS, "--overwrite"]
    first_run, second = _concurrent(
        s, d, ["predict", s.model, "a/h1.tif", *common], ["predict", s.model, "b/h1.tif", *common]
    )
    readable = s.python(d, "from decrappify.io import read_image; read_image('out/h1.zarr')")
    if first_run.code == 0 and readable.code != 0:
        return "data loss", "the first run said ok, its output is unreadable"
    if first_run.code == 0 and second.code == 0:
        return "silent nonsense", "both runs ok at once: one replaced the other"
    if second.code != 0 and second.seconds > 120:
        return "unclear", f"the loser failed after {second.seconds:.0f} s"
    return judge(second, says=("another decrappify run",))


@case("outputs")
def case_concurrent_runs_without_overwrite(s: Sweep, d: Path):
    s.tif(d / "h1.tif", (96, 64), seed=1)
    common = ["predict", s.model, "h1.tif", "-o", "out", *FAST, *BLOCKS]
    first_run, second = _concurrent(s, d, common, [*common, "--resume"])
    if first_run.code == 0 and second.code == 0:
        return "silent nonsense", "both runs wrote one output at once, both ok"
    if second.code != 0 and second.seconds > 120:
        return "unclear", f"the loser computed for {second.seconds:.0f} s before failing"
    return judge(second, says=("another decrappify run",))


@case("outputs")
def case_crappify_fit_out_is_the_input(s: Sweep, d: Path):
    s.tif(d / "s2" / "a.tif", (96, 96))
    before = digest([d / "s2" / "a.tif"])
    return judge(s.run(d, "crappify", "--fit", "s2/a.tif", "--out", "s2/a.tif"), before=before,
                 says=("s2/a.tif", "input"))  # fmt: skip


@case("outputs")
def case_crappify_fit_over_an_existing_yaml(s: Sweep, d: Path):
    s.tif(d / "a.tif", (96, 96))
    (d / "fit.yaml").write_text("my notes\n")
    before = digest([d / "fit.yaml"])
    return judge(s.run(d, "crappify", "--fit", "a.tif", "--out", "fit.yaml"), before=before,
                 says=("fit.yaml", "exists"))  # fmt: skip


@case("outputs")
def case_predict_report_over_an_input(s: Sweep, d: Path):
    s.tif(d / "s3" / "a.tif")
    before = digest([d / "s3" / "a.tif"])
    run = s.run(d, "predict", s.model, "s3/a.tif", "-o", "out", "--report", "s3/a.tif", *FAST)
    return judge(run, before=before, says=("s3/a.tif", "input"))


@case("outputs")
def case_predict_report_over_an_input_through_a_link(s: Sweep, d: Path):
    s.tif(d / "s3" / "a.tif")
    (d / "link").symlink_to(d / "s3")
    before = digest([d / "s3" / "a.tif"])
    run = s.run(d, "predict", s.model, "s3/a.tif", "-o", "out", "--report", "link/./a.tif", *FAST)
    return judge(run, before=before, says=("input",))


@case("outputs")
def case_predict_report_over_a_users_file(s: Sweep, d: Path):
    s.tif(d / "a.tif")
    (d / "notes.json").write_text('{"mine": true}\n')
    before = digest([d / "notes.json"])
    run = s.run(d, "predict", s.model, "a.tif", "-o", "out", "--report", "notes.json", *FAST)
    return judge(run, before=before, says=("notes.json",))


@case("outputs")
def case_predict_report_over_the_models_metadata(s: Sweep, d: Path):
    s.tif(d / "a.tif")
    model = shutil.copytree(s.model, d / "m")
    before = digest([model / "model.json"])
    run = s.run(d, "predict", model, "a.tif", "-o", "out", "--report", "m/model.json", *FAST)
    return judge(run, before=before, says=("m/model.json",))


@case("outputs")
def case_evaluate_json_over_a_users_file(s: Sweep, d: Path):
    s.tif(d / "p.tif", seed=1)
    s.tif(d / "gt.tif", seed=1)
    (d / "m.json").write_text('{"mine": true}\n')
    before = digest([d / "m.json"])
    run = s.run(d, "evaluate", "--pred", "p.tif", "--gt", "gt.tif", "--json", "m.json", "-q")
    return judge(run, before=before, says=("m.json",))


@case("outputs")
def case_evaluate_csv_over_the_ground_truth(s: Sweep, d: Path):
    s.tif(d / "p.tif", seed=1)
    s.tif(d / "gt.tif", seed=1)
    before = digest([d / "gt.tif"])
    run = s.run(d, "evaluate", "--pred", "p.tif", "--gt", "gt.tif", "--csv", "gt.tif", "-q")
    return judge(run, before=before, says=("gt.tif",))


def _same_stem(s: Sweep, d: Path, *command) -> tuple[str, str]:
    s.tif(d / "d1" / "x.tif", seed=1)
    s.tif(d / "d2" / "x.tif", seed=2)
    run = s.run(d, *command)
    if run.code == 0:
        return "silent nonsense", "both inputs 'ok' into one output"
    if "--overwrite" in run.text.split("error:")[-1] and "d2/x.tif" not in run.text:
        return "unclear", "recommends --overwrite, which makes one input replace the other"
    return judge(run, says=("d1/x.tif", "d2/x.tif"))


@case("outputs")
def case_predict_same_stem_two_folders_overwrite(s: Sweep, d: Path):
    return _same_stem(s, d, "predict", s.model, "d1/x.tif", "d2/x.tif", "-o", "out",
                      "--overwrite", *FAST)  # fmt: skip


@case("outputs")
def case_predict_same_stem_two_folders(s: Sweep, d: Path):
    return _same_stem(s, d, "predict", s.model, "d1/x.tif", "d2/x.tif", "-o", "out", *FAST)


@case("outputs")
def case_predict_same_stem_with_resume(s: Sweep, d: Path):
    return _same_stem(s, d, "predict", s.model, "d1/x.tif", "d2/x.tif", "-o", "out", "--resume",
                      *FAST)  # fmt: skip


@case("outputs")
def case_crappify_same_stem_two_folders_overwrite(s: Sweep, d: Path):
    return _same_stem(s, d, "crappify", "d1/x.tif", "d2/x.tif", "-o", "out", "--overwrite", "-q")


@case("outputs")
def case_predict_tif_ome_tif_and_zarr_of_one_stem(s: Sweep, d: Path):
    s.tif(d / "x.tif", seed=1)
    s.tif(d / "x.ome.tif", seed=2)
    s.python(d, "from decrappify.io import write_image; from decrappify.sample import "
             "synthetic_image; write_image(synthetic_image('em', (64, 64)), 'x.zarr')")  # fmt: skip
    args = ["predict", s.model, "x.tif", "x.ome.tif", "x.zarr", "-o", "out", "--overwrite", *FAST]
    run = s.run(d, *args)
    if run.code == 0:
        return "silent nonsense", "three inputs 'ok' into one output"
    return judge(run, says=("x.tif", "x.ome.tif"))


@case("outputs")
def case_predict_input_named_like_a_trust_map(s: Sweep, d: Path):
    s.tif(d / "x.tif", seed=1)
    s.tif(d / "x.consistency.tif", seed=2)
    run = s.run(d, "predict", s.model, "x.tif", "x.consistency.tif", "-o", "out", "-f", "tif",
                "--overwrite", *FAST)  # fmt: skip
    if run.code == 0:
        return "silent nonsense", "the prediction replaced the other input's consistency map"
    return judge(run, says=("x.consistency.tif",))


# ------------------------------------------------------------------ odd inputs


def _loop_folder(s: Sweep, d: Path) -> Path:
    folder = d / "in"
    s.tif(folder / "a.tif", seed=1)
    s.tif(folder / "b.tif", seed=2)
    (folder / "l1.tif").symlink_to("l2.tif")
    (folder / "l2.tif").symlink_to("l1.tif")
    return folder


@case("inputs")
def case_symlink_loop_in_a_folder_predict(s: Sweep, d: Path):
    _loop_folder(s, d)
    return judge(s.run(d, "predict", s.model, "in", "-o", "out", *FAST), fail=False)


@case("inputs")
def case_symlink_loop_in_a_folder_crappify(s: Sweep, d: Path):
    _loop_folder(s, d)
    return judge(s.run(d, "crappify", "in", "-o", "out", "-q"), fail=False)


@case("inputs")
def case_symlink_loop_in_a_folder_train(s: Sweep, d: Path):
    _loop_folder(s, d)
    (d / "in" / "a.tif").unlink()
    s.tif(d / "in" / "a.tif", (96, 96), seed=1)
    s.tif(d / "in" / "b.tif", (96, 96), seed=2)
    s.tif(d / "in" / "c.tif", (96, 96), seed=3)
    config = d / "tiny.yaml"
    config.write_text(TINY_TRAIN)
    run = s.run(d, "train", "--hr", "in", "-o", "run", "-c", config, "-q", timeout=600)
    return judge(run, fail=False)


@case("inputs")
def case_symlink_loop_in_a_folder_evaluate(s: Sweep, d: Path):
    _loop_folder(s, d)
    shutil.copytree(d / "in", d / "gt", symlinks=True)
    return judge(s.run(d, "evaluate", "--pred", "in", "--gt", "gt", "-q"), fail=False)


@case("inputs")
def case_recursive_glob_with_a_link_to_its_folder(s: Sweep, d: Path):
    s.tif(d / "in" / "a.tif")
    (d / "in" / "self.zarr").symlink_to(".")
    (d / "in" / "again").symlink_to(".")
    run = s.run(d, "crappify", "in/**/*.tif", "-o", "out", "-q", timeout=600)
    return judge(run, fail=False)


@case("inputs")
def case_fifo_named_like_an_image_in_a_folder(s: Sweep, d: Path):
    s.tif(d / "in" / "a.tif")
    os.mkfifo(d / "in" / "b.tif")
    return judge(s.run(d, "crappify", "in", "-o", "out", "-q", timeout=120), fail=False)


@case("inputs")
def case_multi_series_tiff(s: Sweep, d: Path):
    import numpy as np
    import tifffile

    with tifffile.TiffWriter(d / "ms.tif") as tif:
        tif.write(np.zeros((64, 64), np.uint8))
        tif.write((np.random.default_rng(0).random((128, 128)) * 200).astype(np.uint8))
    run = s.run(d, "predict", s.model, "ms.tif", "-o", "out", *FAST)
    if run.code == 0:
        return "silent nonsense", "series 0 (a 64² thumbnail) predicted, no word"
    return judge(run, says=("ms.tif", "series"))


@case("inputs")
def case_multi_position_ome_tiff(s: Sweep, d: Path):
    import numpy as np
    import tifffile

    with tifffile.TiffWriter(d / "pos.ome.tif", ome=True) as tif:
        for name in ("Pos1", "Pos2"):
            tif.write(np.zeros((64, 64), np.uint16), metadata={"Name": name})
    run = s.run(d, "predict", s.model, "pos.ome.tif", "-o", "out", *FAST)
    if run.code == 0:
        return "silent nonsense", "only position 1 predicted, no word"
    return judge(run, says=("pos.ome.tif", "Pos2"))


@case("inputs")
def case_float64_beyond_float32(s: Sweep, d: Path):
    import numpy as np
    import tifffile

    tifffile.imwrite(d / "huge.tif", np.full((64, 64), 1e40))
    run = s.run(d, "predict", s.model, "huge.tif", "-o", "out", *FAST)
    if "RuntimeWarning" in run.err:
        return "traceback", "a stray RuntimeWarning"
    if "infinite" in run.text:
        return "unclear", "finite values called infinite"
    return judge(run, says=("huge.tif", "float32"))


@case("inputs")
def case_evaluate_pairs_given_in_another_order(s: Sweep, d: Path):
    for name, seed in (("a", 1), ("b", 2)):
        s.tif(d / "sr" / f"{name}.tif", seed=seed)
        s.tif(d / "hr" / f"{name}.tif", seed=seed)
    run = s.run(d, "evaluate", "--pred", "sr/a.tif", "--pred", "sr/b.tif", "--gt", "hr/b.tif",
                "--gt", "hr/a.tif", "--json", "m.json", "-q")  # fmt: skip
    if run.code == 0:
        doc = json.loads((d / "m.json").read_text())
        if min(doc[k]["ssim"] for k in ("a", "b")) < 0.99:
            return "silent nonsense", "a scored against b"
    return judge(run, fail=False)


@case("inputs")
def case_evaluate_folder_with_trust_maps(s: Sweep, d: Path):
    for name, seed in (("a", 1), ("b", 2)):
        s.tif(d / "sr" / f"{name}.tif", seed=seed)
        s.tif(d / "hr" / f"{name}.tif", seed=seed)
    s.tif(d / "sr" / "a.consistency.tif", seed=3)
    run = s.run(d, "evaluate", "--pred", "sr", "--gt", "hr", "--json", "m.json", "-q")
    if run.code != 0 and "got 2 images for 3" in run.text:
        return "unclear", "the consistency map counted as a prediction"
    return judge(run, fail=False)


# ------------------------------------------------------------------ models


@case("models")
def case_another_runs_weights_in_a_model_folder(s: Sweep, d: Path):
    model = shutil.copytree(s.model, d / "m")
    shutil.copy(s.scratch / "other" / "model.safetensors", model / "model.safetensors")
    info = s.run(d, "info", model)
    if info.code == 0:
        return "silent nonsense", "info shows the original run's metrics for other weights"
    return judge(info, says=("weights",))


@case("models")
def case_metadata_without_generator(s: Sweep, d: Path):
    model = shutil.copytree(s.model, d / "m")
    meta = json.loads((model / "model.json").read_text())
    del meta["generator"]
    (model / "model.json").write_text(json.dumps(meta))
    run = s.run(d, "info", model)
    if "resnet34" in run.text or "generator.scale is" in run.text:
        return "unclear", "reports a filled-in default generator: " + _last_error(run)
    return judge(run, says=("generator",))


@case("models")
def case_unknown_crappifier_step_info(s: Sweep, d: Path):
    model = shutil.copytree(s.model, d / "m")
    meta = json.loads((model / "model.json").read_text())
    meta["crappify"]["steps"][0]["kind"] = "sparkle"
    (model / "model.json").write_text(json.dumps(meta))
    run = s.run(d, "info", model)
    if run.code == 0 and "cannot" not in run.text:
        return "unclear", "exit 0, no word about the unusable crappifier"
    return judge(run, fail=False)


@case("models")
def case_unknown_crappifier_step_export(s: Sweep, d: Path):
    model = shutil.copytree(s.model, d / "m")
    meta = json.loads((model / "model.json").read_text())
    meta["crappify"]["steps"][0]["kind"] = "sparkle"
    (model / "model.json").write_text(json.dumps(meta))
    run = s.run(d, "export", model, "--bioimageio", "m.zip", "--no-test", "-q")
    return judge(run, says=("sparkle",), clean=d)


@case("models")
def case_the_weights_file_of_a_model_folder(s: Sweep, d: Path):
    s.tif(d / "a.tif")
    run = s.run(d, "predict", s.model / "model.safetensors", "a.tif", "-o", "out", *FAST)
    return judge(run, says=("folder",))


# ------------------------------------------------------------------ signals


def _stop(s: Sweep, d: Path, signum: int, *args, marker: str, resume: bool = False):
    child = s.start(d, *args, slow="0.2")
    deadline = time.monotonic() + 180
    while not (d / marker).exists() and time.monotonic() < deadline and child.poll() is None:
        time.sleep(0.05)
    time.sleep(s.rng.uniform(0, s.jitter))
    if child.poll() is not None:
        return None
    child.send_signal(signum)
    return s.finish(child)


def _judge_stop(run: Run | None, d: Path, code: int, *, resume: bool = False):
    if run is None:
        return "unclear", "the command ended before the signal"
    if run.hung:
        return "hang", f"no end after the signal (stacks: {run.stacks})"
    if RAW.search(run.err):
        return "traceback", RAW.search(run.err).group(0)
    left = leftovers(d / "out")
    if left and not resume:
        return "leftover", f"exit {run.code}: " + ", ".join(left)
    if run.code != code:
        return "unclear", f"exit {run.code}, not {code}"
    if resume:
        if "--resume" not in run.text:
            return "unclear", "the kept .partial is not said, nor how to resume"
        return ("ok", _last_error(run)) if left else ("unclear", "nothing kept to resume")
    if left:
        return "leftover", ", ".join(left)
    return ("ok", _last_error(run)) if "finished" in run.text else ("unclear", _last_error(run))


@case("signals")
def case_sigterm_during_predict(s: Sweep, d: Path):
    s.tif(d / "small.tif", (32, 32))
    s.tif(d / "big.tif", (96, 64), seed=1)
    run = _stop(s, d, signal.SIGTERM, "predict", s.model, "small.tif", "big.tif", "-o", "out",
                *FAST, *BLOCKS, marker="out/.big.zarr.partial/0")  # fmt: skip
    return _judge_stop(run, d, 143)


@case("signals")
def case_sighup_during_predict(s: Sweep, d: Path):
    s.tif(d / "small.tif", (32, 32))
    s.tif(d / "big.tif", (96, 64), seed=1)
    run = _stop(s, d, signal.SIGHUP, "predict", s.model, "small.tif", "big.tif", "-o", "out",
                *FAST, *BLOCKS, marker="out/.big.zarr.partial/0")  # fmt: skip
    return _judge_stop(run, d, 129)


@case("signals")
def case_sigterm_during_crappify_to_zarr(s: Sweep, d: Path):
    s.tif(d / "hr.tif", (6, 1024, 1024))
    run = _stop(s, d, signal.SIGTERM, "crappify", "hr.tif", "-o", "out", "-f", "zarr", "-q",
                marker="out/.hr.zarr.partial")  # fmt: skip
    if run is not None and run.code == 143 and "finished" not in run.text:
        return _judge_stop(run, d, 143) if leftovers(d / "out") else ("ok", _last_error(run))
    return _judge_stop(run, d, 143)


@case("signals")
def case_sigterm_during_export(s: Sweep, d: Path):
    (d / "out").mkdir()
    run = _stop(s, d, signal.SIGTERM, "export", s.model, "--bioimageio", "out/m.zip", "-q",
                marker="out/.m.zip.partial")  # fmt: skip
    if run is None:
        return "unclear", "the export ended before the signal"
    if run.code == 143 and not leftovers(d / "out") and not RAW.search(run.err):
        return "ok", _last_error(run)
    return _judge_stop(run, d, 143)


@case("signals")
def case_sigint_with_resume(s: Sweep, d: Path):
    s.tif(d / "big.tif", (96, 64), seed=1)
    run = _stop(s, d, signal.SIGINT, "predict", s.model, "big.tif", "-o", "out", *FAST, *BLOCKS,
                "--resume", marker="out/.big.zarr.partial/0")  # fmt: skip
    return _judge_stop(run, d, 130, resume=True)


# ------------------------------------------------------------------ disk


def _limited(s: Sweep, d: Path, *args, limit: int = 2000) -> tuple[str, str]:
    run = s.finish(s.start(d, *args, limit=limit), 600)
    return judge(run, says=("cannot write",), clean=d)


@case("disk")
def case_file_size_limit_predict_zarr(s: Sweep, d: Path):
    s.tif(d / "big.tif", (96, 64), seed=1)
    return _limited(s, d, "predict", s.model, "big.tif", "-o", "out", *FAST, *BLOCKS, limit=600)


@case("disk")
def case_file_size_limit_predict_tif(s: Sweep, d: Path):
    s.tif(d / "big.tif", (96, 64), seed=1)
    return _limited(s, d, "predict", s.model, "big.tif", "-o", "out", "-f", "tif", *FAST)


@case("disk")
def case_file_size_limit_crappify(s: Sweep, d: Path):
    s.tif(d / "big.tif", (256, 256), seed=1)
    return _limited(s, d, "crappify", "big.tif", "-o", "out", "-q")


@case("disk")
def case_file_size_limit_train(s: Sweep, d: Path):
    for i in range(3):
        s.tif(d / "hr" / f"{i}.tif", (96, 96), seed=i)
    (d / "tiny.yaml").write_text(TINY_TRAIN)
    return _limited(s, d, "train", "--hr", "hr", "-o", "run", "-c", "tiny.yaml", "-q",
                    limit=100_000)  # fmt: skip


@case("disk")
def case_file_size_limit_export(s: Sweep, d: Path):
    return _limited(s, d, "export", s.model, "--bioimageio", "m.zip", "--no-test", "-q",
                    limit=20_000)  # fmt: skip


def _full_disk(s: Sweep, d: Path, *args) -> tuple[str, str]:
    small = d / "small"
    small.mkdir()
    if os.geteuid() != 0:
        return "skipped", "needs root to mount a tmpfs"
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=200k", "tmpfs", str(small)], check=True)
    try:
        run = s.run(d, *args, timeout=600)
        return judge(run, says=("disk is full",), clean=small)
    finally:
        subprocess.run(["umount", str(small)], check=False)


@case("disk")
def case_full_disk_predict_zarr(s: Sweep, d: Path):
    s.tif(d / "big.tif", (256, 256), seed=1)
    return _full_disk(s, d, "predict", s.model, "big.tif", "-o", "small/out", *FAST, "--chunk",
                      "64")  # fmt: skip


@case("disk")
def case_full_disk_crappify(s: Sweep, d: Path):
    s.tif(d / "big.tif", (4, 512, 512), seed=1, axes="ZYX")  # a stack, not 4 channels
    return _full_disk(s, d, "crappify", "big.tif", "-o", "small/out", "--scale", "1", "-q")


@case("disk")
def case_input_name_of_246_characters(s: Sweep, d: Path):
    stem = "n" * 242
    s.tif(d / f"{stem}.tif", (32, 32))
    run = s.run(d, "predict", s.model, f"{stem}.tif", "-o", "out", *FAST)
    return judge(run, fail=False, clean=d / "out")


# ------------------------------------------------------------------ messages and options


@case("messages")
def case_report_folder_checked_before_the_work(s: Sweep, d: Path):
    s.tif(d / "a.tif")
    (d / "reports").mkdir()
    run = s.run(d, "predict", s.model, "a.tif", "-o", "out", "--report", "reports", *FAST)
    if run.code != 0 and (d / "out" / "a.zarr").exists():
        return "unclear", "refused only after the predictions ran"
    return judge(run, says=("reports",))


def _train_set(s: Sweep, d: Path, settings: list[str], says: tuple[str, ...], fail: bool = True):
    for i in range(3):
        s.tif(d / "hr" / f"{i}.tif", (96, 96), seed=i)
    (d / "tiny.yaml").write_text(TINY_TRAIN)
    sets = [item for setting in settings for item in ("--set", setting)]
    run = s.run(d, "train", "--hr", "hr", "-o", "run", "-c", "tiny.yaml", *sets, "-q", timeout=600)
    return judge(run, fail=fail, says=says)


@case("messages")
def case_set_a_key_of_the_crappify_preset(s: Sweep, d: Path):
    return _train_set(s, d, ["crappify.scale=2", "generator.scale=2"], (), fail=False)


@case("messages")
def case_set_a_section_to_null(s: Sweep, d: Path):
    return _train_set(s, d, ["data=null"], ("override data:",))


@case("messages")
def case_set_a_key_below_a_value(s: Sweep, d: Path):
    return _train_set(s, d, ["data.patch_size.x=3"], ("data.patch_size is a value",))


@case("messages")
def case_set_data_batch_size(s: Sweep, d: Path):
    return _train_set(s, d, ["data.batch_size=3"], (), fail=False)


@case("messages")
def case_tile_message_and_help_agree(s: Sweep, d: Path):
    s.tif(d / "a.tif")
    run = s.run(d, "predict", s.model, "a.tif", "-o", "out", "--tile", "7", "-q")
    helptext = s.run(d, "predict", "--help")
    quantum = re.search(r"multiple of (\d+) \(", run.text)
    if (
        quantum
        and f"multiple of {quantum.group(1)}" not in helptext.text
        and ("a multiple of 32)" in helptext.text)
    ):
        return "unclear", f"the error says {quantum.group(1)}, --help says 32"
    return judge(run, says=("tile 7",))


@case("messages")
def case_scale_mismatch_names_the_model_once(s: Sweep, d: Path):
    s.tif(d / "a.tif")
    model = shutil.copytree(s.model, d / "model")
    run = s.run(d, "predict", model, "a.tif", "-o", "out", "--scale", "4", *FAST)
    if "model model" in run.text:
        return "unclear", "'model model upsamples'"
    return judge(run, says=("×2", "4"))


@case("messages")
def case_chunk_of_one_pixel(s: Sweep, d: Path):
    s.tif(d / "a.tif")
    run = s.run(d, "predict", s.model, "a.tif", "-o", "out", "--chunk", "1", *FAST, timeout=120)
    files = sum(1 for _ in (d / "out").rglob("*")) if (d / "out").exists() else 0
    if run.code == 0 or run.hung:
        return "silent nonsense", f"accepted: {files} files for one 128² output"
    return judge(run, says=("chunk",))


@case("messages")
def case_progress_bar_counts_what_the_message_says(s: Sweep, d: Path):
    s.tif(d / "a.tif", (160, 160))
    code = textwrap.dedent(
        f"""
        import re
        from decrappify import api
        bad = []
        for e in api.iter_predict({str(s.model)!r}, ['a.tif'], 'out', dict(tile=32, chunk=32,
                block=32, device='cpu', threads=1)):
            m = re.search(r"block (\\d+) of (\\d+)", e.message or "")
            if m and (int(m.group(1)), int(m.group(2))) != (e.step, e.total):
                bad.append((e.step, e.total, e.message))
        print("MISMATCH", bad[:1] if bad else "none")
        """
    )
    run = s.python(d, code)
    if "MISMATCH none" in run.out:
        return "ok", ""
    if "MISMATCH" in run.out:
        return "unclear", run.out.strip()[:160]
    return judge(run, fail=False)


@case("messages")
def case_local_cluster_leaves_no_scratch_locks(s: Sweep, d: Path):
    s.tif(d / "a.tif")
    scratch = Path(tempfile.gettempdir()) / "dask-scratch-space"
    before = {str(p) for p in scratch.rglob("*")} if scratch.exists() else set()
    run = s.run(d, "predict", s.model, "a.tif", "-o", "out", "--cluster", "local", "--workers",
                "1", *FAST, timeout=600)  # fmt: skip
    after = {str(p) for p in scratch.rglob("*")} if scratch.exists() else set()
    here = (
        list((d / "dask-scratch-space").rglob("*")) if (d / "dask-scratch-space").exists() else []
    )
    new = sorted(after - before) + [str(p) for p in here]
    if run.code == 0 and new:
        return "leftover", f"{len(new)} dask-scratch-space entries, e.g. {Path(new[0]).name}"
    return judge(run, fail=False)


@case("messages")
def case_evaluate_shell_expanded_patterns(s: Sweep, d: Path):
    for name, seed in (("a", 1), ("b", 2)):
        s.tif(d / "sr" / f"{name}.tif", seed=seed)
        s.tif(d / "hr" / f"{name}.tif", seed=seed)
    run = s.run(d, "evaluate", "--pred", "sr/a.tif", "sr/b.tif", "--gt", "hr/a.tif", "hr/b.tif",
                "-q")  # fmt: skip
    return judge(run, fail=False)


@case("messages")
def case_crappify_fit_with_shell_expanded_hr(s: Sweep, d: Path):
    import numpy as np
    import tifffile

    rng = np.random.default_rng(0)
    (d / "hr").mkdir()
    (d / "lr").mkdir()
    for name in ("a", "b"):
        clean = rng.random((48, 48)) * 150 + 50
        hr = np.repeat(np.repeat(clean, 2, 0), 2, 1)
        tifffile.imwrite(d / "hr" / f"{name}.tif", hr.astype(np.uint8))
        noisy = clean + rng.normal(0, 8, clean.shape)
        tifffile.imwrite(d / "lr" / f"{name}.tif", noisy.clip(0, 255).astype(np.uint8))
    run = s.run(d, "crappify", "--fit", "lr/b.tif", "lr/a.tif", "--hr", "hr/a.tif", "hr/b.tif",
                "-o", "fit.yaml")  # fmt: skip
    return judge(run, fail=False)


@case("messages")
def case_evaluate_crappified_tif_against_predicted_zarr(s: Sweep, d: Path):
    make = "from decrappify.io import write_image; from decrappify.sample import synthetic_image"
    s.python(d, f"{make}; write_image(synthetic_image('em', (128, 128)), 'hr.tif')")
    s.run(d, "crappify", "hr.tif", "-o", "lr", "--scale", "2", "-q")
    s.run(d, "predict", s.model, "lr/hr.tif", "-o", "sr", *FAST)
    run = s.run(d, "evaluate", "--pred", "sr/hr.zarr", "--gt", "hr.tif", "-q")
    if run.code == 0:
        return "ok", "scored"
    return judge(run, says=("--crop",))


TINY_TRAIN = textwrap.dedent(
    """
    data: {patch_size: 64, samples_per_epoch: 8, validation: {count: 1, patches: 2}}
    batch_size: 2
    generator: {encoder: resnet18, nf_factor: 0.25, self_attention: false}
    critic: {nf: 8, n_blocks: 2, self_attention: false}
    pretrain_generator: {steps: 2, checkpoint_every: 1}
    save_outputs: {patches: 2}
    pretrain_critic: {max_steps: 1, smoothing: 1}
    gan: {max_steps: 1, checkpoint_every: 1, max_critic_steps: 1}
    preview_every: 0
    device: cpu
    num_threads: 1
    """
)


# ====================================================================== driver


def prepare(sweep: Sweep) -> None:
    sweep.scratch.mkdir(parents=True, exist_ok=True)
    (sweep.scratch / "driver.py").write_text(DRIVER)
    code = textwrap.dedent(
        """
        import sys
        from decrappify.config.crappify import get_preset
        from decrappify.config.model import GeneratorConfig, ModelInfo
        from decrappify.models import build_generator, save_model
        cfg = GeneratorConfig(scale=2, encoder="resnet18", self_attention=False, nf_factor=0.25,
                              blocks_per_stage=1, blur=False)
        crappify = get_preset("em").with_scale(2).model_dump(mode="json")
        for name, seed in (("x2", 0), ("other", 1)):
            save_model(name, build_generator(cfg, seed=seed).eval(),
                       ModelInfo(generator=cfg, crappify=crappify), overwrite=True)
        """
    )
    run = sweep.python(sweep.scratch, code)
    if run.code != 0:
        raise SystemExit(f"cannot make the sweep's model:\n{run.err}")
    sweep.model = sweep.scratch / "x2"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", type=Path, default=None, help="source tree to test (PYTHONPATH)")
    parser.add_argument("--scratch", type=Path, default=None)
    parser.add_argument(
        "--only", action="append", default=[], help="run the cases whose name holds this"
    )
    parser.add_argument("--json", type=Path, default=None, help="write the outcomes here")
    parser.add_argument("--markdown", action="store_true", help="print the family table")
    parser.add_argument("--repeat", type=int, default=1, help="run each case this many times")
    parser.add_argument(
        "--jitter", type=float, default=0.0, metavar="SECONDS",
        help="send each signal a random 0 to SECONDS after the moment the case waits for",
    )  # fmt: skip
    parser.add_argument(
        "--compare", type=Path, nargs=2, metavar=("BEFORE.json", "AFTER.json"),
        help="print the family table of two earlier runs side by side (runs nothing)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.compare:
        before, after = (json.loads(path.read_text()) for path in args.compare)
        print(markdown(before, after) + "\n\n" + case_table(before, after))
        return 0
    scratch = args.scratch or Path(tempfile.mkdtemp(prefix="decrappify-sweep-"))
    sweep = Sweep(args.src.resolve() if args.src else None, scratch.resolve(), jitter=args.jitter)
    prepare(sweep)
    for item in CASES:
        if args.only and not any(part in item.name for part in args.only):
            continue
        runs = [run_case(sweep, item) for _ in range(args.repeat)]
        sweep.results.append(runs[0] if len(runs) == 1 else repeated(runs))
        if len(runs) > 1:
            print(f"{item.family:9} {sweep.results[-1]['outcome']:16} {item.name}: "
                  f"{sweep.results[-1]['note']}", flush=True)  # fmt: skip
    results = sweep.results
    if args.json and args.only and args.json.exists():
        ran = {r["case"]: r for r in results}
        results = [ran.pop(r["case"], r) for r in json.loads(args.json.read_text())]
        results += list(ran.values())
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    if args.markdown:
        print(markdown(results))
    return 0


def run_case(sweep: Sweep, item: Case) -> dict:
    """Run one case once; its row of the results."""
    start = time.monotonic()
    try:
        outcome, note = item.func(sweep, sweep.folder(item.name.replace(" ", "_")))
    except Exception as err:  # the sweep's own failure, said as such
        outcome, note = "sweep error", f"{type(err).__name__}: {err}"
    seconds = time.monotonic() - start
    print(f"{item.family:9} {outcome:16} {seconds:6.1f} s  {item.name}: {note}", flush=True)
    return {"family": item.family, "case": item.name, "outcome": outcome, "note": note,
            "seconds": round(seconds, 1)}  # fmt: skip


def repeated(runs: list[dict]) -> dict:
    """One row for the runs of one case: ok only if every run was; the note counts them."""
    counts: dict[str, int] = {}
    for run in runs:
        counts[run["outcome"]] = counts.get(run["outcome"], 0) + 1
    worst = [run for run in runs if run["outcome"] != "ok"]
    tally = ", ".join(f"{n} {outcome}" for outcome, n in counts.items())
    note = f"{len(runs)} runs: {tally}" + (f"; first not ok: {worst[0]['note']}" if worst else "")
    return {**runs[0], "outcome": worst[0]["outcome"] if worst else "ok", "note": note,
            "seconds": round(sum(run["seconds"] for run in runs), 1), "runs": counts}  # fmt: skip


def markdown(results: list[dict], after: list[dict] | None = None) -> str:
    """The family table: cases and the count of each outcome (``before → after`` given two runs).

    Outcomes other than the judged ones (``sweep error``, ``skipped``) get columns of their own
    when they occur, so that no case drops out of the counts unseen.
    """
    runs = [results] if after is None else [results, after]
    extra = sorted({r["outcome"] for run in runs for r in run} - set(OUTCOMES))
    outcomes = [*OUTCOMES, *extra]
    lines = [
        "| family | cases | " + " | ".join(outcomes) + " |",
        "|---|---|" + "---|" * len(outcomes),
    ]
    families = [*FAMILIES.items(), ("", "**all**")]
    for family, title in families:
        rows = [[r for r in run if family in ("", r["family"])] for run in runs]
        cells = [" → ".join(str(n) for n in dict.fromkeys(map(len, rows)))] + [
            " → ".join(str(sum(r["outcome"] == o for r in run)) for run in rows) for o in outcomes
        ]
        lines.append(f"| {title} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def case_table(before: list[dict], after: list[dict]) -> str:
    """One row per case: its family, name and the outcome of each run."""
    outcome = {r["case"]: r["outcome"] for r in before}
    lines = ["| family | case | before | after |", "|---|---|---|---|"]
    for r in after:
        lines.append(
            f"| {r['family']} | {r['case']} | {outcome.get(r['case'], '')} | {r['outcome']} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
