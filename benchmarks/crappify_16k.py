"""Benchmark: crappify a generated 16k x 16k uint16 TIFF to OME-Zarr through the CLI.

Writes a synthetic fluorescence image (16384 x 16384, uint16, tiled BigTIFF, generated
chunk by chunk), then runs ``decrappify crappify big.tif --out OUT --format zarr`` in a
subprocess and prints its wall time and peak resident memory (RSS of the child, from
``getrusage``). Target (issue 2): peak RSS under 1.5 GiB.

Usage: python benchmarks/crappify_16k.py [--size 16384] [--preset fluorescence] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run_child(cmd: list[str]) -> tuple[float, float]:
    """Run a command; return (seconds, peak RSS of all children so far in GiB)."""
    start = time.perf_counter()
    proc = subprocess.run(cmd, check=False)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"command failed ({proc.returncode}): {' '.join(cmd)}")
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return seconds, peak_kib / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=16384)
    parser.add_argument("--preset", default="fluorescence")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()

    exe = str(Path(sys.executable).with_name("decrappify"))
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="decrappify-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    big = workdir / "big.tif"
    try:
        print(f"generating {args.size}x{args.size} uint16 input in {workdir} ...", flush=True)
        # sample writes a 2D synthetic fluorescence image chunk by chunk
        gen_s, gen_rss = run_child(
            [
                exe,
                "sample",
                "--kind",
                "fluorescence",
                "--size",
                str(args.size),
                "--out",
                str(big),
                "--overwrite",
                "--quiet",
            ]
        )
        print(f"  generated in {gen_s:.0f} s ({big.stat().st_size / 2**30:.2f} GiB on disk)")
        out = workdir / "out"
        # getrusage(RUSAGE_CHILDREN) keeps the max over all children: run crappify in a fresh
        # python so its peak is measured alone
        code = (
            "import resource, subprocess, sys, time, json;"
            "t=time.perf_counter();"
            "r=subprocess.run(sys.argv[1:]);"
            "print(json.dumps({'rc': r.returncode, 's': time.perf_counter()-t,"
            "'rss': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))"
        )
        cmd = [
            exe,
            "crappify",
            str(big),
            "--out",
            str(out),
            "--format",
            "zarr",
            "--preset",
            args.preset,
            "--overwrite",
            "--quiet",
        ]
        proc = subprocess.run([sys.executable, "-c", code, *cmd], capture_output=True, text=True)
        sys.stderr.write(proc.stderr)
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        if result["rc"] != 0:
            sys.exit(f"crappify failed with exit code {result['rc']}")
        peak_gib = result["rss"] / 2**20
        mpix = args.size**2 / 1e6
        machine = f"{platform.platform()}, {os.cpu_count()} CPUs"
        print(f"machine: {machine}, python {platform.python_version()}")
        print(f"crappify {args.size}x{args.size} uint16 TIFF -> OME-Zarr ({args.preset}, 4x)")
        print(f"  wall time: {result['s']:.1f} s ({mpix / result['s']:.1f} input Mpx/s)")
        verdict = "PASS" if peak_gib < 1.5 else "FAIL"
        print(f"  peak RSS:  {peak_gib:.2f} GiB  (target < 1.5 GiB: {verdict})")
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
