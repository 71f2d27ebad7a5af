"""Shared fixtures: tiny good and damaged inputs, and the checks of a clean CLI failure.

The bad-input test modules (``test_bad_input_<command>.py``) run each case through the
real CLI (typer's runner, or a subprocess where a crash must be told from an error) and
check the same four things: the exit code, that the message names the file or option,
that no traceback is printed, and that nothing is left under the final output name.
The helpers are reached through the ``bad`` fixture (``bad.assert_clean_failure(...)``),
so that modules in sub-folders with their own ``conftest.py`` can use them too.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile
from typer.testing import CliRunner, Result

from decrappify.sample import synthetic_image


class BadInputs:
    """Makes small inputs in a folder (good ones and damaged ones) and runs the CLI."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.runner = CliRunner()

    def path(self, name: str) -> Path:
        """A path in the folder."""
        return self.folder / name

    def tif(self, name: str = "em.tif", size: int = 64, seed: int = 0, data: Any = None) -> Path:
        """A synthetic EM image (uint8) or ``data`` as a TIFF file."""
        if data is None:
            data = np.asarray(synthetic_image("em", (size, size), seed=seed).data)
        path = self.folder / name
        tifffile.imwrite(path, data)
        return path

    def zarr(self, name: str = "em.zarr", size: int = 64, chunk: int = 32, seed: int = 0) -> Path:
        """A synthetic EM image as an OME-Zarr (NGFF 0.5, Blosc-zstd chunks of ``chunk``)."""
        from decrappify.io import write_image

        image = synthetic_image("em", (size, size), seed=seed)
        return write_image(image, self.folder / name, chunks=(chunk, chunk), levels=1)

    def damaged_zarr(
        self, name: str = "damaged.zarr", how: str = "truncate", size: int = 64, chunk: int = 32
    ) -> tuple[Path, str]:
        """An OME-Zarr whose last level-0 chunk is cut in half (or replaced by random bytes).

        Returns the store and the key of the damaged chunk (``0/c/1/1``).
        """
        store = self.zarr(name, size=size, chunk=chunk)
        last = size // chunk - 1
        key = f"0/c/{last}/{last}"
        self.damage_file(store / key, how)
        return store, key

    def run(self, *args: Any, cwd: Path | None = None) -> Result:
        """Invoke ``decrappify ARGS`` in-process; fail on any uncaught exception."""
        from decrappify.cli import app

        here = Path.cwd()
        os.chdir(cwd or self.folder)
        try:
            result = self.runner.invoke(app, [str(a) for a in args])
        finally:
            os.chdir(here)
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise AssertionError(
                f"decrappify {' '.join(map(str, args))} raised {result.exception!r}:\n"
                f"{result.output}"
            ) from result.exception
        return result

    @staticmethod
    def damage_file(path: Path, how: str) -> None:
        """Cut a file in half (``"truncate"``) or overwrite it with random bytes (``"random"``)."""
        data = path.read_bytes()
        if how == "truncate":
            path.write_bytes(data[: len(data) // 2])
        elif how == "random":
            path.write_bytes(np.random.default_rng(0).bytes(len(data)))
        else:
            raise ValueError(how)

    @staticmethod
    def text_of(result: Result) -> str:
        """The command's output on one line (rich wraps long messages)."""
        return " ".join(result.output.split())

    @staticmethod
    def assert_clean_failure(result: Result, *names: Any, code: int = 1) -> str:
        """Check a failed command: its exit code, an ``error:`` naming ``names``, no traceback.

        Returns the output on one line.
        """
        text = BadInputs.text_of(result)
        assert result.exit_code == code, result.output
        assert "error:" in text, result.output
        assert "Traceback" not in result.output, result.output
        for name in names:
            assert str(name) in text, f"{name!r} not in: {text}"
        return text

    @staticmethod
    def leftovers(folder: Path) -> list[str]:
        """Temporaries left in a folder tree: ``.<name>.partial`` / ``.old`` / ``.replaced``."""
        if not folder.exists():
            return []
        return sorted(
            str(p.relative_to(folder))
            for p in folder.rglob(".*")
            if p.name.endswith((".partial", ".old", ".replaced"))
        )

    @staticmethod
    def assert_nothing_left(paths: Iterable[Path]) -> None:
        """Check that no output exists under these final names, nor their temporaries."""
        for path in paths:
            assert not os.path.lexists(path), f"{path} was left behind"
            assert not BadInputs.leftovers(path.parent), BadInputs.leftovers(path.parent)


@pytest.fixture
def bad(tmp_path: Path) -> BadInputs:
    """Inputs made in a fresh folder, and the CLI runner (run in that folder)."""
    return BadInputs(tmp_path)


@pytest.fixture
def one_torch_thread():
    """Run the test with one torch thread (the machine's cores are shared), then restore."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
