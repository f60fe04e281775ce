"""The agent's answers to the API's requests about this node's replicas: their logs, a command run in one.

A daemon thread of the agent (not an RQ job: a follow lasting hours must never hold up a start or a
stop) pops requests from the node's list and hands each to a pool of MAX_NODE_REQUESTS threads;
beyond that a request is refused at once. Each thread checks the replica is still this node's as
the API read it, then writes its reply to the request's stream through one Lua call per entry that
also checks the API still reads (its reader key) and pushes the stream's expiry forward. It stops
writing while the API has MAX_BACKLOG entries unread, and stops altogether once the reader key
lapses (the client went away, or the API died). shared/node_requests.py has the messages and bounds.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import redis

from shared import node_requests as protocol
from shared.keys import Keys
from shared.node_requests import ExecRequest, LogsRequest, NodeRequest, Refusal, Reply, UnreadableRequest
from shared.storage.connection import connect
from worker.container_output import EngineClosed
from worker.engine import ContainerGone, Engine, EngineError
from worker.engine_streams import StreamFormatError
from worker.loops import MAX_BACKOFF
from worker.node import Node

log = logging.getLogger("rq.worker.gorchester")

REDIS_DOWN = (redis.ConnectionError, redis.TimeoutError)
POP_SECONDS = 1  # a BLPOP's wait: how soon the thread sees the agent stopping
# How often a writer held back by a full backlog looks again: soon at first (a fast reader catches up
# within milliseconds), then less often, up to BACKLOG_POLL_MAX (a paused client may pause for long).
BACKLOG_POLL_SECONDS = 0.005
BACKLOG_POLL_MAX = 0.25

# KEYS[1] the reply stream, KEYS[2] its reader key. ARGV[1] the stream's expiry (s), then an entry's
# field/value pairs, if any. The entry is written only while the API still reads (else the stream is
# deleted: nothing is left behind); returns the stream's length (the API's unread entries), or -1.
WRITE_REPLY = """
if redis.call('EXISTS', KEYS[2]) == 0 then
  redis.call('DEL', KEYS[1])
  return -1
end
if #ARGV > 1 then
  redis.call('XADD', KEYS[1], '*', unpack(ARGV, 2))
  redis.call('EXPIRE', KEYS[1], ARGV[1])
end
return redis.call('XLEN', KEYS[1])
"""


class ReaderGone(Exception):
    """The API no longer reads the reply (its client left, it gave up, or it died)."""


class ReplyStream:
    """Where one request's reply goes, written by the one thread that serves it."""

    def __init__(self, server: RequestServer, request_id: str):
        keys = Keys(server.node.cluster)
        self.keys = [keys.reply(request_id), keys.reader(request_id)]
        self.server = server

    def send(self, reply: Reply) -> None:
        """Write `reply` once the API has at most MAX_BACKLOG entries unread; raises ReaderGone."""
        unread = self._write_entry(protocol.encode_reply(reply))
        poll = BACKLOG_POLL_SECONDS
        while unread > protocol.MAX_BACKLOG:
            if self.server.stopping.wait(poll):
                raise ReaderGone("the agent is stopping")
            unread = self._write_entry(None)
            poll = min(poll * 2, BACKLOG_POLL_MAX)

    def _write_entry(self, fields: dict[str, bytes] | None) -> int:
        args: list[Any] = [protocol.REPLY_TTL_SECONDS]
        for name, value in (fields or {}).items():
            args += [name, value]
        unread = int(self.server.write_reply(keys=self.keys, args=args))
        if unread < 0:
            raise ReaderGone("nobody reads the reply any more")
        return unread


class RequestServer:
    def __init__(self, node: Node, engine: Engine, redis_url: str, stopping: threading.Event,
                 limit: int = protocol.MAX_NODE_REQUESTS):
        self.node = node
        self.engine = engine  # a client of its own: its connections are never those the jobs need
        self.stopping = stopping
        self.limit = limit
        self.redis = connect(redis_url, decode=False)  # replies carry the containers' bytes as they are
        self.write_reply = self.redis.register_script(WRITE_REPLY)
        self.slots = threading.BoundedSemaphore(limit)
        self.pool = ThreadPoolExecutor(max_workers=limit, thread_name_prefix="request")

    @property
    def queue(self) -> str:
        return Keys(self.node.cluster).node_requests(self.node.id)

    def run(self) -> None:
        """Pop and dispatch requests until the agent stops; a Redis outage is waited out with back-off."""
        delay = 0.2
        while not self.stopping.is_set():
            try:
                popped = self.redis.blpop([self.queue], timeout=POP_SECONDS)
            except REDIS_DOWN as exc:
                log.warning("requests: redis unavailable (%s); retrying in %.1fs", exc, delay)
                self.stopping.wait(delay)
                delay = min(delay * 2, MAX_BACKOFF)
                continue
            delay = 0.2
            if popped is not None:
                _, raw = popped
                self.dispatch(raw if isinstance(raw, bytes) else raw.encode())
        self.pool.shutdown(wait=False, cancel_futures=True)

    def dispatch(self, raw: bytes) -> None:
        try:
            request = protocol.decode_request(raw)
        except UnreadableRequest as exc:
            log.warning("request %s cannot be read: %s", exc.request_id or "(without an id)", exc)
            if exc.request_id is not None:
                self._answer(exc.request_id, protocol.refused(Refusal.UNAVAILABLE, f"node {self.node.id} cannot "
                                                              f"read the request (another version's?): {exc}"))
            return
        if not self.slots.acquire(blocking=False):
            message = f"node {self.node.id} serves {self.limit} log and exec requests already; try again later"
            log.warning("request %s refused: %s", request.id, message)
            self._answer(request.id, protocol.refused(Refusal.UNAVAILABLE, message))
            return
        try:
            self.pool.submit(self.serve, request)
        except RuntimeError:  # the pool shut down: the agent is stopping
            self.slots.release()

    def _answer(self, request_id: str, reply: Reply) -> None:
        try:
            ReplyStream(self, request_id).send(reply)
        except (ReaderGone, *REDIS_DOWN):
            pass

    def serve(self, request: NodeRequest) -> None:
        began = time.monotonic()
        outcome = "ended"
        try:
            replies = ReplyStream(self, request.id)
            try:
                if isinstance(request, LogsRequest):
                    self.logs(request, replies)
                else:
                    self.exec(request, replies)
            except ContainerGone as exc:
                outcome = f"refused: {exc}"
                replies.send(protocol.refused(Refusal.CONFLICT, f"task {request.task!r}: {exc} on {self.node.id}"))
            except (EngineError, EngineClosed, StreamFormatError, OSError) as exc:
                outcome = f"failed: {exc}"
                replies.send(protocol.refused(Refusal.UNAVAILABLE, f"node {self.node.id}'s engine: {exc}"))
        except ReaderGone as exc:
            outcome = f"ended: {exc}"
        except REDIS_DOWN as exc:
            outcome = f"ended: redis unavailable ({exc})"
        except Exception:  # noqa: BLE001 - one request must never take the agent's thread with it
            log.exception("request %s (%s of %s) failed", request.id, request.kind, request.task)
            outcome = "failed"
            self._answer(request.id, protocol.refused(Refusal.UNAVAILABLE, f"node {self.node.id} failed to serve "
                                                      "the request (its agent's log says why)"))
        finally:
            self.slots.release()
        log.info("request %s (%s of %s) %s after %.1fs", request.id, request.kind, request.task, outcome,
                 time.monotonic() - began)

    def _container(self, request: NodeRequest, replies: ReplyStream) -> dict[str, Any] | None:
        """The replica's container as the engine sees it, if the task is still this node's as the API read
        it; else the refusal is sent and None returned."""
        task = self.node.task(request.task)
        reason = None
        if task is None:
            reason = "no longer exists"
        elif task.node != self.node.id:
            reason = f"is not on {self.node.id} (it is on {task.node or 'no node'})"
        elif (task.gen, task.incarnation, task.container_id) != (
            request.gen, request.incarnation, request.container_id
        ):
            reason = f"changed on {self.node.id} (it is at gen {task.gen}, container {(task.container_id or '-')[:12]})"
        if reason is not None:
            replies.send(protocol.refused(Refusal.CONFLICT, f"task {request.task!r} {reason}"))
            return None
        attrs = self.engine.inspect(request.container_id)
        if attrs is None:
            raise ContainerGone(f"its container {request.container_id[:12]} no longer exists")
        return attrs

    def logs(self, request: LogsRequest, replies: ReplyStream) -> None:
        attrs = self._container(request, replies)
        if attrs is None:
            return
        tty = bool((attrs.get("Config") or {}).get("Tty"))
        with self.engine.logs(request.container_id, tail=request.tail, follow=request.follow,
                              multiplexed=not tty) as output:
            replies.send(protocol.START)
            while not self.stopping.is_set():
                chunk = output.read(protocol.CHUNK_BYTES, protocol.GATHER_SECONDS, protocol.IDLE_SECONDS)
                if chunk is None:
                    replies.send(protocol.end())
                    return
                replies.send(protocol.data(chunk) if chunk else protocol.IDLE)
            raise ReaderGone("the agent is stopping")

    def exec(self, request: ExecRequest, replies: ReplyStream) -> None:
        attrs = self._container(request, replies)
        if attrs is None:
            return
        if not (attrs.get("State") or {}).get("Running"):
            replies.send(protocol.refused(
                Refusal.CONFLICT, f"task {request.task!r}: its container {request.container_id[:12]} is not running"))
            return
        replies.send(protocol.START)

        def waiting() -> bool:
            try:
                replies.send(protocol.IDLE)
            except ReaderGone:
                return False
            return not self.stopping.is_set()

        result = self.engine.exec(request.container_id, list(request.command), request.timeout,
                                  limit=protocol.EXEC_OUTPUT_LIMIT, waiting=waiting)
        for chunk in protocol.chunks(result.output):
            replies.send(protocol.data(chunk))
        replies.send(protocol.end(result.exit_code, timed_out=result.timed_out, truncated=result.truncated))
