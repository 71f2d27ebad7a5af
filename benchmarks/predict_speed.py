"""Benchmark: end-to-end prediction time of decrappify and of PSSR2, side by side (issue 8).

Both tools super-resolve the same N uint8 TIFFs (default: the first 5 sections of the ISBI
2012 ssTEM training stack, area-downsampled by 2 to 256^2; ``--images DIR`` for others) to
4x TIFFs, each as a whole process with the same number of threads (``OMP_NUM_THREADS``;
decrappify also gets ``--threads``). Each is timed by wall clock (best and median of
``--repeat`` runs, interleaved between the tools, every run listed), with the user and system
CPU time and the peak RSS of the process (``os.wait4``):

* **decrappify**: ``decrappify predict MODEL INPUTS --out OUT --format tif --threads T``
  (otherwise default settings: tile 128, automatic overlap, batch 8; ``--report`` only to
  read back the overlap the engine chose). MODEL is ``--model``, or an untrained model of the
  default training generator (``TrainConfig().generator``). Weights do not change the cost
  of a forward pass, but the automatic overlap comes from the receptive field measured on the
  network, which is small for random weights (a trained model gets a larger overlap, hence
  more tiles): pass a trained ``--model`` for the user's figure. The first run with a model
  measures its receptive field and caches it beside the model (``rf`` in the run list).
* **PSSR2** (``--with-pssr2``): pssr 2.4.0 in its own venv (``--pssr2-venv``, made once: its
  requirements pin numpy<2 and magicgui<=0.8.2), its default ``ResUNet`` (60 M parameters,
  4x, 1 channel) with random weights, seed 0 (PSSR2 ships no trained weights; its CLI loads
  a state dict, which this script saves once beside the venv):

  - *whole image*: its CLI, ``pssr -dp INPUTS -mp resunet.pth -dt "ImageDataset(hr_res=1024)"``
    (LR mode: ``pssr.data.ImageDataset`` loads each 256^2 image unmodified, and
    ``pssr.predict.predict_images`` runs one forward pass per image and writes TIFFs);
  - *sliding window*: ``pssr.data.SlidingDataset(INPUTS, hr_res=TILE, lr_scale=-1,
    overlap=OVERLAP)`` (LR tiles), ``predict_images(..., out_dir=None)``, then
    ``pssr.util.reassemble_sheets`` stitches the tiles into whole images (its CLI writes the
    tiles only).

  pssr imports timm (for its SwinIR and RDNet models) and timm imports torchvision, whose
  wheel does not load beside torch 2.13.0+cpu (``operator torchvision::nms does not exist``):
  a stand-in ``timm`` package whose names raise if called is put first on ``PYTHONPATH``;
  ResUNet uses none of them.

Each run's outputs are checked: one TIFF per input, 4x its shape (leading axes of length 1
squeezed: PSSR2 writes (1, H, W)) and its dtype. ``--profile`` then runs decrappify's predict
once more under py-spy (when on PATH or beside this Python) or cProfile (all threads) and
prints the 25 functions with the most cumulative time.

Usage: python benchmarks/predict_speed.py [--images DIR] [-n 5] [--threads 2] [--repeat 3]
       [--model PATH] [--with-pssr2] [--pssr2-venv /tmp/pssr2-venv] [--json PATH]
       [--profile] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import datetime
import io
import json
import os
import platform
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

#: The default images: ISBI 2012 ssTEM training sections (512^2 uint8).
DEFAULT_SOURCE = Path("/work/shared/data/em/isbi2012_train")
#: LR side of the default inputs.
SIDE = 256
SCALE = 4
PSSR2_REQUIREMENTS = ["torch==2.13.0", "pssr==2.4.0"]
#: Written in the PSSR2 venv once its install finished.
PSSR2_STAMP = "decrappify-predict-speed.json"
PSSR2_WEIGHTS = "resunet_x4_seed0.pth"
TOP = 25
#: decrappify's ``--report`` file in each run folder.
REPORT = "report.json"
#: This script, for the child processes (they may run in another folder).
SCRIPT = str(Path(__file__).resolve())
#: The stand-in timm package (file name -> source).
TIMM_STUB = {
    "__init__.py": (
        '"""Stand-in for timm, put first on PYTHONPATH by decrappify\'s predict_speed benchmark:\n'
        "pssr imports it for SwinIR/RDNet only, and the real one imports torchvision, which\n"
        'does not load beside torch 2.13.0+cpu."""\n'
    ),
    "layers.py": (
        "def _missing(*args, **kwargs):\n"
        '    raise ImportError("timm is stubbed out by predict_speed.py (ResUNet only)")\n\n\n'
        "DropPath = LayerNorm2d = EffectiveSEModule = to_2tuple = trunc_normal_ = _missing\n"
    ),
    "models.py": "from timm.layers import _missing as named_apply  # noqa: F401\n",
}


# ----------------------------------------------------------------------------- child modes
# Run as `python predict_speed.py --child MODE ...`: in PSSR2's venv (pssr2-*) or in ours.


def child_pssr2_weights(path: str) -> None:
    """Save PSSR2's default ResUNet with random weights (seed 0) as a state dict."""
    import torch
    from pssr.models import ResUNet

    torch.manual_seed(0)
    net = ResUNet(channels=1, scale=SCALE)
    torch.save(net.state_dict(), path + ".part")
    os.replace(path + ".part", path)


def child_pssr2_sliding(inputs: str, weights: str, out: str, tile: str, overlap: str) -> None:
    """PSSR2's sliding-window prediction of a folder of LR images, stitched into images."""
    import torch
    from pssr.data import SlidingDataset
    from pssr.models import ResUNet
    from pssr.predict import predict_images
    from pssr.util import reassemble_sheets

    model = ResUNet(channels=1, scale=SCALE)
    model.load_state_dict(torch.load(weights, weights_only=True))
    dataset = SlidingDataset(
        inputs, hr_res=int(tile), lr_scale=-1, overlap=int(overlap), val_split=1
    )
    tiles = predict_images(model, dataset, "cpu", out_dir=None)
    reassemble_sheets(
        tiles, inputs, lr_scale=SCALE, overlap=int(overlap), margin=int(overlap) // 2, out_dir=out
    )


def child_cprofile(stats_path: str, *argv: str) -> int:
    """Run the decrappify CLI under cProfile, one profiler per thread, merged."""
    import cProfile
    import pstats
    import threading

    profilers = [cProfile.Profile()]

    def start_thread_profiler(*_: Any) -> None:
        # the first profile event of a new thread: this profiler replaces the hook
        profiler = cProfile.Profile()
        profilers.append(profiler)
        profiler.enable()

    threading.setprofile(start_thread_profiler)
    sys.argv = ["decrappify", *argv]
    code: Any = 0
    profilers[0].enable()
    try:
        from decrappify.cli import main as cli

        cli()
    except SystemExit as stop:
        code = stop.code
    finally:
        profilers[0].disable()
        threading.setprofile(None)
    stats = pstats.Stats(profilers[0])
    for profiler in profilers[1:]:
        stats.add(profiler)
    stats.dump_stats(stats_path)
    return code if isinstance(code, int) else int(code is not None)


CHILDREN = {
    "pssr2-weights": child_pssr2_weights,
    "pssr2-sliding": child_pssr2_sliding,
    "cprofile": child_cprofile,
}


# ----------------------------------------------------------------------------- measuring


@dataclass
class Run:
    """One timed process."""

    wall: float
    user: float
    sys: float
    peak_rss_mib: float
    returncode: int
    log: str
    check: dict[str, Any] = field(default_factory=dict)
    note: str = ""


@dataclass
class Job:
    """One tool and path: how to run it, and its runs."""

    tool: str
    path: str
    version: str
    command: list[str]
    env: dict[str, str]
    out: str  # where the outputs land, relative to the run folder
    cwd_is_run: bool = False  # run in the run folder (PSSR2's CLI writes to ./preds)
    runs: list[Run] = field(default_factory=list)

    def command_in(self, run_dir: Path) -> list[str]:
        """The command of one run: decrappify gets its output folder and report there."""
        if self.tool != "decrappify":
            return self.command
        return [*self.command, "--out", str(run_dir / self.out), "--report", str(run_dir / REPORT)]

    @property
    def key(self) -> str:
        """A folder name: ``decrappify-cli-predict``, ``pssr2-whole-image``..."""
        name = f"{self.tool} {self.path.split('(')[0]}".lower()
        return re.sub(r"[^a-z0-9]+", "-", name).strip("-")


def machine_info() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return {
        "cpu": cpu,
        "cores": len(os.sched_getaffinity(0)),
        "cpu_count": os.cpu_count(),
        "ram_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


def thread_env(threads: int, pythonpath: Path | None = None) -> dict[str, str]:
    env = dict(os.environ)
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[name] = str(threads)
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    return env


def run_timed(cmd: list[str], env: dict[str, str], log: Path, cwd: Path | None = None) -> Run:
    """Run a process to its end; wall time, and its own CPU times and peak RSS."""
    with log.open("wb") as sink:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=sink, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    return Run(
        wall, usage.ru_utime, usage.ru_stime, usage.ru_maxrss / 1024, proc.returncode, str(log)
    )


def check_outputs(inputs: list[Path], out_dir: Path) -> dict[str, Any]:
    """One TIFF per input in ``out_dir``, 4x its shape, its dtype."""
    import tifffile

    problems, stored, got = [], set(), set()
    for src in inputs:
        path = out_dir / f"{src.stem}.tif"
        if not path.is_file():
            problems.append(f"{path.name} missing")
            continue
        lr, hr = tifffile.imread(src), tifffile.imread(path)
        stored.add(hr.shape)
        while hr.ndim > lr.ndim and hr.shape[0] == 1:
            hr = hr[0]
        want = tuple(SCALE * s for s in lr.shape)
        got.add(f"{hr.shape} {hr.dtype}")
        if hr.shape != want or hr.dtype != lr.dtype:
            problems.append(f"{path.name} is {hr.shape} {hr.dtype}, expected {want} {lr.dtype}")
    if problems:
        return {"ok": False, "detail": "; ".join(problems)}
    detail = f"ok: {len(inputs)} x {', '.join(sorted(got))}"
    if any(len(s) > 2 for s in stored):
        detail += f" (stored as {', '.join(str(s) for s in sorted(stored))})"
    return {"ok": True, "detail": detail}


def prepare_inputs(images: Path | None, n: int, folder: Path) -> tuple[list[Path], str]:
    """The N input TIFFs in a folder of their own (PSSR2 globs every *.tif below its path)."""
    import numpy as np
    import tifffile

    folder.mkdir(parents=True)
    source = images if images is not None else DEFAULT_SOURCE
    files = sorted(p for p in source.glob("*") if p.suffix.lower() in (".tif", ".tiff"))
    if len(files) < n:
        flag = "--images" if images is not None else f"--images (default {DEFAULT_SOURCE})"
        sys.exit(f"{flag}: expected at least {n} .tif/.tiff files, found {len(files)}")
    inputs = []
    for src in files[:n]:
        dst = folder / f"{src.stem}.tif"
        if images is not None:
            shutil.copyfile(src, dst)
        else:  # area-downsample the 512^2 section by 2, keep the top-left SIDE^2
            image = tifffile.imread(src)
            if image.ndim != 2 or min(image.shape) < 2 * SIDE:
                sys.exit(f"{src}: expected a 2D image of at least {2 * SIDE}^2, got {image.shape}")
            h, w = (image.shape[0] // 2) * 2, (image.shape[1] // 2) * 2
            small = image[:h, :w].reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))
            tifffile.imwrite(dst, np.round(small[:SIDE, :SIDE]).astype(image.dtype))
        inputs.append(dst)
    shapes = {tifffile.imread(p).shape for p in inputs}
    dtypes = {str(tifffile.imread(p).dtype) for p in inputs}
    what = "area-downsampled by 2, top-left 256^2" if images is None else "as given"
    shape_text = ", ".join(str(shape) for shape in sorted(shapes))
    images_text = f"{n} image{'s' if n > 1 else ''} {shape_text} {', '.join(sorted(dtypes))}"
    return inputs, f"{images_text} from {source} ({what})"


# ----------------------------------------------------------------------------- decrappify


def decrappify_model(model: Path | None, workdir: Path) -> tuple[Path, str]:
    if model is not None:
        if not model.exists():
            sys.exit(f"--model {model}: no such file or folder")
        return model.resolve(), f"{model} (given)"
    from decrappify.config.model import ModelInfo
    from decrappify.config.train import TrainConfig
    from decrappify.models import build_generator, save_model

    cfg = TrainConfig().generator
    net = build_generator(cfg, seed=0)
    path = save_model(workdir / "default_generator.safetensors", net, ModelInfo(generator=cfg))
    millions = sum(p.numel() for p in net.parameters()) / 1e6
    return path, (
        f"default generator ({cfg.encoder.value}, {cfg.preset.value}, nf_factor "
        f"{cfg.nf_factor}, x{cfg.scale}, {millions:.1f} M parameters), untrained"
    )


def receptive_field_sidecar(model: Path) -> Path:
    from decrappify.predict.receptive import cache_paths

    return cache_paths(model, digest="")[0]  # the sidecar beside the model


def engine_note(report: Path, measured: bool | None) -> str:
    """What the engine chose, from ``--report``: tile, overlap (radius), compute time."""
    try:
        results = json.loads(report.read_text())["results"]
    except (OSError, ValueError, KeyError):
        return "no report"
    infos = [r.get("info", {}) for r in results]
    first = infos[0] if infos else {}
    compute = sum(i.get("compute_seconds", 0.0) for i in infos)
    text = f"tile {first.get('tile')}, overlap {first.get('overlap')}"
    if first.get("radius") is not None:  # the automatic overlap: from the receptive field
        rf = {True: "measured in this run", False: "cached", None: "?"}[measured]
        text += f" (receptive-field radius {first['radius']}, {rf})"
    return text + f", batch {first.get('batch')}, compute {compute:.1f} s"


def decrappify_command(model: Path, inputs_dir: Path, extra: list[str]) -> list[str]:
    exe = Path(sys.executable).with_name("decrappify")
    base = [str(exe)] if exe.exists() else [sys.executable, "-m", "decrappify"]
    return [*base, "predict", str(model), str(inputs_dir), "--format", "tif", *extra]


# ----------------------------------------------------------------------------- PSSR2


def ensure_pssr2(venv: Path, log: Path) -> Path:
    """PSSR2's venv (made once), and its Python; pip's output goes to ``log``."""
    python = venv / "bin" / "python"
    stamp = venv / PSSR2_STAMP
    if stamp.is_file() and python.exists():
        if json.loads(stamp.read_text()).get("requirements") == PSSR2_REQUIREMENTS:
            return python
    if venv.exists():
        if not (venv / "pyvenv.cfg").is_file():
            sys.exit(f"--pssr2-venv {venv}: exists and is not a virtual environment")
        shutil.rmtree(venv)
    print(f"installing PSSR2 into {venv} (once): pip install {' '.join(PSSR2_REQUIREMENTS)}")
    print(f"  (pip's output: {log})", flush=True)
    with log.open("ab") as sink:
        for cmd in (
            [sys.executable, "-m", "venv", str(venv)],
            [str(python), "-m", "pip", "install", *PSSR2_REQUIREMENTS],
        ):
            sink.write(f"$ {shlex.join(cmd)}\n".encode())
            sink.flush()
            if subprocess.run(cmd, stdout=sink, stderr=subprocess.STDOUT).returncode != 0:
                sys.exit(f"--with-pssr2: installing PSSR2 failed: {shlex.join(cmd)}; see {log}")
    stamp.write_text(json.dumps({"requirements": PSSR2_REQUIREMENTS}) + "\n")
    return python


def write_timm_stub(folder: Path) -> Path:
    package = folder / "timm"
    package.mkdir(parents=True, exist_ok=True)
    for name, text in TIMM_STUB.items():
        (package / name).write_text(text)
    return folder


def pssr2_setup(venv: Path, env: dict[str, str]) -> tuple[Path, dict[str, Any]]:
    """Random ResUNet weights (cached in the venv) and the versions and threads seen there."""
    python = venv / "bin" / "python"
    weights = venv / PSSR2_WEIGHTS
    if not weights.is_file():
        cmd = [str(python), SCRIPT, "--child", "pssr2-weights", str(weights)]
        if subprocess.run(cmd, env=env, check=False).returncode != 0:
            sys.exit(f"--with-pssr2: could not make PSSR2's ResUNet: {shlex.join(cmd)}")
    probe = (
        "import json, torch; from importlib import metadata as m; from pssr.models import ResUNet;"
        "print(json.dumps({'pssr': m.version('pssr'), 'torch': torch.__version__,"
        "'numpy': m.version('numpy'), 'torch_threads': torch.get_num_threads(),"
        "'parameters_m': round(sum(p.numel() for p in ResUNet().parameters()) / 1e6, 1)}))"
    )
    proc = subprocess.run([str(python), "-c", probe], env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"--with-pssr2: pssr does not import in {venv}:\n{proc.stderr[-2000:]}")
    return weights, json.loads(proc.stdout.strip().splitlines()[-1])


def check_sliding(inputs: list[Path], tile: int, overlap: int) -> None:
    import tifffile

    for src in inputs:
        for side in tifffile.imread(src).shape:
            if not 0 <= overlap < tile <= side or (side - tile) % (tile - overlap):
                sys.exit(
                    f"--pssr2-tile {tile} --pssr2-overlap {overlap}: PSSR2's SlidingDataset "
                    f"drops what its tiles do not cover; expected overlap < tile <= {side} and "
                    f"({side} - tile) a multiple of (tile - overlap)"
                )


# ----------------------------------------------------------------------------- profiles


def pyspy_table(raw: Path, rate: int, top: int = TOP) -> str:
    """Top functions by cumulative samples, from py-spy's collapsed stacks (all threads)."""
    cumulative: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = [re.sub(r":\d+\)$", ")", f) for f in stack.split(";")]
        total += int(count)
        own[frames[-1]] += int(count)
        for frame in set(frames):
            cumulative[frame] += int(count)
    lines = [
        f"py-spy, {total} samples at {rate} Hz over all threads (thread-seconds = samples / "
        f"rate; idle waits not sampled)",
    ]
    for title, counts, n in (("cumulative", cumulative, top), ("self", own, top // 2)):
        lines.append(f"by {title} samples:")
        lines.append(f"{'cum s':>8} {'cum %':>6} {'self s':>7}  function (file)")
        for frame, _ in counts.most_common(n):
            lines.append(
                f"{cumulative[frame] / rate:8.2f} {100 * cumulative[frame] / max(total, 1):5.1f}% "
                f"{own[frame] / rate:7.2f}  {frame}"
            )
    return "\n".join(lines)


def profile_decrappify(cmd: list[str], env: dict[str, str], workdir: Path) -> str:
    """Run decrappify's predict once under py-spy (or cProfile); the top functions."""
    import pstats

    workdir.mkdir(parents=True)
    predict_args = cmd[cmd.index("predict") :]
    spy = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
    if spy:
        raw, rate = workdir / "pyspy.txt", 100
        spy_cmd = [spy, "record", "--format", "raw", "--rate", str(rate), "-o", str(raw), "--"]
        run = run_timed([*spy_cmd, *cmd], env, workdir / "pyspy.log")
        if run.returncode == 0 and raw.is_file():
            return f"wall {run.wall:.1f} s under py-spy\n" + pyspy_table(raw, rate)
        print(f"py-spy failed (exit {run.returncode}, see {run.log}); using cProfile instead")
    stats_file = workdir / "cprofile.pstats"
    child = [sys.executable, SCRIPT, "--child", "cprofile", str(stats_file), *predict_args]
    run = run_timed(child, env, workdir / "cprofile.log")
    if run.returncode != 0 or not stats_file.is_file():
        return f"cProfile run failed (exit {run.returncode}); see {run.log}"
    text = io.StringIO()
    stats = pstats.Stats(str(stats_file), stream=text)
    stats.strip_dirs().sort_stats("cumulative").print_stats(TOP)
    stats.sort_stats("tottime").print_stats(TOP // 2)
    head = f"cProfile, all threads merged (their times add up), wall {run.wall:.1f} s"
    return head + "\n" + text.getvalue().strip()


# ----------------------------------------------------------------------------- report


def summarise(job: Job) -> dict[str, Any]:
    good = [r for r in job.runs if r.returncode == 0]
    best = min(good, key=lambda r: r.wall) if good else None
    failed = [r for r in job.runs if r.returncode != 0 or not r.check.get("ok")]
    check = (failed or job.runs)[0].check.get("detail", "")
    return {
        "tool": job.tool,
        "path": job.path,
        "version": job.version,
        "command": shlex.join(job.command_in(Path("RUN"))),
        "threads_env": job.env.get("OMP_NUM_THREADS"),
        "runs": [asdict(r) for r in job.runs],
        "wall_best_s": best.wall if best else None,
        "wall_median_s": statistics.median(r.wall for r in good) if good else None,
        "user_s": best.user if best else None,
        "sys_s": best.sys if best else None,
        "peak_rss_mib": best.peak_rss_mib if best else None,
        "ok": not failed,
        "check": check,
    }


def print_table(rows: list[dict[str, Any]], threads: int) -> None:
    def sec(value: float | None) -> str:
        return "-" if value is None else f"{value:.1f} s"

    header = ["tool", "path", "wall best", "median", "user", "sys", "peak RSS", "thr", "output"]
    table = [
        [
            r["tool"],
            r["path"],
            sec(r["wall_best_s"]),
            sec(r["wall_median_s"]),
            sec(r["user_s"]),
            sec(r["sys_s"]),
            "-" if r["peak_rss_mib"] is None else f"{r['peak_rss_mib'] / 1024:.2f} GiB",
            str(threads),
            r["check"],
        ]
        for r in rows
    ]
    widths = [max(len(row[i]) for row in [header, *table]) for i in range(len(header))]
    for row in [header, *table]:
        cells = [
            c.ljust(w) if i < 2 else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        print("  ".join([*cells[:-1], row[-1]]))


def git_version() -> str:
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run(
        ["git", "-C", str(root), "describe", "--always", "--dirty"],
        capture_output=True,
        text=True,
        check=False,
    )
    return proc.stdout.strip() or "?"


# ----------------------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, help="folder of input TIFFs (first N used as is)")
    parser.add_argument("-n", type=int, default=5, help="number of images (default 5)")
    parser.add_argument("--threads", type=int, default=2, help="threads per tool (default 2)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per tool (default 3)")
    parser.add_argument("--model", type=Path, help="decrappify model (default: untrained)")
    parser.add_argument(
        "--decrappify-args",
        default="",
        help="extra options for decrappify predict, e.g. '--tile 256' (default: none)",
    )
    parser.add_argument("--with-pssr2", action="store_true", help="also time PSSR2 2.4.0")
    parser.add_argument("--pssr2-venv", type=Path, default=Path("/tmp/pssr2-venv"))
    parser.add_argument("--pssr2-tile", type=int, default=128, help="LR tile (sliding window)")
    parser.add_argument("--pssr2-overlap", type=int, default=64, help="LR overlap (sliding)")
    parser.add_argument("--json", type=Path, help="write the record here")
    parser.add_argument("--profile", action="store_true", help="profile decrappify once")
    parser.add_argument("--workdir", type=Path, help="keep inputs, outputs and logs here")
    args = parser.parse_args()
    for name in ("n", "threads", "repeat"):
        if getattr(args, name) < 1:
            parser.error(f"{'-n' if name == 'n' else '--' + name} must be >= 1")

    workdir = (args.workdir or Path(tempfile.mkdtemp(prefix="decrappify-speed-"))).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    if any(workdir.iterdir()):
        sys.exit(f"--workdir {workdir}: expected an empty or new folder")
    try:
        return benchmark(args, workdir)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)


def benchmark(args: argparse.Namespace, workdir: Path) -> int:
    import tifffile

    info = machine_info()
    load_before = os.getloadavg()
    inputs, images = prepare_inputs(args.images, args.n, workdir / "inputs")
    inputs_dir = inputs[0].parent
    model, model_text = decrappify_model(args.model, workdir)
    sidecar = receptive_field_sidecar(model)
    extra = ["--threads", str(args.threads), *shlex.split(args.decrappify_args)]
    jobs = [
        Job(
            "decrappify",
            f"CLI predict ({args.decrappify_args or 'default settings'})",
            f"{metadata.version('decrappify')} ({git_version()}, torch "
            f"{metadata.version('torch')})",
            decrappify_command(model, inputs_dir, extra),
            thread_env(args.threads),
            "out",
        )
    ]
    pssr2: dict[str, Any] = {}
    if args.with_pssr2:
        check_sliding(inputs, args.pssr2_tile, args.pssr2_overlap)
        python = ensure_pssr2(args.pssr2_venv.resolve(), workdir / "pssr2-install.log")
        env = thread_env(args.threads, write_timm_stub(workdir / "pssr2-stubs"))
        weights, pssr2 = pssr2_setup(args.pssr2_venv.resolve(), env)
        if pssr2["torch_threads"] != args.threads:
            print(f"warning: torch in PSSR2's venv uses {pssr2['torch_threads']} threads")
        side = max(max(tifffile.imread(p).shape) for p in inputs)
        version = f"pssr {pssr2['pssr']}, torch {pssr2['torch']}, numpy {pssr2['numpy']}"
        resunet = f"ResUNet {pssr2['parameters_m']} M, random"
        jobs.append(
            Job(
                "PSSR2",
                f"whole image (CLI, {resunet})",
                version,
                [
                    str(python.with_name("pssr")),
                    *("-dp", str(inputs_dir), "-mp", str(weights)),
                    *("-dt", f"ImageDataset(hr_res={SCALE * side})"),
                ],
                env,
                "preds",
                cwd_is_run=True,
            )
        )
        jobs.append(
            Job(
                "PSSR2",
                f"sliding window (tile {args.pssr2_tile}, overlap {args.pssr2_overlap}, {resunet})",
                version,
                [
                    str(python),
                    SCRIPT,
                    *("--child", "pssr2-sliding", str(inputs_dir), str(weights), "out"),
                    *(str(args.pssr2_tile), str(args.pssr2_overlap)),
                ],
                env,
                "out",
                cwd_is_run=True,
            )
        )

    print(
        f"predict speed: {images} -> x{SCALE}, TIFF in and out, whole processes, "
        f"{args.threads} threads, best of {args.repeat}"
    )
    print(f"decrappify model: {model_text}")
    if args.model is None:
        print(
            "  note: the automatic overlap is measured on these random weights; a trained "
            "model's receptive field, hence overlap and tile count, is larger: pass --model "
            "for the figure users get"
        )
    for repeat in range(1, args.repeat + 1):
        for job in jobs:
            run_dir = workdir / "runs" / f"{job.key}-{repeat}"
            run_dir.mkdir(parents=True)
            had_rf = sidecar.is_file()
            cwd = run_dir if job.cwd_is_run else None
            run = run_timed(job.command_in(run_dir), job.env, run_dir / "log.txt", cwd)
            if job.tool == "decrappify":
                measured = None if not sidecar.is_file() else not had_rf
                run.note = engine_note(run_dir / REPORT, measured)
            run.check = (
                check_outputs(inputs, run_dir / job.out)
                if run.returncode == 0
                else {"ok": False, "detail": f"exit {run.returncode}, see {run.log}"}
            )
            job.runs.append(run)
            print(
                f"  run {repeat} {job.tool} {job.path.split(' (')[0]}: wall {run.wall:.1f} s, "
                f"user {run.user:.1f} s, sys {run.sys:.1f} s, peak RSS "
                f"{run.peak_rss_mib / 1024:.2f} GiB; {run.check['detail']}"
                + (f"; {run.note}" if run.note else ""),
                flush=True,
            )
            if run.returncode != 0:
                tail = Path(run.log).read_text(errors="replace").splitlines()[-15:]
                print("    " + "\n    ".join(tail))

    profile = ""
    if args.profile:
        job = jobs[0]
        command = [*job.command, "--out", str(workdir / "profile" / "out")]
        profile = profile_decrappify(command, job.env, workdir / "profile")
    load_after = os.getloadavg()

    rows = [summarise(job) for job in jobs]
    print()
    print(
        f"machine: {info['cpu']}, {info['cores']} cores available ({info['cpu_count']} CPUs), "
        f"{info['ram_gib']} GiB RAM; {info['platform']}, python {info['python']}"
    )
    print(
        f"load average (1/5/15 min) before {' '.join(f'{x:.2f}' for x in load_before)}, "
        f"after {' '.join(f'{x:.2f}' for x in load_after)}"
    )
    for tool, version in dict((row["tool"], row["version"]) for row in rows).items():
        print(f"{tool}: {version}")
    print_table(rows, args.threads)
    ours, whole = (
        rows[0]["wall_best_s"],
        next((r["wall_best_s"] for r in rows if r["path"].startswith("whole")), None),
    )
    if ours and whole:
        print(
            f"decrappify vs PSSR2 whole image (best wall): {whole / ours:.2f}x as fast "
            f"(bar >= 1x, goal 3x)"
        )
    if profile:
        print(f"\nprofile of decrappify predict:\n{profile}")

    record = {
        "benchmark": "predict_speed",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": info,
        "load_average_before": load_before,
        "load_average_after": load_after,
        "images": images,
        "threads": args.threads,
        "repeat": args.repeat,
        "decrappify_model": model_text,
        "pssr2": pssr2,
        "results": rows,
        "profile": profile,
    }
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.json.with_name(args.json.name + ".part")
        tmp.write_text(json.dumps(record, indent=2) + "\n")
        os.replace(tmp, args.json)
        print(f"record written to {args.json}")
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        sys.exit(CHILDREN[sys.argv[2]](*sys.argv[3:]))
    sys.exit(main())
