"""A container's log stream from its engine, read by the thread that relays it, never blocking for long.

The stream is the engine's own `GET /containers/{id}/logs` response (through the docker SDK's
session, so whatever engine the agent uses). After its headers the socket is made non-blocking and
read in blocks of whatever it holds, decoded by worker/engine_streams.py; a caller waits for more
with `read`, which returns at the latest after `idle` seconds of silence, so a follow of a quiet
container still lets its thread see that nobody reads any more.
"""

from __future__ import annotations

import select
import socket
import time
from typing import Any

import requests

from worker.engine_streams import ChunkedBody, Frames

BLOCK_BYTES = 256 * 1024  # at most this much per read from the socket


class EngineClosed(Exception):
    """The engine closed the stream before its end (it stopped, or dropped the connection)."""


class ContainerOutput:
    """One open log stream; `close()` when done (it is not reused: its socket was made non-blocking)."""

    def __init__(self, response: requests.Response, multiplexed: bool):
        self.response = response
        # Below http.client's chunked decoding (a few Python calls per chunk, and the engine sends
        # each line as a chunk): its buffered socket file, which urllib3 has not read from when
        # streaming. docker-py reaches the socket the same way (APIClient._get_raw_response_socket).
        self.body: Any = response.raw._fp.fp
        self.socket: socket.socket = self.body.raw._sock
        self.socket.settimeout(0)  # read1 then returns b"" when nothing is there, instead of waiting
        self.chunked = ChunkedBody()
        self.frames = Frames() if multiplexed else None

    def __enter__(self) -> ContainerOutput:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self.response.close()

    def read(self, want: int, gather: float, idle: float) -> bytes | None:
        """The output that came next: once `want` bytes are in, or `gather` seconds after the first
        of them, or as soon as the stream ends; b"" after `idle` seconds without any; None at the end.

        Raises EngineClosed when the engine drops the stream before its end.
        """
        pieces: list[bytes] = []
        size = 0
        first_at = 0.0
        while not self.chunked.done and size < want:
            block = self._read_now()
            if not block:
                wait = first_at + gather - time.monotonic() if pieces else idle
                if wait <= 0 or not self._readable(wait):
                    break
                block = self._read_now()
                if not block:  # readable, yet nothing: the engine closed the connection
                    raise EngineClosed("the engine closed the log stream before its end")
            piece = self._decode(block)
            if piece:
                if not pieces:
                    first_at = time.monotonic()
                pieces.append(piece)
                size += len(piece)
        if not pieces and self.chunked.done:
            return None
        return b"".join(pieces)

    def _read_now(self) -> bytes:
        """What the socket holds now (b"" when nothing, or at its end)."""
        return bytes(self.body.read1(BLOCK_BYTES))

    def _readable(self, timeout: float) -> bool:
        readable, _, _ = select.select([self.socket], [], [], timeout)
        return bool(readable)

    def _decode(self, block: bytes) -> bytes:
        body = self.chunked.feed(block)
        return self.frames.feed(body) if self.frames is not None and body else body
