"""Fuzzing ``read_image``: damaged TIFF and Zarr files give an InputError, never a crash.

Small TIFF files (plain, tiled and compressed, OME) and Zarr stores (OME-Zarr v3 and a
Zarr v2 array, Blosc-compressed) are damaged by a seeded generator: bytes flipped,
zeroed or randomised, files cut short, garbage appended. A worker process reads each
damaged input completely with :func:`decrappify.io.read_image`; the test fails if the
worker dies (a signal: exit >= 128 or negative, such as the SIGSEGV of a truncated Blosc
chunk), hangs, or meets any exception other than :class:`decrappify.errors.InputError`
(which the CLI would print as a traceback).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import tifffile

from decrappify.io import write_image
from decrappify.sample import synthetic_image

WORKER = textwrap.dedent(
    """
    import sys
    import numpy as np
    from decrappify.errors import InputError
    from decrappify.io import read_image

    for line in sys.stdin:
        path = line.strip()
        print("start", path, flush=True)
        try:
            np.asarray(read_image(path).data)
            outcome = "ok"
        except InputError:
            outcome = "error"
        except Exception as err:
            outcome = "unexpected " + type(err).__name__ + ": " + " ".join(str(err).split())
        print("done", path, outcome, flush=True)
    """
)


def _sources(folder: Path) -> list[Path]:
    """The undamaged inputs: three TIFF flavours and two Zarr flavours."""
    import zarr
    from numcodecs import Blosc

    em = np.asarray(synthetic_image("em", (64, 64), seed=0).data)
    fluo = np.asarray(synthetic_image("fluorescence", (2, 48, 48), seed=0).data)
    tifffile.imwrite(folder / "plain.tif", em)
    tifffile.imwrite(folder / "tiled.tif", fluo, tile=(16, 16), compression="zlib")
    tifffile.imwrite(
        folder / "ome.tif", em, ome=True, metadata={"PhysicalSizeX": 0.1, "PhysicalSizeY": 0.1}
    )
    write_image(synthetic_image("em", (64, 64), seed=1), folder / "ome.zarr", chunks=(32, 32))
    v2 = zarr.create_array(
        folder / "v2.zarr",
        shape=(64, 64),
        chunks=(32, 32),
        dtype="uint16",
        zarr_format=2,
        compressors=Blosc(cname="lz4", clevel=5),
    )
    v2[:] = fluo[0, :48, :48].repeat(2, axis=0)[:64].repeat(2, axis=1)[:, :64]
    return [folder / n for n in ("plain.tif", "tiled.tif", "ome.tif", "ome.zarr", "v2.zarr")]


def _damage(data: bytes, rng: np.random.Generator) -> bytes:
    """One random kind of damage to a file's bytes."""
    buf = bytearray(data)
    kind = rng.integers(5)
    if kind == 0 and buf:  # flip a few bytes
        for _ in range(int(rng.integers(1, 9))):
            buf[int(rng.integers(len(buf)))] = int(rng.integers(256))
    elif kind == 1:  # cut short
        del buf[int(rng.integers(len(buf) + 1)) :]
    elif kind == 2 and buf:  # zero a run
        start = int(rng.integers(len(buf)))
        buf[start : start + int(rng.integers(1, 4096))] = b""
        buf[start:start] = bytes(int(rng.integers(1, 64)))
    elif kind == 3 and buf:  # randomise a run
        start = int(rng.integers(len(buf)))
        end = min(len(buf), start + int(rng.integers(1, 512)))
        buf[start:end] = rng.bytes(end - start)
    else:  # append garbage
        buf += rng.bytes(int(rng.integers(1, 256)))
    return bytes(buf)


def _cases(folder: Path, n: int, seed: int) -> list[Path]:
    """``n`` damaged copies of the sources (one file of each copy damaged)."""
    sources = _sources(folder)
    rng = np.random.default_rng(seed)
    cases = []
    for i in range(n):
        source = sources[i % len(sources)]
        target = folder / f"case{i:04d}_{source.name}"
        if source.is_dir():
            shutil.copytree(source, target)
            files = sorted(p for p in target.rglob("*") if p.is_file())
            chunks = [p for p in files if not p.name.startswith((".", "zarr.json"))]
            # mostly chunks (where the codecs run), sometimes the metadata
            victim = files[int(rng.integers(len(files)))] if rng.random() < 0.25 else None
            victim = victim or chunks[int(rng.integers(len(chunks)))]
        else:
            shutil.copy(source, target)
            victim = target
        victim.write_bytes(_damage(victim.read_bytes(), rng))
        cases.append(target)
    return cases


def _fuzz(folder: Path, n: int, seed: int, timeout: float) -> dict[str, int]:
    cases = _cases(folder, n, seed)
    stdin = "".join(f"{p}\n" for p in cases)
    try:
        done = subprocess.run(
            [sys.executable, "-c", WORKER],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as err:
        out = err.stdout.decode() if isinstance(err.stdout, bytes) else err.stdout or ""
        started = [line.split(" ", 1)[1] for line in out.splitlines() if line.startswith("start")]
        pytest.fail(f"read_image hung on {started[-1] if started else 'the first case'}")
    lines = done.stdout.splitlines()
    outcomes = {}
    for line in lines:
        if line.startswith("done "):
            _, path, outcome = line.split(" ", 2)
            outcomes[path] = outcome
    if done.returncode != 0:
        started = [line.split(" ", 1)[1] for line in lines if line.startswith("start")]
        last = started[-1] if started else "?"
        pytest.fail(
            f"the reader process died (exit {done.returncode}) on {last}:\n{done.stderr[-2000:]}"
        )
    assert "Traceback" not in done.stderr, done.stderr[-2000:]
    unexpected = {p: o for p, o in outcomes.items() if o.startswith("unexpected")}
    assert not unexpected, json.dumps(unexpected, indent=1)
    assert len(outcomes) == len(cases)
    counts: dict[str, int] = {}
    for outcome in outcomes.values():
        counts[outcome] = counts.get(outcome, 0) + 1
    return counts


def test_damaged_files_give_input_errors(tmp_path):
    counts = _fuzz(tmp_path, n=150, seed=0, timeout=240)
    assert counts.get("error", 0) >= 30  # most damage is seen (some, e.g. in pixels, is not)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_damaged_files_give_input_errors_many(tmp_path, seed):
    _fuzz(tmp_path, n=1000, seed=seed, timeout=1200)
