"""Decoding the engine's log stream (worker/engine_streams.py): chunked transfer coding and stream
frames, however the socket splits them."""

from __future__ import annotations

import random

import pytest

from worker.engine_streams import ChunkedBody, Frames, StreamFormatError


def chunked(*chunks: bytes, trailer: bytes = b"") -> bytes:
    body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for chunk in chunks)
    return body + b"0\r\n" + trailer + b"\r\n"


def frame(stream: int, payload: bytes) -> bytes:
    return bytes([stream, 0, 0, 0]) + len(payload).to_bytes(4, "big") + payload


def splits(data: bytes, seed: int) -> list[bytes]:
    """`data` cut at random places (one-byte pieces among them)."""
    rng = random.Random(seed)
    pieces, pos = [], 0
    while pos < len(data):
        size = rng.choice([1, 1, 2, 7, 8, 9, 100, 5000])
        pieces.append(data[pos : pos + size])
        pos += size
    return pieces


@pytest.mark.parametrize("seed", range(20))
def test_chunked_body_whatever_the_splits(seed: int) -> None:
    chunks = [b"a" * 3, bytes(range(256)), b"\r\n in a chunk \r\n", b"x" * 70_000]
    raw = chunked(*chunks) + b"left over: not the body"
    body = ChunkedBody()
    decoded = b"".join(body.feed(piece) for piece in splits(raw, seed))
    assert decoded == b"".join(chunks)
    assert body.done


def test_chunk_extensions_and_trailers_are_skipped() -> None:
    body = ChunkedBody()
    assert body.feed(b"3;name=value\r\nabc\r\n0\r\nX-Trailer: 1\r\n\r\n") == b"abc"
    assert body.done


def test_not_chunked_is_an_error() -> None:
    with pytest.raises(StreamFormatError):
        ChunkedBody().feed(b"zz\r\n")
    with pytest.raises(StreamFormatError):
        ChunkedBody().feed(b"1" * 2000)  # a size line that never ends


@pytest.mark.parametrize("seed", range(20))
def test_frames_whatever_the_splits(seed: int) -> None:
    payloads = [(1, b"line 1\n"), (2, b"err\n"), (1, b""), (1, bytes(range(256)) * 100), (2, b"\0\0\0\0\0\0\0\0")]
    raw = b"".join(frame(stream, payload) for stream, payload in payloads)
    frames = Frames()
    assert b"".join(frames.feed(piece) for piece in splits(raw, seed)) == b"".join(p for _, p in payloads)


def test_a_frame_header_that_is_not_one_is_an_error() -> None:
    with pytest.raises(StreamFormatError):
        Frames().feed(b"line 1\nline 2\n")
