"""What endpoints share: the lifespan's Store and Settings, and a way to call the blocking Store."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import redis
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from shared.settings import Settings
from shared.store import Store, unavailable_on_redis_errors

T = TypeVar("T")


def store_of(request: Request) -> Store:
    store: Store = request.state.store
    return store


def jobs_of(request: Request) -> redis.Redis:
    jobs: redis.Redis = request.state.jobs
    return jobs


def settings_of(request: Request) -> Settings:
    settings: Settings = request.state.settings
    return settings


def _guarded(fn: Callable[[], T]) -> T:
    with unavailable_on_redis_errors():
        return fn()


async def blocking(fn: Callable[[], T]) -> T:
    """Run a synchronous Store call in the thread pool, so a slow Redis never stalls the event loop.

    Redis outages surface as shared.errors.Unavailable (503).
    """
    return await run_in_threadpool(_guarded, fn)
