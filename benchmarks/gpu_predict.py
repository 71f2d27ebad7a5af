"""The prediction checks a GPU session runs in one go (issue 17, items 4 and 5).

A session lent a GPU runs this one script (about 10 minutes on one card), which runs the
prepared benchmarks in turn, each as its own process with a time limit, writes their
records under ``--out`` and prints a summary to copy into ``docs/benchmarks.md``:

1. ``predict_overhead.py --device cuda --size 2048``: end-to-end OME-Zarr -> OME-Zarr
   throughput against the raw forward throughput on a large image (8192^2 output, 16
   blocks); target >= 0.8;
2. ``predict_oom.py --device cuda``: the out-of-memory back-off exercised for real with
   ``torch.cuda.set_per_process_memory_fraction``, finishing with the output of a run
   that fits;
3. ``trust_cost.py --device cuda``: the consistency map's cost next to the prediction on
   the GPU (computed on the device from the blocks in memory); target < 10 %;
4. ``predict_speed.py --decrappify-args "--device cuda"``: the whole command on the 5 ISBI
   inputs (start-up included).

The GPU machine reaches nothing outside it: carry the data (``--data``, the ISBI sections
are enough) and the wheels the environment needs with the working tree.

Usage: python benchmarks/gpu_predict.py --out OUT [--data DIR] [--model PATH]
       [--only overhead,oom,trust,speed]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from _common import add_data_argument, machine, machine_line

HERE = Path(__file__).resolve().parent


def steps(args: argparse.Namespace) -> dict[str, tuple[list[str], int]]:
    """Each check: its command (without the JSON record) and its time limit in seconds."""
    model = ["--model", str(args.model)] if args.model else []
    return {
        "overhead": (
            ["predict_overhead.py", "--device", "cuda", "--size", "2048", *model],
            240,
        ),
        "oom": (["predict_oom.py", "--device", "cuda", "--size", "2048", *model], 180),
        "trust": (
            [
                "trust_cost.py",
                "--device",
                "cuda",
                "--data",
                str(args.data),
                "-n",
                "5",
                "--threads",
                "8",
                *model,
            ],
            150,
        ),  # fmt: skip
        "speed": (
            [
                "predict_speed.py",
                "--data",
                str(args.data),
                "--threads",
                "8",
                "--repeat",
                "2",
                "--decrappify-args",
                "--device cuda",
                *model,
            ],
            150,
        ),  # fmt: skip
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_data_argument(parser)
    parser.add_argument("--out", type=Path, required=True, help="folder of the records")
    parser.add_argument("--model", type=Path, help="a trained model (default: untrained)")
    parser.add_argument("--only", default="overhead,oom,trust,speed")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    print(machine_line(machine(torch=True)), flush=True)
    summary = {}
    for name, (command, limit) in steps(args).items():
        if name not in args.only.split(","):
            continue
        record = args.out / f"{name}.json"
        cmd = [sys.executable, str(HERE / command[0]), *command[1:], "--json", str(record)]
        print(f"\n== {name}: {' '.join(cmd[1:])} (limit {limit} s)", flush=True)
        start = time.perf_counter()
        try:
            proc = subprocess.run(cmd, timeout=limit, check=False)
            status = f"exit {proc.returncode}"
        except subprocess.TimeoutExpired:
            status = f"stopped after {limit} s"
        summary[name] = {"status": status, "seconds": round(time.perf_counter() - start, 1)}
        if record.is_file():
            summary[name]["record"] = str(record)
        print(f"== {name}: {status} in {summary[name]['seconds']} s", flush=True)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    return 0 if all(s["status"] == "exit 0" for s in summary.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
