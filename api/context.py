"""What endpoints share: the lifespan's ApiStore and Settings, and a bounded way to call it (it blocks).

Redis work runs on threads of its own (`RedisWork`), never on the server's shared thread pool, so a
frozen Redis cannot starve `/v1/health`, the dashboard or anything else. Each request has a
deadline (REQUEST_DEADLINE_SECONDS from its first Redis call): waiting for a free Redis thread and
the Redis work itself must end by then, or the answer is 503 with the reason. A thread left behind by a
request that gave up keeps its slot until its own socket timeout ends it, so a frozen Redis holds
at most REDIS_THREADS threads, however many requests come.
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import redis
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from shared.errors import Unavailable
from shared.settings import Settings
from shared.storage import ApiStore
from shared.storage.connection import connect, unavailable_on_redis_errors

T = TypeVar("T")

# Below the 2 s a client (and the issue) allows: the answer, 503 included, is on its way by then.
REQUEST_DEADLINE_SECONDS = 1.8
# Threads for Redis work per API process. At a few milliseconds per request this serves thousands
# of requests a second; when Redis hangs it is how many threads can be stuck at once.
REDIS_THREADS = 16
# The API's Redis clients: a socket (and connect) timeout well inside the request deadline.
API_REDIS_TIMEOUT_SECONDS = 1.0
# With replicas (a sentinel URL), how long a change waits for a replica's acknowledgement (WAIT 1),
# inside the socket timeout: a change acknowledged only by the master is a 503, not a 2xx.
REPLICA_ACK_MS = 500


def api_redis(url: str, decode: bool = True) -> redis.Redis:
    """A Redis client for the API: each call to a hanging Redis ends after one socket timeout."""
    return connect(url, timeout=API_REDIS_TIMEOUT_SECONDS, decode=decode, retry_on_timeout=False)


def store_of(request: Request) -> ApiStore:
    store: ApiStore = request.state.store
    return store


def settings_of(request: Request) -> Settings:
    settings: Settings = request.state.settings
    return settings


class RedisWork:
    """The API's threads for Redis work, and the slots that bound them (one per thread)."""

    def __init__(self, threads: int = REDIS_THREADS) -> None:
        self.threads = threads
        self.executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="redis-work")
        self.slots = asyncio.Semaphore(threads)

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)

    async def run(self, fn: Callable[[], T], deadline: float) -> T:
        loop = asyncio.get_running_loop()
        try:
            await asyncio.wait_for(self.slots.acquire(), _remaining(deadline))
        except TimeoutError:
            raise Unavailable(
                f"redis unavailable: all {self.threads} Redis threads are busy (is Redis hanging?)"
            ) from None

        def work() -> T:
            try:
                with unavailable_on_redis_errors():
                    return fn()
            finally:  # the slot is the thread's: freed when the work ends, not when the request gives up
                loop.call_soon_threadsafe(self.slots.release)

        try:
            future = loop.run_in_executor(self.executor, work)
        except BaseException:
            self.slots.release()
            raise
        try:
            return await asyncio.wait_for(asyncio.shield(future), _remaining(deadline))
        except TimeoutError:
            future.add_done_callback(_forget)
            raise Unavailable(
                f"redis unavailable: no answer within {REQUEST_DEADLINE_SECONDS:g} s (is Redis hanging?)"
            ) from None


def _remaining(deadline: float) -> float:
    return max(deadline - time.monotonic(), 0.0)


def _forget(future: asyncio.Future[Any]) -> None:
    """Retrieve what an abandoned call ended with, so asyncio does not log it as never retrieved."""
    if not future.cancelled():
        future.exception()


class RequestClock:
    """When a request's Redis work must be done: REQUEST_DEADLINE_SECONDS from its first Redis call
    (not from its start, so reading a large body does not eat into it)."""

    def __init__(self, work: RedisWork | None) -> None:
        self.work = work
        self.deadline: float | None = None

    def start(self) -> float:
        if self.deadline is None:
            self.deadline = time.monotonic() + REQUEST_DEADLINE_SECONDS
        return self.deadline


_clock: contextvars.ContextVar[RequestClock] = contextvars.ContextVar("request_clock")


class RequestDeadline:
    """ASGI middleware: gives each request its clock and the app's RedisWork, for `blocking`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            _clock.set(RequestClock(scope.get("state", {}).get("redis_work")))
        await self.app(scope, receive, send)


async def acknowledged(request: Request, change: Callable[[ApiStore], T]) -> T:
    """Run a change on a Redis thread, on one connection of the store's, and with replicas (a sentinel
    URL) wait until one of them has it too (WAIT counts the writes of the connection it is sent on):
    a 2xx then means the change survives the master's loss. A change no replica acknowledged within
    REPLICA_ACK_MS is on the master only: 503, saying so (applying it again is harmless)."""
    store = store_of(request)
    wait = settings_of(request).replicated

    def run() -> T:
        with store.pinned() as pinned:
            result = change(pinned)
            if wait and not pinned.wait_for_replica(REPLICA_ACK_MS):
                raise Unavailable(
                    f"redis unavailable: the change reached the master but no replica acknowledged it within "
                    f"{REPLICA_ACK_MS} ms, so a failover could lose it; retry"
                )
        return result

    return await blocking(run)


async def blocking(fn: Callable[[], T]) -> T:
    """Run a synchronous store call on a Redis thread, by the request's deadline.

    Redis outages, a hanging Redis and a full set of Redis threads surface as
    shared.errors.Unavailable (503).
    """
    clock = _clock.get()
    assert clock.work is not None, "the app's lifespan makes the RedisWork"
    return await clock.work.run(fn, clock.start())
