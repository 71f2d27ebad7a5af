"""Benchmark: end-to-end prediction time of decrappify and of PSSR2, side by side (issue 17).

Both tools super-resolve the same N uint8 TIFFs (default: the first 5 sections of the ISBI
2012 ssTEM training stack under ``--data``, area-downsampled by 2 to 256^2; ``--images
DIR`` for others) to 4x TIFFs, each as a whole process with the same number of threads
(``OMP_NUM_THREADS``; decrappify also gets ``--threads``). The runs alternate between the
tools (decrappify, PSSR2 whole image, PSSR2 sliding window; ``--repeat`` times) so that
they see the same load; each is timed by wall clock with its own user and system CPU time,
peak RSS and the 1-minute load average when it started. The ratio is given from the best
runs and as the median of the ratios of runs made one after the other (the figure least
moved by a changing load).

* **decrappify**: ``decrappify predict MODEL INPUTS --out OUT --format tif --threads T``
  (otherwise its defaults; ``--report`` only to read back the tile and overlap the engine
  chose). MODEL is ``--model``: by default the shipped, trained starting point ``em-4x``
  (what a user of EM data runs; the headline figure), a model path, or ``untrained``: a
  model of the default training generator with its initial weights. Weights do not change
  the cost of a forward pass, but the automatic overlap comes from the receptive field
  measured on the network (about 1 pixel for the untrained weights, whose decoder starts
  at zero; a trained model's is larger, so are its windows; ``--active``: the untrained
  model with its zero-initialised layers -- the blocks' layer scales, the last
  convolution -- made random, so that every block contributes and the field is the
  architecture's). ``--also-untrained`` times the untrained model too, as one more job
  of the same alternation. The first run with a model measures its receptive field and
  caches it beside the model (``em-4x`` ships its own). ``--baseline-src DIR`` times
  the same command with another version of decrappify's code too (``PYTHONPATH=DIR/src``,
  e.g. ``git archive main src | tar -x -C DIR``), in the same alternation: a before/after
  pair under the same load.
* **PSSR2** (``--with-pssr2``): pssr 2.4.0 in its own venv (``pssr2_env.py``), its default
  ``ResUNet`` (60 M parameters, 4x) with random weights, seed 0: *whole image* through its
  CLI (``pssr -dp INPUTS -mp resunet.pth -dt "ImageDataset(hr_res=1024)"``: one forward
  pass per image) and *sliding window* (``SlidingDataset`` tiles, stitched by
  ``pssr.util.reassemble_sheets``; ``--pssr2-paths whole`` leaves it out).

Each run's outputs are checked: one TIFF per input, 4x its shape (leading axes of length 1
squeezed: PSSR2 writes (1, H, W)) and its dtype. Where the time goes inside decrappify:
``predict_profile.py``.

Usage: python benchmarks/predict_speed.py [--data DIR | --images DIR] [-n 5] [--threads 2]
       [--repeat 3] [--model em-4x|untrained|PATH] [--active] [--also-untrained]
       [--baseline-src DIR]
       [--with-pssr2] [--pssr2-paths whole,sliding]
       [--pssr2-venv /tmp/pssr2-venv] [--json PATH] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import statistics
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from _common import (
    Run,
    activate,
    add_data_argument,
    data_folder,
    git_version,
    load_line,
    machine,
    machine_line,
    now,
    run_timed,
    thread_env,
    write_record,
)
from pssr2_env import RUNNER, ensure_pssr2, pssr2_setup, write_timm_stub

#: LR side of the default inputs, and the factor.
SIDE, SCALE = 256, 4
#: decrappify's ``--report`` file in each run folder.
REPORT = "report.json"


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
        """A folder name: ``decrappify-cli-predict-em-4x``, ``pssr2-whole-image``..."""
        name = f"{self.tool} {self.path.split('(')[0]}".lower()
        return re.sub(r"[^a-z0-9]+", "-", name).strip("-")


def prepare_inputs(images: Path | None, data: Path, n: int, folder: Path) -> tuple[list[Path], str]:
    """The N input TIFFs in a folder of their own (PSSR2 globs every *.tif below its path)."""
    import numpy as np
    import tifffile

    source = images if images is not None else data_folder(data, "em", "isbi2012_train")
    files = sorted(p for p in source.glob("*") if p.suffix.lower() in (".tif", ".tiff"))
    if len(files) < n:
        sys.exit(f"{source}: expected at least {n} .tif/.tiff files, found {len(files)}")
    folder.mkdir(parents=True)
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
    arrays = [tifffile.imread(p) for p in inputs]
    shapes = ", ".join(str(s) for s in sorted({a.shape for a in arrays}))
    dtypes = ", ".join(sorted({str(a.dtype) for a in arrays}))
    what = "area-downsampled by 2, top-left 256^2" if images is None else "as given"
    return inputs, f"{n} image(s) {shapes} {dtypes} from {source} ({what})"


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


#: ``--model`` for the default generator with its initial weights.
UNTRAINED = "untrained"


def decrappify_model(model: str, workdir: Path, active: bool) -> tuple[str, str]:
    """The model to run (what the CLI is given) and its description.

    ``--model``: a shipped starting point's name (passed by name, as a user would), a
    model path, or ``untrained`` (the default generator, saved here).
    """
    if model != UNTRAINED:
        from decrappify.pretrained import STARTING_POINTS, read_header_info

        if model in STARTING_POINTS and not Path(model).exists():
            from decrappify.pretrained import starting_point_path

            training = read_header_info(starting_point_path(model)).get("training", {})
            steps = training.get("steps") if isinstance(training, dict) else None
            if isinstance(steps, dict):  # steps per phase
                steps = " + ".join(f"{n} {phase}" for phase, n in steps.items())
            after = f": {steps} steps" if steps else ""
            return model, f"shipped starting point {model} (trained{after})"
        if not Path(model).exists():
            sys.exit(f"--model {model}: no such file or folder, nor a starting point")
        return str(Path(model).resolve()), f"{model} (given)"
    from decrappify.config.model import ModelInfo
    from decrappify.config.train import TrainConfig
    from decrappify.models import build_generator, save_model

    cfg = TrainConfig().generator
    net = build_generator(cfg, seed=0)
    state = "untrained"
    if active:
        state = f"untrained, {activate(net)} zero-initialised tensors made random (--active)"
    path = save_model(workdir / "default_generator.safetensors", net, ModelInfo(generator=cfg))
    millions = sum(p.numel() for p in net.parameters()) / 1e6
    text = f"default generator ({cfg.describe()}, x{cfg.scale}, {millions:.1f} M), {state}"
    return str(path), text


def engine_note(report: Path) -> str:
    """What the engine chose, from ``--report``: tile, overlap (radius), compute time."""
    try:
        infos = [r.get("info", {}) for r in json.loads(report.read_text())["results"]]
    except (OSError, ValueError, KeyError):
        return "no report"
    first = infos[0] if infos else {}
    compute = sum(i.get("compute_seconds") or 0.0 for i in infos)
    text = f"tile {first.get('tile')}, overlap {first.get('overlap')}"
    if first.get("radius") is not None:
        text += f" (receptive-field radius {first['radius']})"
    return text + f", batch {first.get('batch')}, compute {compute:.1f} s"


def decrappify_job(
    model: str, label: str, inputs_dir: Path, args: argparse.Namespace, src: Path | None = None
) -> Job:
    """decrappify's CLI on the inputs; with ``src``, that source tree's code instead of ours."""
    exe = Path(sys.executable).with_name("decrappify")
    base = [str(exe)] if exe.exists() else [sys.executable, "-m", "decrappify"]
    extra = ["--threads", str(args.threads), *shlex.split(args.decrappify_args)]
    version = f"{metadata.version('decrappify')} ({git_version()}"
    if src is not None:
        if not (src / "src" / "decrappify" / "__init__.py").is_file():
            sys.exit(f"--baseline-src {src}: expected src/decrappify/ in it")
        label, version = f"{label}, baseline {src}", f"code of {src} ("
    return Job(
        "decrappify",
        f"CLI predict, {label} ({args.decrappify_args or 'default settings'})",
        f"{version}, torch {metadata.version('torch')})",
        [*base, "predict", model, str(inputs_dir), "--format", "tif", *extra],
        thread_env(args.threads, None if src is None else src.resolve() / "src"),
        "out",
    )


def pssr2_jobs(
    inputs: list[Path], workdir: Path, args: argparse.Namespace
) -> tuple[list[Job], dict]:
    """PSSR2's whole-image and sliding-window jobs (its venv made once)."""
    import tifffile

    paths = set(args.pssr2_paths.split(","))
    venv = args.pssr2_venv.resolve()
    python = ensure_pssr2(venv, workdir / "pssr2-install.log")
    env = thread_env(args.threads, write_timm_stub(workdir / "pssr2-stubs"))
    weights, info = pssr2_setup(venv, env)
    if info["torch_threads"] != args.threads:
        print(f"warning: torch in PSSR2's venv uses {info['torch_threads']} threads")
    side = max(max(tifffile.imread(p).shape) for p in inputs)
    version = f"pssr {info['pssr']}, torch {info['torch']}, numpy {info['numpy']}"
    resunet = f"ResUNet {info['parameters_m']} M, random"
    inputs_dir = str(inputs[0].parent)
    jobs = []
    if "whole" in paths:
        cli = [str(python.with_name("pssr")), "-dp", inputs_dir, "-mp", str(weights)]
        cli += ["-dt", f"ImageDataset(hr_res={SCALE * side})"]
        jobs.append(Job("PSSR2", f"whole image (CLI, {resunet})", version, cli, env, "preds", True))
    if "sliding" in paths:
        tile, overlap = args.pssr2_tile, args.pssr2_overlap
        for src in inputs:
            for n in tifffile.imread(src).shape:
                if not 0 <= overlap < tile <= n or (n - tile) % (tile - overlap):
                    sys.exit(
                        f"--pssr2-tile {tile} --pssr2-overlap {overlap}: PSSR2's SlidingDataset "
                        f"drops what its tiles do not cover; expected overlap < tile <= {n} and "
                        f"({n} - tile) a multiple of (tile - overlap)"
                    )
        cmd = [
            str(python),
            RUNNER,
            "sliding",
            inputs_dir,
            str(weights),
            "out",
            str(tile),
            str(overlap),
        ]
        jobs.append(
            Job(
                "PSSR2",
                f"sliding window (tile {tile}, overlap {overlap}, {resunet})",
                version,
                cmd,
                env,
                "out",
                True,
            )  # fmt: skip
        )
    return jobs, info


def run_all(jobs: list[Job], inputs: list[Path], workdir: Path, repeat: int) -> None:
    """Alternate the jobs ``repeat`` times; check and note each run."""
    for r in range(1, repeat + 1):
        for job in jobs:
            run_dir = workdir / "runs" / f"{job.key}-{r}"
            run_dir.mkdir(parents=True)
            cwd = run_dir if job.cwd_is_run else None
            run = run_timed(job.command_in(run_dir), job.env, run_dir / "log.txt", cwd)
            if job.tool == "decrappify":
                run.note = engine_note(run_dir / REPORT)
            run.check = (
                check_outputs(inputs, run_dir / job.out)
                if run.returncode == 0
                else {"ok": False, "detail": f"exit {run.returncode}, see {run.log}"}
            )
            job.runs.append(run)
            print(
                f"  run {r} {job.tool} {job.path.split(' (')[0]}: wall {run.wall:.1f} s, user "
                f"{run.user:.1f} s, sys {run.sys:.1f} s, peak RSS {run.peak_rss_mib / 1024:.2f} "
                f"GiB, load {run.load:.1f}; {run.check['detail']}"
                + (f"; {run.note}" if run.note else ""),
                flush=True,
            )
            if run.returncode != 0:
                tail = Path(run.log).read_text(errors="replace").splitlines()[-15:]
                print("    " + "\n    ".join(tail))


def summarise(job: Job) -> dict[str, Any]:
    good = [r for r in job.runs if r.returncode == 0]
    best = min(good, key=lambda r: r.wall) if good else None
    failed = [r for r in job.runs if r.returncode != 0 or not r.check.get("ok")]
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
        "check": (failed or job.runs)[0].check.get("detail", ""),
    }


def print_table(rows: list[dict[str, Any]], threads: int) -> None:
    def sec(value: float | None) -> str:
        return "-" if value is None else f"{value:.1f} s"

    header = ["tool", "path", "wall best", "median", "user", "sys", "peak RSS", "thr", "output"]
    table = [
        [r["tool"], r["path"], sec(r["wall_best_s"]), sec(r["wall_median_s"]), sec(r["user_s"]),
         sec(r["sys_s"]),
         "-" if r["peak_rss_mib"] is None else f"{r['peak_rss_mib'] / 1024:.2f} GiB",
         str(threads), r["check"]]
        for r in rows
    ]  # fmt: skip
    widths = [max(len(row[i]) for row in [header, *table]) for i in range(len(header))]
    for row in [header, *table]:
        cells = [
            c.ljust(w) if i < 2 else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        print("  ".join([*cells[:-1], row[-1]]))


def ratios(ours: Job, theirs: Job) -> dict[str, Any] | None:
    """PSSR2's time over decrappify's: from the best runs, and paired run by run."""
    pairs = [
        b.wall / a.wall
        for a, b in zip(ours.runs, theirs.runs, strict=True)
        if a.returncode == 0 and b.returncode == 0
    ]
    if not pairs:
        return None
    best = min(r.wall for r in theirs.runs if r.returncode == 0) / min(
        r.wall for r in ours.runs if r.returncode == 0
    )
    return {"best": best, "paired_median": statistics.median(pairs), "paired": pairs}


def benchmark(args: argparse.Namespace, workdir: Path) -> int:
    info = machine()
    load_before = os.getloadavg()
    inputs, images = prepare_inputs(args.images, args.data, args.n, workdir / "inputs")
    model, model_text = decrappify_model(args.model, workdir, args.active)
    jobs = [decrappify_job(model, args.model, inputs[0].parent, args)]
    models = [model_text]
    if args.baseline_src is not None:
        jobs.append(decrappify_job(model, args.model, inputs[0].parent, args, args.baseline_src))
    if args.also_untrained and args.model != UNTRAINED:
        untrained, untrained_text = decrappify_model(UNTRAINED, workdir, args.active)
        jobs.append(decrappify_job(untrained, UNTRAINED, inputs[0].parent, args))
        models.append(untrained_text)
    pssr2: dict[str, Any] = {}
    if args.with_pssr2:
        more, pssr2 = pssr2_jobs(inputs, workdir, args)
        jobs += more
    print(
        f"predict speed: {images} -> x{SCALE}, TIFF in and out, whole processes, "
        f"{args.threads} threads, {args.repeat} alternating runs each"
    )
    print(f"decrappify model(s): {'; '.join(models)}")
    run_all(jobs, inputs, workdir, args.repeat)
    load_after = os.getloadavg()
    rows = [summarise(job) for job in jobs]
    print(f"\nmachine: {machine_line(info)}\n{load_line(load_before, load_after)}")
    for tool, version in dict((row["tool"], row["version"]) for row in rows).items():
        print(f"{tool}: {version}")
    print_table(rows, args.threads)
    whole = next((j for j in jobs if j.path.startswith("whole")), None)
    ours = [j for j in jobs if j.tool == "decrappify"]
    all_ratios = {j.path: ratios(j, whole) for j in ours} if whole else {}
    for path, r in all_ratios.items():
        if r:
            print(
                f"decrappify ({path.split(' (')[0]}) vs PSSR2 whole image: {r['best']:.2f}x as "
                f"fast (best runs), {r['paired_median']:.2f}x (median of the runs made one "
                f"after the other: {', '.join(f'{x:.2f}' for x in r['paired'])}); goal >= 3x"
            )
    ratio = all_ratios.get(ours[0].path)
    record = {
        "benchmark": "predict_speed",
        "date": now(),
        "machine": info,
        "load_average_before": load_before,
        "load_average_after": load_after,
        "images": images,
        "threads": args.threads,
        "repeat": args.repeat,
        "decrappify_model": model_text,
        "decrappify_models": models,
        "pssr2": pssr2,
        "results": rows,
        "ratio_to_pssr2_whole": ratio,
        "ratios_to_pssr2_whole": all_ratios,
    }
    if args.json is not None:
        write_record(args.json, record)
    return 0 if all(r["ok"] for r in rows) else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_data_argument(parser)
    parser.add_argument("--images", type=Path, help="folder of input TIFFs (first N used as is)")
    parser.add_argument("-n", type=int, default=5, help="number of images (default 5)")
    parser.add_argument("--threads", type=int, default=2, help="threads per tool (default 2)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per tool (default 3)")
    parser.add_argument(
        "--model",
        default="em-4x",
        help="decrappify model: a starting point's name, a path, or 'untrained' (the default "
        "generator's initial weights); default em-4x, the shipped trained EM starting point",
    )
    parser.add_argument(
        "--also-untrained",
        action="store_true",
        help="also time the untrained default generator (one more job in the alternation)",
    )
    parser.add_argument(
        "--active",
        action="store_true",
        help="untrained model with its zero-initialised layers made random (its receptive "
        "field, hence its overlap, as after training)",
    )
    parser.add_argument(
        "--decrappify-args",
        default="",
        help="extra options for decrappify predict, e.g. '--tile 256' (default: none)",
    )
    parser.add_argument(
        "--baseline-src",
        type=Path,
        help="also time decrappify with the code of this source tree (PYTHONPATH=DIR/src)",
    )
    parser.add_argument("--with-pssr2", action="store_true", help="also time PSSR2 2.4.0")
    parser.add_argument("--pssr2-paths", default="whole,sliding", help="whole and/or sliding")
    parser.add_argument("--pssr2-venv", type=Path, default=Path("/tmp/pssr2-venv"))
    parser.add_argument("--pssr2-tile", type=int, default=128, help="LR tile (sliding window)")
    parser.add_argument("--pssr2-overlap", type=int, default=64, help="LR overlap (sliding)")
    parser.add_argument("--json", type=Path, help="write the record here")
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


if __name__ == "__main__":
    sys.exit(main())
