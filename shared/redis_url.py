"""Where Redis is, from the one URL every process is given (GORCHESTER_REDIS_URL), and clients made from it.

- `redis://[user[:password]@]host:port/db` (or `rediss://` for TLS): one server.
- `redis+sentinel://[user[:password]@]host:port,host:port,.../MASTER/db` (or `rediss+sentinel://`):
  the master the sentinels at those addresses name MASTER, followed through failovers. The password
  (and TLS options, e.g. `?ssl_ca_certs=`) serve the sentinels and the data servers alike, so give
  the sentinels the same `requirepass`.

A client of a sentinel URL asks the sentinels for the master when it connects, and again whenever a
connection is lost (redis-py's SentinelConnectionPool): after a failover, the next call that fails is
retried by the caller and reaches the new master.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import redis
import redis.asyncio
from redis.asyncio.retry import Retry as AsyncRetry
from redis.asyncio.sentinel import Sentinel as AsyncSentinel
from redis.backoff import NoBackoff
from redis.retry import Retry
from redis.sentinel import Sentinel

SENTINEL_SCHEMES = {"redis+sentinel": False, "rediss+sentinel": True}  # scheme -> TLS
DEFAULT_SENTINEL_PORT = 26379


class RedisUrlError(ValueError):
    """A URL that names no Redis; the message says what is wrong."""


@dataclass(frozen=True)
class SentinelTarget:
    """A master found through sentinels."""

    sentinels: tuple[tuple[str, int], ...]
    master: str
    db: int
    username: str | None
    password: str | None
    tls: bool
    options: tuple[tuple[str, str], ...]  # the query's options (ssl_ca_certs=...), for every connection

    def connection_kwargs(self) -> dict[str, Any]:
        """What every connection (to a sentinel or a data server) is made with, besides its address."""
        kwargs: dict[str, Any] = {"password": self.password}
        if self.tls:
            kwargs["ssl"] = True
        kwargs.update(dict(self.options))
        return kwargs

    def describe(self) -> str:
        return f"master {self.master!r} of sentinels {', '.join(f'{host}:{port}' for host, port in self.sentinels)}"


def sentinel_target(url: str) -> SentinelTarget | None:
    """The sentinel target a `redis+sentinel://` URL names; None for any other URL."""
    parts = urlsplit(url)
    if parts.scheme not in SENTINEL_SCHEMES:
        return None
    userinfo, _, hosts = parts.netloc.rpartition("@")
    username, _, password = userinfo.partition(":")
    sentinels = []
    for item in filter(None, hosts.split(",")):
        if item.startswith("["):  # [IPv6]:port
            host, _, rest = item[1:].partition("]")
            port = rest.removeprefix(":")
        else:
            host, _, port = item.partition(":")
        port = port or str(DEFAULT_SENTINEL_PORT)
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise RedisUrlError(f"{item!r} is not HOST:PORT of a sentinel")
        sentinels.append((host, int(port)))
    if not sentinels:
        raise RedisUrlError("a sentinel URL names its sentinels: redis+sentinel://HOST:PORT,HOST:PORT/MASTER/DB")
    path = [unquote(piece) for piece in parts.path.split("/") if piece]
    if not path or len(path) > 2 or (len(path) == 2 and not path[1].isdigit()):
        raise RedisUrlError("a sentinel URL ends /MASTER or /MASTER/DB, e.g. redis+sentinel://h:26379/gorchester/0")
    return SentinelTarget(
        sentinels=tuple(sentinels),
        master=path[0],
        db=int(path[1]) if len(path) == 2 else 0,
        username=unquote(username) or None,
        password=unquote(password) or None,
        tls=SENTINEL_SCHEMES[parts.scheme],
        options=tuple(parse_qsl(parts.query)),
    )


def hosts(url: str) -> list[str]:
    """The hosts a URL sends this process to: its server's, or its sentinels' (the data servers they name
    are found at run time)."""
    target = sentinel_target(url)
    if target is not None:
        return [host for host, _ in target.sentinels]
    return [urlsplit(url).hostname or "localhost"]


def describe(url: str) -> str:
    """Where `url` points, fit for a message (no password)."""
    target = sentinel_target(url)
    if target is not None:
        return target.describe()
    parts = urlsplit(url)
    return f"redis at {parts.hostname}:{parts.port or 6379}"


def current_server(url: str, timeout: float = 2.0) -> str:
    """A one-server URL for where `url` points now: itself, or the master its sentinels name at this
    moment (for a tool that takes only plain URLs, such as rq's command line); `url` when no sentinel
    answers."""
    target = sentinel_target(url)
    if target is None:
        return url
    sentinel = Sentinel(list(target.sentinels), sentinel_kwargs=_sentinel_kwargs(
        target, {"socket_timeout": timeout, "socket_connect_timeout": timeout}, Retry(NoBackoff(), 0)))
    try:
        host, port = sentinel.discover_master(target.master)
    except redis.RedisError:
        return url
    finally:
        for connection in sentinel.sentinels:
            connection.close()
    parts = urlsplit(url)
    userinfo = parts.netloc.rpartition("@")[0]
    netloc = f"{userinfo}@" if userinfo else ""
    netloc += f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    query = f"?{parts.query}" if parts.query else ""
    return f"{'rediss' if target.tls else 'redis'}://{netloc}/{target.db}{query}"


def client(url: str, **options: Any) -> redis.Redis:
    """A client of the Redis `url` names, made with redis-py's `options` (timeouts, retries, decoding)."""
    target = sentinel_target(url)
    if target is None:
        return redis.Redis.from_url(url, **options)
    sentinel = Sentinel(list(target.sentinels),
                        sentinel_kwargs=_sentinel_kwargs(target, options, Retry(NoBackoff(), 0)))
    return sentinel.master_for(target.master, db=target.db, username=target.username, **target.connection_kwargs(),
                               **options)


def async_client(url: str, **options: Any) -> redis.asyncio.Redis:
    """The same for asyncio code (the API's health and node calls)."""
    target = sentinel_target(url)
    if target is None:
        return redis.asyncio.Redis.from_url(url, **options)
    sentinel = AsyncSentinel(list(target.sentinels),
                             sentinel_kwargs=_sentinel_kwargs(target, options, AsyncRetry(NoBackoff(), 0)))
    return sentinel.master_for(target.master, db=target.db, username=target.username, **target.connection_kwargs(),
                               **options)


def _sentinel_kwargs(target: SentinelTarget, options: dict[str, Any], retry: Any) -> dict[str, Any]:
    """Connections to the sentinels: the target's credentials and TLS, the caller's timeouts, and no
    retry of a sentinel that does not answer (the next sentinel is the retry: redis-py's default of
    three retries with back-off made a lookup with two sentinels dead take 7.6 s)."""
    timeouts: dict[str, Any] = {key: options[key] for key in ("socket_timeout", "socket_connect_timeout")
                                if key in options}
    return {**target.connection_kwargs(), **timeouts, "retry": retry}
