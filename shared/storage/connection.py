"""Connecting to Redis: a client that fails fast, and Redis' refusals as the API reports them."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from shared import defaults, redis_url
from shared.errors import Unavailable


class NotLeader(Exception):
    """The scheduler's lease was lost before its plan was written; nothing was written."""


def connect(
    url: str, *, timeout: float = defaults.DEFAULT_REDIS_TIMEOUT, decode: bool = True, retry_on_timeout: bool = True
) -> redis.Redis:
    """A client that fails fast (seconds, not forever) and retries briefly with back-off.

    Without `retry_on_timeout` a call to a hanging Redis ends after one `timeout` (the API's bound);
    a dropped connection is still retried."""
    retried = (redis.ConnectionError, redis.TimeoutError) if retry_on_timeout else (redis.ConnectionError,)
    return redis_url.client(
        url,
        decode_responses=decode,
        # Bytes that are not UTF-8 (a record written by hand) read as U+FFFD: that record is then
        # unreadable, rather than the whole reply of the hash it is in.
        encoding_errors="replace",
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        health_check_interval=10,
        retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), 2, supported_errors=retried),
        retry_on_error=list(retried),
    )


TRANSIENT_REFUSALS = ("LOADING", "MISCONF", "NOREPLICAS", "MASTERDOWN", "READONLY")


@contextmanager
def unavailable_on_redis_errors() -> Iterator[None]:
    try:
        yield
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise Unavailable(f"redis unavailable: {exc}") from exc
    except redis.ResponseError as exc:
        # Redis loading its data, unable to persist, refusing writes without replicas, a replica, or
        # one whose master is down (in a failover): each passes.
        if str(exc).startswith(TRANSIENT_REFUSALS) or isinstance(exc, redis.exceptions.ReadOnlyError):
            raise Unavailable(f"redis unavailable: {exc}") from exc
        raise

