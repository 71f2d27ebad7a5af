"""Fuzzing the families of issue 20: outputs, odd input trees, pairing, failing writes.

Seeded generators make many small scenarios and check invariants, not cases:

* **outputs**: random batches of inputs whose names collide (one stem in two folders,
  ``x.tif`` beside ``x.ome.tif`` and ``x.zarr``, inputs named like trust maps, case
  variants, links to input folders) into random output folders, with random reports. A
  real ``crappify`` batch runs each one: it is refused before writing anything, or every
  input gets its own output, and no input ever changes. The planned outputs of a TIFF
  prediction (trust maps included) are checked the same way.
* **trees**: random folders of images, link loops, dangling links, links to parents,
  FIFOs and sockets; folders and ``**`` patterns expand in a subprocess within seconds to
  regular image files only, or raise ``InputError``.
* **pairing**: shuffled lists whose names share random prefixes and suffixes pair every
  file with its true partner, or are refused; never a wrong pair.
* **writes**: OME-Zarr and TIFF writes under random file size limits succeed whole or
  fail with one ``OutputError`` line, and leave no temporary.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import tifffile

from decrappify import api
from decrappify.api.common import plan_batch
from decrappify.config.crappify import CrappifyConfig
from decrappify.errors import InputError, OutputError
from decrappify.io import expand_inputs, read_image, write_image
from decrappify.io.outputs import path_key
from decrappify.io.pairing import pair_by_name

STEMS = ("x", "X", "y")
ENDINGS = (".tif", ".ome.tif", ".zarr", ".consistency.tif", ".uncertainty.tif", ".TIF")
FOLDERS = ("d1", "d2", ".")
#: A crappifier that is quick on 8x8 images.
QUICK = CrappifyConfig.validate_dict(
    {"name": "quick", "scale": 2, "steps": [{"kind": "downsample", "method": "area"}]}
)


def _tree(folder: Path, rng: np.random.Generator) -> list[str]:
    """Make 2-5 small images with colliding names; return them as the user would type them."""
    names = []
    for _ in range(int(rng.integers(2, 6))):
        name = os.path.join(
            str(rng.choice(FOLDERS)), str(rng.choice(STEMS)) + str(rng.choice(ENDINGS))
        )
        path = folder / name
        if os.path.lexists(path):
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        data = rng.integers(0, 255, (8, 8), dtype=np.uint8)
        if name.endswith(".zarr"):
            write_image(data, path, levels=1)
        else:
            tifffile.imwrite(path, data)
        names.append(os.path.normpath(name))
    if not (folder / "alias").exists():
        (folder / "alias").symlink_to("d1")
    return names


def _fingerprint(folder: Path, names: list[str]) -> dict[str, str]:
    out = {}
    for name in names:
        path = folder / name
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        out[name] = hashlib.sha256(b"".join(p.read_bytes() for p in files)).hexdigest()
    return out


@pytest.mark.parametrize("seed", range(40))
def test_fuzz_batches_never_clobber_an_input_or_each_other(tmp_path, seed):
    rng = np.random.default_rng(seed)
    names = _tree(tmp_path, rng)
    if not names:
        return
    inputs = [n for n in names if rng.random() < 0.8] or names[:1]
    out = str(rng.choice(["out", "d1", ".", "alias", "d2/new"]))
    fmt = str(rng.choice(["tif", "zarr"]))
    before = _fingerprint(tmp_path, names)
    existing = {p for p in tmp_path.rglob("*")}
    here = Path.cwd()
    os.chdir(tmp_path)
    try:
        results = api.crappify(
            inputs, out, config=QUICK, fmt=fmt, overwrite=bool(rng.random() < 0.5)
        )
        refused = None
    except (InputError, OutputError) as err:
        results, refused = [], str(err)
    finally:
        os.chdir(here)
    assert _fingerprint(tmp_path, names) == before, (inputs, out, fmt)
    if refused is not None:
        assert "\n" not in refused
        if "would both be written here" in refused or "the input" in refused:
            assert "--overwrite" not in refused  # it would make one input replace another
        assert {p for p in tmp_path.rglob("*")} == existing, refused  # nothing was created
        return
    written = [path_key(tmp_path / r.output) for r in results if r.ok]
    assert len(written) == len(set(written)), results  # one output per input, never shared
    for result in results:
        if result.ok:
            got = read_image(tmp_path / result.output)
            source = read_image(tmp_path / result.input)
            assert got.shape == tuple(s // 2 for s in source.shape), result


@pytest.mark.parametrize("seed", range(40))
def test_fuzz_planned_prediction_outputs_with_trust_maps_are_distinct(tmp_path, seed):
    rng = np.random.default_rng(100 + seed)
    names = _tree(tmp_path, rng)
    if not names:
        return
    paths = expand_inputs([tmp_path / n for n in names])
    out = tmp_path / str(rng.choice(["out", "d1", "alias"]))

    def sidecars(out_path):
        return [
            (out_path.with_name(f"{out_path.name[:-4]}.{m}.tif"), f"{m} map")
            for m in ("uncertainty", "consistency")
        ]

    plan = plan_batch(paths, out, "tif", sidecars)
    try:
        plan.check()
    except OutputError as err:
        assert "would both be written here" in str(err) or "the input" in str(err)
        return
    keys = [path_key(p) for p in plan.paths()]
    assert len(keys) == len(set(keys))
    inputs = {path_key(p) for p in paths}
    assert not inputs & set(keys)


# ------------------------------------------------------------------------- odd trees

EXPAND = textwrap.dedent(
    """
    import json, os, stat, sys
    from decrappify.errors import InputError
    from decrappify.io import expand_inputs
    out = []
    for entry in json.loads(sys.argv[1]):
        try:
            found = expand_inputs([entry])
        except InputError:
            out.append("refused")
            continue
        for path in found:
            info = os.stat(path)
            assert stat.S_ISREG(info.st_mode) or stat.S_ISDIR(info.st_mode), path
        out.append(len(found))
    print(json.dumps(out))
    """
)


@pytest.mark.parametrize("seed", range(6))
def test_fuzz_odd_trees_expand_quickly_to_real_files(tmp_path, seed):
    rng = np.random.default_rng(200 + seed)
    root = tmp_path / "in"
    folders = [root, root / "a", root / "a" / "b", root / "c"]
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
    for i in range(12):
        folder = folders[int(rng.integers(len(folders)))]
        name = f"f{i}" + str(rng.choice([".tif", ".zarr", ".tiff"]))
        kind = rng.choice(["image", "loop", "dangling", "parent", "fifo", "socket", "self"])
        path = folder / name
        if kind == "image":
            tifffile.imwrite(path.with_suffix(".tif"), np.zeros((4, 4), np.uint8))
        elif kind == "loop":
            path.symlink_to(path.name)
        elif kind == "dangling":
            path.symlink_to("nowhere")
        elif kind == "parent":
            path.symlink_to(os.path.relpath(root, folder))
        elif kind == "self":
            path.symlink_to(".")
        elif kind == "fifo":
            os.mkfifo(path)
        elif len(str(path)) < 100:
            with socket.socket(socket.AF_UNIX) as sock:
                sock.bind(str(path))
    entries = [str(root), str(root / "**" / "*.tif"), str(root / "**" / "*.zarr"), str(root / "*")]
    done = subprocess.run(
        [sys.executable, "-c", EXPAND, json.dumps(entries)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert len(json.loads(done.stdout)) == len(entries)


# ------------------------------------------------------------------------- pairing


@pytest.mark.parametrize("seed", range(60))
def test_fuzz_pairing_never_pairs_a_file_with_another_ones_partner(seed):
    rng = np.random.default_rng(300 + seed)
    n = int(rng.integers(2, 7))
    ids = [f"{rng.choice(['img', 'cell', 's'])}{int(k)}" for k in rng.choice(50, n, replace=False)]
    affix = lambda: str(rng.choice(["", "pred_", "sr-", "gt_", "_sr", "-gt", ".ome"]))  # noqa: E731
    pre_a, suf_a, pre_b, suf_b = affix(), affix(), affix(), affix()
    first = [Path(f"sr/{pre_a}{i}{suf_a}.tif") for i in ids]
    second = [Path(f"hr/{pre_b}{i}{suf_b}.tif") for i in ids]
    truth = dict(zip(first, second, strict=True))
    if rng.random() < 0.2:  # a list that does not match
        second[0] = Path("hr/unrelated.tif")
    shuffled = [second[i] for i in rng.permutation(n)]
    try:
        paired = pair_by_name(first, shuffled, ("--pred", "--gt"), "prediction")
    except InputError as err:
        assert "name different images" in str(err)
        return
    assert all(truth[a] == b for a, b in zip(first, paired, strict=True)), (first, paired)


# ------------------------------------------------------------------------- failing writes

WRITER = textwrap.dedent(
    """
    import json, resource, sys
    import numpy as np
    from pathlib import Path
    from decrappify.errors import OutputError
    from decrappify.io import read_image, write_image

    folder, seed = Path(sys.argv[1]), int(sys.argv[2])
    rng = np.random.default_rng(seed)
    out = []
    for i in range(8):
        size = int(rng.integers(64, 400))
        data = rng.integers(0, 60000, (int(rng.integers(1, 3)), size, size), dtype=np.uint16)
        limit = int(rng.integers(200, 400_000))
        ending = str(rng.choice([".zarr", ".tif"]))
        path = folder / f"o{i}{ending}"
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
        try:
            write_image(data, path, chunks=(64, 64) if ending == ".tif" else (1, 64, 64))
            outcome = "ok"
        except OutputError as err:
            outcome = "error: " + str(err)
        finally:
            resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY,) * 2)
        if outcome == "ok":
            got = np.asarray(read_image(path).data)  # a length-1 plane axis is dropped
            np.testing.assert_array_equal(got, data.reshape(got.shape))
        out.append(outcome)
    print(json.dumps(out))
    """
)


@pytest.mark.parametrize("seed", range(3))
def test_fuzz_writes_under_a_file_size_limit_succeed_whole_or_fail_in_one_line(tmp_path, seed):
    done = subprocess.run(
        [sys.executable, "-c", WRITER, str(tmp_path), str(seed)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr and "Task exception" not in done.stderr
    for outcome in json.loads(done.stdout):
        if outcome != "ok":
            assert "cannot write it: the file is larger than this process may write" in outcome
            assert "\n" not in outcome
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
