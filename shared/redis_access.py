"""Whether this process may use the Redis its settings name, asked once as it starts.

A wrong password, a missing TLS setting or an untrusted certificate never mends itself: every process
(API, scheduler, node agent) refuses to start on one, naming the setting and what the server said,
instead of retrying for ever with a log line per attempt. A Redis that does not answer at all (down,
restarting, not yet reachable) is not refused: each process outlives an outage and carries on when
Redis is back.
"""

from __future__ import annotations

import logging
import ssl
from urllib.parse import urlsplit

import redis

from shared.keys import Keys
from shared.redis_url import describe
from shared.settings import PASSWORD_FILE_SETTING, SettingError
from shared.storage import schema
from shared.storage.connection import connect

log = logging.getLogger("gorchester.redis")

URL_SETTING = "GORCHESTER_REDIS_URL"
CHECK_TIMEOUT = 5.0  # seconds for the first PING (a TLS handshake and AUTH included)


def access_problem(url: str, exc: redis.RedisError) -> str | None:
    """What an operator must fix, when `exc` (from the first command on `url`) cannot mend by waiting."""
    parts = urlsplit(url)
    where = describe(url)
    cause = exc.__cause__ or exc.__context__
    if isinstance(exc, redis.AuthenticationError | redis.exceptions.NoPermissionError):
        user = f"user {parts.username!r}" if parts.username else "the default user"
        given = "a password" if parts.password else "no password"
        return (f"{URL_SETTING}: {where} refused {user} with {given} ({exc}); check the user in the URL and the "
                f"password in {PASSWORD_FILE_SETTING} against the server's requirepass or ACL user")
    if isinstance(cause, ssl.SSLCertVerificationError):
        return (f"{URL_SETTING}: {where}: its TLS certificate is not trusted ({cause.verify_message}); name the "
                "certificate authority that signed it with ?ssl_ca_certs=/path/to/ca.crt in the URL")
    if isinstance(cause, ssl.SSLError):
        return (f"{URL_SETTING}: {where} does not speak TLS ({cause.reason or cause}); use redis:// for a plain "
                "port, or point rediss:// at the server's tls-port")
    if isinstance(cause, TimeoutError) and "handshake" in str(cause):
        return (f"{URL_SETTING}: {where} took the connection but gave no TLS handshake within {CHECK_TIMEOUT:g}s: "
                "it serves plain Redis on that port; use redis://, or point rediss:// at the server's tls-port")
    if parts.scheme == "redis" and isinstance(exc, redis.ConnectionError) and (
        isinstance(cause, ConnectionResetError) or "closed by server" in str(exc)
    ):
        return (f"{URL_SETTING}: {where} closed the connection without answering: it serves TLS on that port "
                "(tls-port); use rediss:// (with ?ssl_ca_certs=/path/to/ca.crt)")
    return None


def check_access(url: str, cluster: str, component: str) -> None:
    """PING `url` once, then check the layout version of `cluster`'s data (shared/storage/schema.py); raise
    SettingError (the process exits with its message) on a problem of access or another version.
    A Redis that does not answer is only logged: the caller's loops wait it out."""
    client = connect(url, timeout=CHECK_TIMEOUT, retry_on_timeout=False)
    try:
        client.ping()
        schema.check(client, Keys(cluster), component)
    except redis.RedisError as exc:
        problem = access_problem(url, exc)
        if problem is not None:
            raise SettingError(f"{component}: {problem}") from None
        log.warning("%s: redis does not answer yet (%s); starting anyway, it is retried", component, exc)
    finally:
        client.close()
