"""What the API asks a node's agent about its replicas (their logs, a command run in one), and how the
agent answers: the messages, their encoding and every bound, without any I/O.

The API never talks to a Docker engine. It pushes a request (JSON) on the node's request list
(`Keys.node_requests`) and reads the reply from a stream of the request's own (`Keys.reply`): first
`start` (or `error`), then `data` entries (the container's output, raw bytes) and `idle` entries
(the agent is there, nothing to say), and last `end` (or `error`). While the API reads, it keeps
the request's reader key (`Keys.reader`) alive; the agent stops when it lapses. docs/architecture.md
tells the whole exchange.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, TypeAdapter, ValidationError

from shared.config import MAX_COMMAND_ITEMS, Argument
from shared.records import MAX_COUNT, describe

# -- bounds -------------------------------------------------------------------------------------

# The agent's first answer to a request must come within this long, and then it says something
# (data, or `idle`) at least this often: an API that hears nothing for this long answers 503.
ANSWER_SECONDS = 5.0
# An agent with nothing to send writes `idle` after this long, and checks that the API still reads.
IDLE_SECONDS = 1.0
# The reader key's expiry and how often the API pushes it forward: a client gone, or an API killed,
# stops the agent within about READER_TTL_SECONDS.
READER_TTL_SECONDS = 5
REFRESH_SECONDS = 1.0
# Expiries that clean up after a crashed API or agent: every write of a reply stream (and every
# refresh of its reader) pushes its expiry forward, every push of a request its list's.
REPLY_TTL_SECONDS = 30
REQUESTS_TTL_SECONDS = 30
# Output goes in entries of up to CHUNK_BYTES, gathered for at most GATHER_SECONDS: large entries
# when a container's output comes fast, a line at once when it trickles (a follow). 256 KiB rather
# than 64: a quarter of the entries to write, read and relay took about half the API's CPU per MB
# (docs/benchmarks.md, Log throughput).
CHUNK_BYTES = 256 * 1024
GATHER_SECONDS = 0.02
# Back-pressure: the agent writes no further entry while the API has more than this many unread
# (MAX_BACKLOG x CHUNK_BYTES = 1 MiB per request in Redis, and one entry more); it waits, nothing is
# dropped.
MAX_BACKLOG = 4
# Requests one agent serves at once (each holds a thread and a connection to its engine); beyond
# it a request is refused (503), never queued behind a follow that may last for hours.
MAX_NODE_REQUESTS = 32
# exec: the command is bounded as a service's `command` is; its output is kept to the last
# EXEC_OUTPUT_LIMIT bytes (stdout and stderr interleaved as they came).
MIN_EXEC_TIMEOUT = 1
MAX_EXEC_TIMEOUT = 3600
DEFAULT_EXEC_TIMEOUT = 30
EXEC_OUTPUT_LIMIT = 1024 * 1024
# logs: `tail` is `all` or at most this many of the last lines.
MAX_TAIL = 10_000

REQUEST_ID = r"[0-9a-f]{32}"  # secrets.token_hex(16)
CONTAINER_ID = r"[0-9a-f]{1,64}"


# -- requests -----------------------------------------------------------------------------------


class _Request(BaseModel):
    """Which replica: its task, the gen and incarnation of the record the API read, and its container.
    The agent answers only while its own record of the task still says so."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=f"^{REQUEST_ID}$")
    task: str = Field(min_length=1, max_length=256)
    gen: StrictInt = Field(ge=0, le=MAX_COUNT)
    incarnation: str = Field(max_length=256)
    container_id: str = Field(pattern=f"^{CONTAINER_ID}$")


class LogsRequest(_Request):
    kind: Literal["logs"] = "logs"
    tail: Annotated[StrictInt, Field(ge=0, le=MAX_TAIL)] | Literal["all"] = "all"
    follow: StrictBool = False


class ExecRequest(_Request):
    kind: Literal["exec"] = "exec"
    command: list[Argument] = Field(min_length=1, max_length=MAX_COMMAND_ITEMS)
    timeout: StrictInt = Field(ge=MIN_EXEC_TIMEOUT, le=MAX_EXEC_TIMEOUT)


NodeRequest = LogsRequest | ExecRequest
_REQUEST: TypeAdapter[NodeRequest] = TypeAdapter(Annotated[NodeRequest, Field(discriminator="kind")])


class UnreadableRequest(ValueError):
    """A request an agent cannot read (another version's, or garbage); `request_id` when it has one, so
    the API still gets an answer instead of waiting."""

    def __init__(self, request_id: str | None, reason: str) -> None:
        super().__init__(reason)
        self.request_id = request_id


def new_request_id() -> str:
    return secrets.token_hex(16)


def encode_request(request: NodeRequest) -> bytes:
    return request.model_dump_json().encode()


def decode_request(raw: bytes) -> NodeRequest:
    try:
        return _REQUEST.validate_json(raw)
    except ValidationError as exc:
        raise UnreadableRequest(_request_id(raw), describe(exc)) from None


def _request_id(raw: bytes) -> str | None:
    try:
        parsed = json.loads(raw)
    except ValueError:
        return None
    found = parsed.get("id") if isinstance(parsed, dict) else None
    return found if isinstance(found, str) and re.fullmatch(REQUEST_ID, found) else None


# -- replies ------------------------------------------------------------------------------------


class ReplyKind(StrEnum):
    START = "start"  # the request is the agent's: the replica is as the API read it
    DATA = "data"  # output bytes
    IDLE = "idle"  # nothing to send yet; the agent is alive and still serving the request
    END = "end"  # done (exec: with its exit code)
    ERROR = "error"  # refused or failed; `refusal` says how the API answers


class Refusal(StrEnum):
    CONFLICT = "conflict"  # the replica is not as the API read it (moved, another gen, container gone): 409
    UNAVAILABLE = "unavailable"  # the node cannot serve it now (its engine fails, too many requests): 503


@dataclass(frozen=True)
class Reply:
    kind: ReplyKind
    data: bytes = b""
    exit_code: int | None = None  # exec's end: None when the command was still running at its timeout
    timed_out: bool = False
    truncated: bool = False  # exec's end: the output is only the last EXEC_OUTPUT_LIMIT bytes
    refusal: Refusal | None = None
    message: str = ""


START = Reply(ReplyKind.START)
IDLE = Reply(ReplyKind.IDLE)


def data(chunk: bytes) -> Reply:
    return Reply(ReplyKind.DATA, data=chunk)


def end(exit_code: int | None = None, *, timed_out: bool = False, truncated: bool = False) -> Reply:
    return Reply(ReplyKind.END, exit_code=exit_code, timed_out=timed_out, truncated=truncated)


def refused(refusal: Refusal, message: str) -> Reply:
    return Reply(ReplyKind.ERROR, refusal=refusal, message=message)


def chunks(output: bytes, size: int = CHUNK_BYTES) -> Iterator[bytes]:
    """`output` in entries of at most `size` bytes."""
    for start in range(0, len(output), size):
        yield output[start : start + size]


def encode_reply(reply: Reply) -> dict[str, bytes]:
    """A stream entry's fields: `kind`, and `body`: the bytes themselves for data (the bulk of a
    reply, never re-encoded), JSON for the rest."""
    if reply.kind is ReplyKind.DATA:
        return {"kind": b"data", "body": reply.data}
    meta: dict[str, object] = {}
    if reply.kind is ReplyKind.END:
        meta = {"exit_code": reply.exit_code, "timed_out": reply.timed_out, "truncated": reply.truncated}
    elif reply.kind is ReplyKind.ERROR:
        meta = {"refusal": (reply.refusal or Refusal.UNAVAILABLE).value, "message": reply.message}
    return {"kind": reply.kind.value.encode(), "body": json.dumps(meta).encode()}


class _EndMeta(BaseModel):
    exit_code: StrictInt | None = None
    timed_out: StrictBool = False
    truncated: StrictBool = False


class _ErrorMeta(BaseModel):
    refusal: Refusal
    message: str = Field(max_length=4096)


def decode_reply(fields: dict[bytes, bytes]) -> Reply:
    """A stream entry as the agent wrote it; one the API cannot read is an UNAVAILABLE error saying why."""
    try:
        kind = ReplyKind(fields.get(b"kind", b"").decode())
        body = fields.get(b"body", b"")
        if kind is ReplyKind.DATA:
            return data(body)
        if kind is ReplyKind.END:
            meta = _EndMeta.model_validate_json(body)
            return end(meta.exit_code, timed_out=meta.timed_out, truncated=meta.truncated)
        if kind is ReplyKind.ERROR:
            error = _ErrorMeta.model_validate_json(body)
            return refused(error.refusal, error.message)
        return Reply(kind)
    except (ValueError, UnicodeDecodeError) as exc:
        return refused(Refusal.UNAVAILABLE, f"the agent's reply cannot be read: {describe(exc)}")


class OutputTail:
    """The last `limit` bytes of output given piece by piece, and whether anything before them was dropped."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.buffer = bytearray()
        self.truncated = False

    def add(self, piece: bytes) -> None:
        self.buffer += piece
        excess = len(self.buffer) - self.limit
        if excess > 0:
            del self.buffer[:excess]
            self.truncated = True

    def value(self) -> bytes:
        return bytes(self.buffer)
