"""The Blosc header check that keeps truncated chunks from crashing c-blosc."""

from __future__ import annotations

import numcodecs
import numpy as np
import pytest

from decrappify.io.chunks import check_blosc_frame, install_checked_codecs


def _frame(nbytes: int = 4096) -> bytes:
    data = np.arange(nbytes // 2, dtype=np.uint16)
    return numcodecs.Blosc(cname="zstd", clevel=5).encode(data)


def test_an_intact_frame_passes_and_decodes_as_before():
    frame = _frame()
    check_blosc_frame(frame, expected=4096)
    install_checked_codecs()
    codec = numcodecs.get_codec({"id": "blosc"})
    assert type(codec).__name__ == "CheckedBlosc"
    assert np.array_equal(np.frombuffer(codec.decode(frame), np.uint16), np.arange(2048))


@pytest.mark.parametrize(
    ("cut", "message"),
    [
        (10, "10 bytes, shorter than the 16-byte Blosc header"),
        (100, "the Blosc header declares \\d+ compressed bytes, the chunk has 100"),
    ],
)
def test_a_truncated_frame_is_refused_before_decoding(cut, message):
    with pytest.raises(ValueError, match=message):
        check_blosc_frame(_frame()[:cut])


def test_a_header_asking_for_too_many_bytes_is_refused():
    frame = bytearray(_frame())
    frame[4:8] = (2**30).to_bytes(4, "little")  # nbytes: 1 GiB for a 4 KiB chunk
    with pytest.raises(ValueError, match="declares 1073741824 decompressed bytes, at most 8192"):
        check_blosc_frame(bytes(frame), expected=4096)
