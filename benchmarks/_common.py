"""What every benchmark script needs: the machine, the data folder, timed processes, records.

Import it from a script in this folder (``from _common import ...``: the script's folder
is first on ``sys.path``). Nothing here imports torch or decrappify at import time.

* :func:`machine` / :func:`machine_line`: the CPU, cores, memory, Python, and (when asked)
  torch and its GPUs, for the record and the ``docs/benchmarks.md`` row;
* :func:`add_data_argument` / :func:`data_folder`: ``--data`` (default ``../shared/data``
  beside the repository), the one place real data is looked for;
* :func:`run_timed`: a whole process timed by wall clock, with its own CPU times, peak
  memory and the load average when it started (the machine may be shared: say so);
* :func:`write_record`: a JSON record written atomically.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: The repository this folder belongs to.
REPO = Path(__file__).resolve().parents[1]
#: Where the real data sets live unless ``--data`` says otherwise.
DEFAULT_DATA = REPO.parent / "shared" / "data"


def add_data_argument(parser: argparse.ArgumentParser) -> None:
    """Add ``--data``: the folder of the real data sets (em/, fluo/, ...)."""
    parser.add_argument(
        "--data",
        type=Path,
        default=DEFAULT_DATA,
        help=f"folder of the real data sets (default {DEFAULT_DATA})",
    )


def data_folder(root: Path, *parts: str) -> Path:
    """A folder of the data sets, or exit naming it and the ``--data`` flag."""
    folder = Path(root).joinpath(*parts)
    if not folder.is_dir():
        raise SystemExit(f"--data {root}: no folder {'/'.join(parts)} in it ({folder})")
    return folder


def machine(*, torch: bool = False) -> dict[str, Any]:
    """Describe this machine (and torch's devices with ``torch=True``)."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info: dict[str, Any] = {
        "cpu": cpu,
        "cores": len(os.sched_getaffinity(0)),
        "cpu_count": os.cpu_count(),
        "ram_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }
    if torch:
        import torch as _torch

        info["torch"] = _torch.__version__
        if _torch.cuda.is_available():
            info["gpus"] = [
                f"{_torch.cuda.get_device_name(i)}, "
                f"{_torch.cuda.get_device_properties(i).total_memory / 2**30:.0f} GiB"
                for i in range(_torch.cuda.device_count())
            ]
    return info


def machine_line(info: dict[str, Any]) -> str:
    """One line for a report: CPU, cores, memory, GPUs, Python, torch."""
    text = (
        f"{info['cpu']}, {info['cores']} cores available ({info['cpu_count']} CPUs), "
        f"{info['ram_gib']} GiB RAM; {info['platform']}, python {info['python']}"
    )
    if "torch" in info:
        text += f", torch {info['torch']}"
    if info.get("gpus"):
        text += "; GPU " + "; ".join(info["gpus"])
    return text


def load_line(before: tuple[float, ...], after: tuple[float, ...]) -> str:
    """The load average (1/5/15 min) before and after a benchmark, as text."""
    return (
        f"load average (1/5/15 min) before {' '.join(f'{x:.2f}' for x in before)}, "
        f"after {' '.join(f'{x:.2f}' for x in after)}"
    )


def thread_env(threads: int, pythonpath: Path | None = None) -> dict[str, str]:
    """This environment with ``threads`` OpenMP/MKL/BLAS threads (and a PYTHONPATH)."""
    env = dict(os.environ)
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[name] = str(threads)
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    return env


@dataclass
class Run:
    """One timed process."""

    wall: float
    user: float
    sys: float
    peak_rss_mib: float
    returncode: int
    log: str
    load: float = 0.0  # 1-minute load average when it started
    check: dict[str, Any] = field(default_factory=dict)
    note: str = ""


def run_timed(cmd: list[str], env: dict[str, str], log: Path, cwd: Path | None = None) -> Run:
    """Run a process to its end: wall time, its own CPU times and peak RSS (``os.wait4``)."""
    load = os.getloadavg()[0]
    with log.open("wb") as sink:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=sink, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    return Run(
        wall,
        usage.ru_utime,
        usage.ru_stime,
        usage.ru_maxrss / 1024,
        proc.returncode,
        str(log),
        load=load,
    )


def git_version() -> str:
    """``git describe`` of the repository (``?`` outside a checkout)."""
    proc = subprocess.run(
        ["git", "-C", str(REPO), "describe", "--always", "--dirty"],
        capture_output=True,
        text=True,
        check=False,
    )
    return proc.stdout.strip() or "?"


def now() -> str:
    """The time in UTC, ISO 8601 to the second."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def write_record(path: Path, record: dict[str, Any]) -> None:
    """Write a benchmark's JSON record atomically (``path.part``, then renamed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")
    part.write_text(json.dumps(record, indent=2, default=str) + "\n")
    os.replace(part, path)
    print(f"record written to {path}")


def activate(net: Any, std: float = 0.1) -> int:
    """Give the parameters that start at zero (layer scales, last layers) random values.

    An untrained generator starts as bilinear interpolation: its blocks' scales and its
    last convolution are zero, so its measured receptive field is a pixel or so. With
    them random, every block contributes and the field is the architecture's, as after
    training. Returns the number of parameter tensors changed.
    """
    import torch

    changed = 0
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in net.named_parameters():
            if param.dim() > 1 or name.endswith(("beta", "gamma")):
                if not param.any():
                    param.copy_(std * torch.randn(param.shape, generator=generator))
                    changed += 1
    return changed
