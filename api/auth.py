"""Bearer-token authentication for the API: an admin token for changes, a read-only token for reads.

Tokens come from GORCHESTER_ADMIN_TOKEN / GORCHESTER_READ_TOKEN, or from the files named by
GORCHESTER_ADMIN_TOKEN_FILE / GORCHESTER_READ_TOKEN_FILE (first line). They are compared in constant
time and never logged. Rules:

- `/v1/health`, `/v1/openapi.json`, the dashboard's static files (`/ui`) and `/favicon.ico` are open: they hold no
  cluster data (the dashboard itself reads /v1 with the token the user types in).
- With a token configured: no `Authorization: Bearer` header is 401 (with `WWW-Authenticate: Bearer`);
  an unknown token is 401; the read token on a change (any method but GET/HEAD/OPTIONS) is 403.
  The admin token may also read.
- With no token configured at all: the API is unauthenticated and serves loopback clients only
  (as the admin); anyone else gets 403 saying so (and the API says so in its log at start).
- Before any of that, api/origins.py refuses cross-site browser requests and, in loopback-only
  mode, a Host that is not loopback or the server's address (DNS rebinding).

The role is recorded on the request's state: the read-only token sees env keys, not their values.
"""

from __future__ import annotations

import hmac
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from api.errors import problem
from api.origins import OriginPolicy, is_loopback_address
from shared.settings import SettingError, read_secret

log = logging.getLogger("gorchester.api")

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
OPEN_PATHS = frozenset({"/v1/health", "/v1/openapi.json", "/favicon.ico"})
OPEN_PREFIXES = ("/ui/",)
# Starlette's TestClient calls the app in-process with this client host; a real server (uvicorn)
# only ever gives IP addresses, so no remote client can claim it.
IN_PROCESS_CLIENTS = frozenset({"testclient"})
ROLE_KEY = "role"


class Role(StrEnum):
    ADMIN = "admin"
    READ = "read"


def _read_token(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name) or None
    path = env.get(f"{name}_FILE") or None
    if value and path:
        raise SettingError(f"{name} and {name}_FILE are both set; set one")
    return read_secret(f"{name}_FILE", path) if path else value


@dataclass(frozen=True)
class Tokens:
    admin: str | None = None
    read: str | None = None

    def __repr__(self) -> str:  # never show a token, even in a traceback or a debug log
        return f"Tokens(admin={'set' if self.admin else None}, read={'set' if self.read else None})"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Tokens:
        env = os.environ if env is None else env
        return cls(admin=_read_token(env, "GORCHESTER_ADMIN_TOKEN"), read=_read_token(env, "GORCHESTER_READ_TOKEN"))

    @property
    def enabled(self) -> bool:
        return bool(self.admin or self.read)

    def role_of(self, presented: str) -> Role | None:
        """The role a presented token grants; both comparisons always run (constant time)."""
        given = presented.encode()
        is_admin = self.admin is not None and hmac.compare_digest(given, self.admin.encode())
        is_read = self.read is not None and hmac.compare_digest(given, self.read.encode())
        if is_admin:
            return Role.ADMIN
        if is_read:
            return Role.READ
        return None

    def describe(self) -> str:
        """What the log says at start: which kinds are configured, never the tokens."""
        if not self.enabled:
            return "no API token configured: the API is unauthenticated and serves loopback clients only"
        kinds = [kind for kind, token in (("admin", self.admin), ("read-only", self.read)) if token]
        return f"bearer-token authentication on ({' and '.join(kinds)} token configured)"


def is_loopback(host: str | None) -> bool:
    """Loopback, an in-process test client, or no peer address at all (a unix socket is local)."""
    return host is None or host in IN_PROCESS_CLIENTS or is_loopback_address(host.split("%")[0])


def bearer(header: str) -> str | None:
    scheme, _, credentials = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not credentials.strip():
        return None
    return credentials.strip()


def is_open(path: str) -> bool:
    return path in OPEN_PATHS or path == "/ui" or path.startswith(OPEN_PREFIXES)


CHALLENGE = {"WWW-Authenticate": 'Bearer realm="gorchester"'}


class Auth:
    """ASGI middleware applying the rules above, after api/origins.py's cross-site checks, and recording
    the caller's role on the request's state (`role_of`). Tokens and the origin policy come from the
    app's lifespan state."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        tokens: Tokens = state.get("tokens") or Tokens()
        policy: OriginPolicy = state.get("origins") or OriginPolicy()
        site_refusal = policy.refusal(scope, loopback_only=not tokens.enabled)
        if site_refusal is not None:
            await problem(403, "forbidden", message=site_refusal)(scope, receive, send)
            return
        if is_open(scope["path"]):
            await self.app(scope, receive, send)
            return
        outcome = self.role_or_refusal(scope, tokens)
        if isinstance(outcome, Role):
            state[ROLE_KEY] = outcome
            await self.app(scope, receive, send)
        else:
            await outcome(scope, receive, send)

    @staticmethod
    def role_or_refusal(scope: Scope, tokens: Tokens) -> Role | Response:
        client = scope.get("client")
        host = client[0] if client else None
        if not tokens.enabled:
            if is_loopback(host):
                return Role.ADMIN  # the loopback-only mode: whoever is on this machine runs it
            return problem(
                403, "forbidden",
                message="this API has no token configured, so it serves loopback clients only; "
                "set GORCHESTER_ADMIN_TOKEN and GORCHESTER_READ_TOKEN to serve the network",
            )
        header = ""
        for name, value in scope.get("headers", []):
            if name == b"authorization":
                header = value.decode("latin-1")
                break
        presented = bearer(header)
        if presented is None:
            return problem(401, "unauthorized", headers=CHALLENGE, message="a bearer token is required")
        role = tokens.role_of(presented)
        if role is None:
            return problem(
                401, "unauthorized", headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
                message="the bearer token is not valid",
            )
        if role is Role.READ and scope["method"] not in READ_METHODS:
            return problem(403, "forbidden", message="the read-only token cannot make changes; use the admin token")
        return role


def role_of(request: Request) -> Role:
    """The caller's role as Auth recorded it; the least one when none was (an open path)."""
    role = request.scope.get("state", {}).get(ROLE_KEY, Role.READ)
    assert isinstance(role, Role)
    return role
