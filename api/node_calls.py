"""Requests to a node's agent and the relay of its replies, on redis.asyncio: the API never talks to
a Docker engine, and a reply that streams for hours holds none of the API's Redis threads
(api/context.py) and never blocks the event loop.

`NodeCalls.call` pushes the request on the node's list, keeps the request's reader key alive (a task
of its own, every REFRESH_SECONDS, however long the client takes to read) and waits for the agent's
first answer: within ANSWER_SECONDS, else 503 naming the node (its agent is
dead, or not there). A refusal maps to 409 (the replica is not as the API read it) or 503. The
`Call` it returns reads the rest with XREAD BLOCK, trimming what it read (the agent's back-pressure
counts the unread entries), and `close` deletes the reply: nothing stays behind in Redis. At most
MAX_CALLS calls per API process at once, each holding at most two Redis connections at a time and
READ_COUNT entries in memory.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator
from typing import Any

import anyio
import redis.asyncio
from starlette.requests import Request

from api.context import API_REDIS_TIMEOUT_SECONDS
from shared import node_requests as protocol
from shared.errors import Conflict, Unavailable
from shared.keys import Keys
from shared.node_requests import NodeRequest, Refusal, Reply, ReplyKind
from shared.records import NodeStatus, TaskRecord
from shared.redis_url import async_client
from shared.storage import ApiStore

log = logging.getLogger("gorchester.api")

MAX_CALLS = 256  # logs and exec requests relayed at once by one API process; beyond it, 503
READ_COUNT = 4  # entries per XREAD: at most READ_COUNT x CHUNK_BYTES (1 MiB) of a reply in memory
CLOSE_SECONDS = 2.0  # for a finished call's cleanup, whatever cancelled its request


class NodeCalls:
    """The API's calls to agents: a redis.asyncio client of their own (the app's lifespan owns it) and
    the bound."""

    def __init__(self, redis_url: str, keys: Keys, limit: int = MAX_CALLS):
        # A socket timeout past the longest XREAD BLOCK: a hanging Redis fails a call within seconds.
        self.client = async_client(
            redis_url, socket_timeout=protocol.REFRESH_SECONDS + API_REDIS_TIMEOUT_SECONDS,
            socket_connect_timeout=API_REDIS_TIMEOUT_SECONDS,
        )
        self.keys = keys
        self.limit = limit
        self.active = 0

    async def aclose(self) -> None:
        await self.client.aclose()

    async def call(self, node: str, request: NodeRequest) -> Call:
        """The call once the agent took it (its first answer was `start`); raises Unavailable (no answer
        within ANSWER_SECONDS, too many calls) or Conflict (the agent's refusal)."""
        if self.active >= self.limit:
            raise Unavailable(f"the API relays {self.limit} log and exec streams already; try again later")
        call = Call(self, node, request)
        try:
            await call.open()
        except BaseException:
            await call.close()
            raise
        return call


class Call:
    def __init__(self, calls: NodeCalls, node: str, request: NodeRequest):
        self.calls = calls
        self.client = calls.client
        self.node = node
        self.request = request
        self.payload = protocol.encode_request(request)
        self.queue = calls.keys.node_requests(node)
        self.reply = calls.keys.reply(request.id)
        self.reader = calls.keys.reader(request.id)
        self.last_id = b"0-0"
        self.pending: list[tuple[bytes, dict[bytes, bytes]]] = []
        self.keeper: asyncio.Task[None] | None = None
        self.closed = False
        calls.active += 1

    async def open(self) -> None:
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.set(self.reader, 1, ex=protocol.READER_TTL_SECONDS)
            pipe.rpush(self.queue, self.payload)
            pipe.expire(self.queue, protocol.REQUESTS_TTL_SECONDS)
            await pipe.execute()
        # Kept alive apart from the reading: a client that pauses (a pager) stalls the reading for as
        # long as it likes, and the agent must wait for it (back-pressure), not give up.
        self.keeper = asyncio.create_task(self._keep_reading(), name=f"reader {self.request.id}")
        first = await self.next_reply(f"node {self.node} did not answer within {protocol.ANSWER_SECONDS:g} s "
                                      "(is its agent running?)")
        if first.kind is ReplyKind.ERROR:
            raise error_of(first)
        if first.kind is not ReplyKind.START:
            raise Unavailable(f"node {self.node} answered {first.kind.value} where it should start")

    async def replies(self) -> AsyncIterator[Reply]:
        """The data entries and the end (or an error); raises Unavailable when the agent falls silent
        for ANSWER_SECONDS."""
        while True:
            reply = await self.next_reply(f"node {self.node} stopped answering for {protocol.ANSWER_SECONDS:g} s "
                                          "(its agent died?)")
            if reply.kind is not ReplyKind.IDLE:
                yield reply
            if reply.kind in (ReplyKind.END, ReplyKind.ERROR):
                return

    async def next_reply(self, silence: str) -> Reply:
        """The agent's next entry; Unavailable(`silence`) when none comes within ANSWER_SECONDS."""
        deadline = time.monotonic() + protocol.ANSWER_SECONDS
        while not self.pending:
            now = time.monotonic()
            if now >= deadline:
                raise Unavailable(silence)
            block = min(deadline - now, protocol.REFRESH_SECONDS)
            found: Any = await self.client.xread(
                {self.reply: self.last_id}, count=READ_COUNT, block=max(int(block * 1000), 1)
            )
            for _, entries in found or []:
                self.pending.extend(entries)
            if self.pending:
                self.last_id = self.pending[-1][0]
                # What is read leaves the stream: the agent holds back while too much is unread.
                await self.client.xtrim(self.reply, minid=_after(self.last_id), approximate=False)
        _, fields = self.pending.pop(0)
        return protocol.decode_reply(fields)

    async def _keep_reading(self) -> None:
        """Every REFRESH_SECONDS until closed: the reader key's and the reply's expiries pushed forward."""
        while True:
            await asyncio.sleep(protocol.REFRESH_SECONDS)
            try:
                async with self.client.pipeline(transaction=False) as pipe:
                    # XX: a refresh still in flight when close() deletes the key must not make it again
                    # (it stayed for READER_TTL_SECONDS, found by the exec test).
                    pipe.set(self.reader, 1, ex=protocol.READER_TTL_SECONDS, xx=True)
                    pipe.expire(self.reply, protocol.REPLY_TTL_SECONDS)
                    await pipe.execute()
            except (redis.RedisError, OSError) as exc:  # a short outage: the next one may do; a long one ends it
                log.warning("request %s to node %s: reader key not refreshed (%s)", self.request.id, self.node, exc)

    async def close(self) -> None:
        """Stop the agent (its reader key goes) and delete the request and the reply; once, whatever
        cancelled the request (a client that left), within CLOSE_SECONDS."""
        if self.closed:
            return
        self.closed = True
        self.calls.active -= 1
        if self.keeper is not None:
            self.keeper.cancel()
        with anyio.move_on_after(CLOSE_SECONDS, shield=True):
            try:
                async with self.client.pipeline(transaction=True) as pipe:
                    pipe.delete(self.reader, self.reply)
                    pipe.lrem(self.queue, 1, self.payload.decode())  # still there when no agent took it
                    await pipe.execute()
            except (redis.RedisError, OSError) as exc:  # the expiries clean up instead
                log.warning("request %s to node %s: cleanup failed (%s)", self.request.id, self.node, exc)


def calls_of(request: Request) -> NodeCalls:
    calls: NodeCalls = request.state.node_calls
    return calls


def replica(store: ApiStore, task_id: str, now: float, misses: float) -> TaskRecord:
    """The task a call is about, with its container and node: 409 when it has none (yet, or any more),
    503 at once when its node is down (its agent cannot answer)."""
    task = store.task(task_id)
    if task.container_id is None or task.node is None:
        raise Conflict(f"task {task_id!r} has no container (it is {task.state.value})")
    if not re.fullmatch(protocol.CONTAINER_ID, task.container_id):
        raise Conflict(f"task {task_id!r}: its record's container id is not one ({task.container_id[:80]!r})")
    node = store.node(task.node)
    if node.status(now, misses, store.heard_since()) is NodeStatus.DOWN:
        raise Unavailable(f"node {node.id} is down (no heartbeat for {now - node.last_heartbeat:.0f} s): "
                          f"its agent cannot answer for task {task_id!r}")
    return task


def _after(entry_id: bytes) -> bytes:
    """The smallest stream id after `entry_id` (XTRIM MINID keeps ids at or above it)."""
    millis, _, sequence = entry_id.partition(b"-")
    return millis + b"-" + str(int(sequence) + 1).encode()


def error_of(reply: Reply) -> Exception:
    """The exception an agent's error reply maps to: 409 for a conflict, 503 for the rest."""
    if reply.refusal is Refusal.CONFLICT:
        return Conflict(reply.message)
    return Unavailable(reply.message)
