"""The API's requests to agents and their replies (shared/node_requests.py): encoding and bounds."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from api.task_exec import ExecBody
from shared import node_requests as protocol
from shared.node_requests import (
    ExecRequest,
    LogsRequest,
    OutputTail,
    Refusal,
    ReplyKind,
    UnreadableRequest,
    decode_reply,
    decode_request,
    encode_reply,
    encode_request,
    new_request_id,
)

REPLICA = {"task": "web.1", "gen": 3, "incarnation": "5f1c", "container_id": "ab" * 32}


def test_requests_travel_as_json_and_come_back_the_same() -> None:
    logs = LogsRequest(id=new_request_id(), tail=20, follow=True, **REPLICA)
    run = ExecRequest(id=new_request_id(), command=["sh", "-c", "echo a\tb\nc"], timeout=30, **REPLICA)
    assert decode_request(encode_request(logs)) == logs
    assert decode_request(encode_request(run)) == run
    assert decode_request(encode_request(LogsRequest(id=logs.id, **REPLICA))).tail == "all"
    assert new_request_id() != new_request_id()


@pytest.mark.parametrize(
    "changes",
    [
        {"tail": -1}, {"tail": protocol.MAX_TAIL + 1}, {"tail": "some"}, {"follow": "yes"},
        {"id": "not-an-id"}, {"container_id": "abc-123"}, {"gen": -1}, {"kind": "shell"}, {"extra": 1},
    ],
)
def test_a_logs_request_out_of_bounds_is_unreadable(changes: dict[str, object]) -> None:
    body = {"kind": "logs", "id": new_request_id(), **REPLICA, **changes}
    with pytest.raises(UnreadableRequest) as caught:
        decode_request(json.dumps(body).encode())
    # Its id, when it has a good one, lets the agent still answer (so the API need not wait).
    assert caught.value.request_id == (body["id"] if "id" not in changes else None)


@pytest.mark.parametrize(
    "changes",
    [{"command": []}, {"command": ["a\0b"]}, {"command": ["x"] * 1001}, {"command": ["x" * (32 * 1024 + 1)]},
     {"timeout": 0}, {"timeout": 3601}, {"timeout": "5"}],
)
def test_an_exec_request_out_of_bounds_is_unreadable(changes: dict[str, object]) -> None:
    body = {"kind": "exec", "id": new_request_id(), "command": ["true"], "timeout": 5, **REPLICA, **changes}
    with pytest.raises(UnreadableRequest):
        decode_request(json.dumps(body).encode())


def test_garbage_is_unreadable_without_an_id() -> None:
    for raw in (b"", b"\xff\xfe", b"[1]", b'{"id": 5}', b"null"):
        with pytest.raises(UnreadableRequest) as caught:
            decode_request(raw)
        assert caught.value.request_id is None


def test_the_exec_body_has_the_requests_bounds() -> None:
    assert ExecBody.model_validate({"command": ["ls"]}).timeout == protocol.DEFAULT_EXEC_TIMEOUT
    for body in ({"command": []}, {"command": ["a\0"]}, {"command": ["ls"], "timeout": 3601},
                 {"command": ["ls"], "timeout": 1.5}, {"command": "ls"}, {"command": ["ls"], "tty": True}):
        with pytest.raises(ValidationError):
            ExecBody.model_validate(body)


def test_replies_keep_bytes_as_they_are() -> None:
    raw = bytes(range(256)) * 3
    fields = encode_reply(protocol.data(raw))
    assert fields == {"kind": b"data", "body": raw}
    assert decode_reply({key.encode(): value for key, value in fields.items()}).data == raw


@pytest.mark.parametrize(
    "reply",
    [protocol.START, protocol.IDLE, protocol.end(), protocol.end(7, truncated=True), protocol.end(None, timed_out=True),
     protocol.refused(Refusal.CONFLICT, "task 'web.1' moved"), protocol.refused(Refusal.UNAVAILABLE, "busy")],
)
def test_every_reply_comes_back_the_same(reply: protocol.Reply) -> None:
    fields = {key.encode(): value for key, value in encode_reply(reply).items()}
    assert decode_reply(fields) == reply


def test_a_reply_that_cannot_be_read_is_an_error_saying_so() -> None:
    for fields in ({}, {b"kind": b"shout"}, {b"kind": b"end", b"body": b"{"}, {b"kind": b"error", b"body": b"{}"},
                   {b"kind": b"end", b"body": b'{"exit_code": "0"}'}, {b"kind": b"\xff"}):
        reply = decode_reply(fields)
        assert reply.kind is ReplyKind.ERROR and reply.refusal is Refusal.UNAVAILABLE
        assert "cannot be read" in reply.message


def test_output_goes_in_bounded_chunks() -> None:
    assert list(protocol.chunks(b"")) == []
    pieces = list(protocol.chunks(b"x" * (2 * protocol.CHUNK_BYTES + 1)))
    assert [len(piece) for piece in pieces] == [protocol.CHUNK_BYTES, protocol.CHUNK_BYTES, 1]


def test_the_output_tail_keeps_the_last_bytes() -> None:
    tail = OutputTail(5)
    tail.add(b"abc")
    assert (tail.value(), tail.truncated) == (b"abc", False)
    tail.add(b"defg")
    assert (tail.value(), tail.truncated) == (b"cdefg", True)
    tail.add(b"0123456789")
    assert tail.value() == b"56789"
