"""Damaged Zarr chunks: a clear error naming the store and the chunk, never a crash.

What crashes, and why
---------------------
zarr decodes Blosc chunks with ``numcodecs.blosc.decompress`` in a worker thread
(``asyncio.to_thread``), where numcodecs calls c-blosc's ``blosc_decompress_ctx``. That
function is not told how long the buffer is: it trusts the compressed size written in
the chunk's 16-byte header. A chunk cut short (a copy interrupted, a full disk) makes it
read past the end of the buffer, and the process dies with SIGSEGV (exit 139) or, when
the bytes beyond happen to be mapped, fails with ``RuntimeError: error during blosc
decompression: -1``. A chunk whose header is intact but whose body is damaged is
bounds-checked by c-blosc against that declared size and fails cleanly.

What decrappify does
--------------------
* :func:`install_checked_codecs` registers :class:`CheckedBloscCodec` (Zarr v3) and
  :class:`CheckedBlosc` (Zarr v2, numcodecs) in place of the stock Blosc codecs. Before
  decoding, they check the header against the buffer (:func:`check_blosc_frame`): at
  least 16 bytes, a compressed size no larger than the buffer, a decompressed size no
  larger than the chunk (so a damaged header cannot ask for gigabytes). Valid chunks
  decode exactly as before; encoding is unchanged.
* :class:`ZarrChunks` is the array-like behind the dask arrays of
  :func:`decrappify.io.read_image`: any failure to decode a region becomes an
  :class:`~decrappify.errors.InputError` naming the store and the chunk key
  (``image.zarr: chunk 0/c/1/1 is damaged or truncated (...)``), which every batch
  command reports for that input alone.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import struct
from pathlib import Path
from typing import Any

import numpy as np

from decrappify.errors import InputError, short_message

#: Size of the header of a Blosc (version 1 format) frame.
BLOSC_HEADER = 16
#: Largest buffer Blosc 1 handles (``BLOSC_MAX_BUFFERSIZE``).
BLOSC_MAX_BUFFERSIZE = 2**31 - 1 - BLOSC_HEADER
#: Slack allowed between a chunk's size and the decompressed size its header declares
#: (a bytes-to-bytes codec such as a checksum may come before Blosc).
EXPECTED_SLACK = 4096

_installed = False


def check_blosc_frame(buffer: Any, expected: int | None = None) -> None:
    """Check a Blosc frame's header against its buffer before it is decompressed.

    Parameters
    ----------
    buffer : bytes-like
        The compressed chunk.
    expected : int or None
        Bytes the chunk decompresses to, when known.

    Raises
    ------
    ValueError
        When the frame is shorter than its header, declares more compressed bytes than
        it has (truncated), or declares more decompressed bytes than ``expected``.
    """
    view = memoryview(buffer).cast("B")
    size = view.nbytes
    if size < BLOSC_HEADER:
        raise ValueError(f"{size} bytes, shorter than the {BLOSC_HEADER}-byte Blosc header")
    nbytes, _blocksize, cbytes = struct.unpack_from("<III", view, 4)
    if cbytes > size:
        raise ValueError(
            f"the Blosc header declares {cbytes} compressed bytes, the chunk has {size}"
        )
    limit = BLOSC_MAX_BUFFERSIZE if expected is None else int(expected) + EXPECTED_SLACK
    if nbytes > limit:
        raise ValueError(
            f"the Blosc header declares {nbytes} decompressed bytes, at most {limit} expected"
        )


def _chunk_nbytes(chunk_spec: Any) -> int | None:
    try:
        itemsize = np.dtype(chunk_spec.dtype.to_native_dtype()).itemsize
    except (AttributeError, TypeError):
        return None
    return math.prod(int(s) for s in chunk_spec.shape) * itemsize


def _checked_codec_classes() -> tuple[type, type]:
    import numcodecs
    from zarr.codecs import BloscCodec

    class CheckedBloscCodec(BloscCodec):  # type: ignore[misc]
        """Zarr v3 Blosc codec that checks each frame's header before decoding it."""

        async def _decode_single(self, chunk_bytes: Any, chunk_spec: Any) -> Any:
            check_blosc_frame(chunk_bytes.as_numpy_array(), _chunk_nbytes(chunk_spec))
            return await super()._decode_single(chunk_bytes, chunk_spec)

    class CheckedBlosc(numcodecs.Blosc):  # type: ignore[misc]
        """numcodecs Blosc (Zarr v2) that checks each frame's header before decoding it."""

        def decode(self, buf: Any, out: Any = None) -> Any:
            expected = None if out is None else memoryview(out).nbytes
            check_blosc_frame(numcodecs.compat.ensure_contiguous_ndarray(buf), expected)
            return super().decode(buf, out)

    CheckedBloscCodec.__module__ = CheckedBlosc.__module__ = __name__
    return CheckedBloscCodec, CheckedBlosc


def install_checked_codecs() -> None:
    """Make zarr decode Blosc chunks (v2 and v3) with the checked codecs (idempotent)."""
    global _installed
    if _installed:
        return
    import numcodecs
    import zarr
    from zarr.registry import register_codec

    v3, v2 = _checked_codec_classes()
    qualname = f"{__name__}.{v3.__qualname__}"
    register_codec("blosc", v3, qualname=qualname)
    zarr.config.set({"codecs.blosc": qualname})
    numcodecs.register_codec(v2)
    _installed = True


class ZarrChunks:
    """Array-like over a Zarr array whose read errors name the store and the chunk.

    Parameters
    ----------
    array : zarr.Array
        The array (its store must be picklable to send blocks to dask workers).
    source : str
        The store the user named, for messages.
    """

    def __init__(self, array: Any, source: str) -> None:
        self.array = array
        self.source = source
        self.shape = tuple(int(s) for s in array.shape)
        self.dtype = np.dtype(array.dtype)
        self.ndim = len(self.shape)

    def __getitem__(self, key: Any) -> np.ndarray:
        install_checked_codecs()  # in dask.distributed workers too
        try:
            return np.asarray(self.array[key])
        except Exception as err:
            raise InputError(self._describe(key, err)) from err

    def _describe(self, key: Any, err: BaseException) -> str:
        chunk = self._failing_chunk(key)
        where = f"chunk {chunk}" if chunk else "a chunk"
        return f"{self.source}: {where} is damaged or truncated ({short_message(err)})"

    def _failing_chunk(self, key: Any) -> str | None:
        """Key of the first chunk under ``key`` that fails to decode (None if none does)."""
        if not isinstance(key, tuple):
            key = (key,)
        key = key + (slice(None),) * (self.ndim - len(key))
        chunks = self.array.chunks
        ranges = []
        for k, size, step in zip(key, self.shape, chunks, strict=True):
            if isinstance(k, slice):
                start, stop, _ = k.indices(size)
            else:
                start, stop = int(k), int(k) + 1
            ranges.append(range(start // step, max(start, stop - 1) // step + 1))
        for coords in itertools.product(*ranges):
            try:
                self.array.get_block_selection(coords)
            except Exception:
                name = self.array.metadata.encode_chunk_key(coords)
                prefix = self.array.path
                return f"{prefix}/{name}" if prefix else name
        return None

    def to_dask(self, chunks: tuple[int, ...], token: Any) -> Any:
        """Lazy dask array of whole-chunk blocks.

        Parameters
        ----------
        chunks : tuple of int
            Dask block shape (whole Zarr chunks).
        token : object
            What identifies the data (names the dask graph).

        Returns
        -------
        dask.array.Array
            The array.
        """
        import dask.array as da
        from dask.base import tokenize

        return da.from_array(
            self,
            chunks=chunks,
            name="zarr-" + tokenize(token),
            asarray=False,
            fancy=False,
            meta=np.empty((0,) * self.ndim, dtype=self.dtype),
        )


def store_token(path: Path, array: Any) -> tuple[Any, ...]:
    """Return what identifies a stored array's data for dask: location, layout, mtime."""
    meta = path / array.path / "zarr.json" if array.path else path / "zarr.json"
    if not meta.is_file():
        meta = path / array.path / ".zarray" if array.path else path / ".zarray"
    try:
        stamp = meta.stat().st_mtime_ns
    except OSError:
        stamp = None
    return (str(path), array.path, array.shape, array.chunks, str(array.dtype), stamp)


def settle_pending_writes(timeout: float = 30.0) -> None:
    """Wait until zarr's I/O thread has no chunk write in flight (after a failed write).

    zarr writes the chunks of one assignment concurrently on its own event loop; when one
    fails (a full disk), the assignment raises at once while the others go on. Deleting
    the partial store then races with them (they create its folders again), and at exit
    Python prints their unretrieved failures. This waits for them and collects their
    outcomes, so the partial can be deleted for good.

    Parameters
    ----------
    timeout : float
        Longest wait in seconds.
    """
    import asyncio

    try:
        from zarr.core import sync
    except ImportError:  # pragma: no cover - zarr 2 writes synchronously
        return
    loop = sync.loop[0]
    if loop is None or loop.is_closed() or not loop.is_running():
        return

    async def wait_for_others() -> None:
        current = asyncio.current_task()
        pending = [task for task in asyncio.all_tasks() if task is not current]
        if pending:
            done, _ = await asyncio.wait(pending, timeout=timeout)
            for task in done:  # retrieve failures, so none is reported at exit
                if not task.cancelled():
                    task.exception()

    with contextlib.suppress(Exception):  # best effort: the caller deletes what it can
        asyncio.run_coroutine_threadsafe(wait_for_others(), loop).result(timeout + 5)
