"""Who may call the API from a browser: cross-site requests and DNS rebinding are refused (403).

A web page open in a browser on the API's machine can send requests to a loopback API; tokens stop
it when they are configured (the page cannot know them), the checks here stop it when they are not:

- `Origin`, when present, must be the API's own origin (scheme://Host) or one the operator lists
  in GORCHESTER_API_ALLOWED_ORIGINS (comma separated, e.g. `https://ops.example.com`).
- `Sec-Fetch-Site: cross-site` is refused, except a plain navigation (a link to the dashboard
  or an API URL followed in a tab: the page that linked it cannot read the answer).
- With no token configured (loopback-only mode), `Host` must name loopback (localhost,
  127.0.0.0/8, [::1]), the address the server listens on, or a host the operator lists in
  GORCHESTER_API_ALLOWED_HOSTS: a rebound name (evil.example resolving to 127.0.0.1) is refused.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass

from starlette.datastructures import Headers
from starlette.types import Scope

DEFAULT_PORTS = {"http": "80", "https": "443"}


def _listed(raw: str | None) -> frozenset[str]:
    return frozenset(item.strip().lower().rstrip("/") for item in (raw or "").split(",") if item.strip())


@dataclass(frozen=True)
class OriginPolicy:
    origins: frozenset[str] = frozenset()  # extra origins allowed, as scheme://host[:port]
    hosts: frozenset[str] = frozenset()  # extra Host names allowed in loopback-only mode

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> OriginPolicy:
        env = os.environ if env is None else env
        return cls(
            origins=frozenset(normal_origin(item) for item in _listed(env.get("GORCHESTER_API_ALLOWED_ORIGINS"))),
            hosts=frozenset(host_name(item) for item in _listed(env.get("GORCHESTER_API_ALLOWED_HOSTS"))),
        )

    def refusal(self, scope: Scope, loopback_only: bool) -> str | None:
        """Why this request is refused (naming the header), or None."""
        headers = Headers(scope=scope)
        host = headers.get("host", "")
        origin = headers.get("origin")
        if origin is not None:
            own = normal_origin(f"{scope.get('scheme', 'http')}://{host}")
            if normal_origin(origin) not in {own, *self.origins}:
                return (
                    f"Origin: {_shown(origin)} is not this API's origin ({own}); a page of another site may not "
                    "call it (an operator can allow an origin with GORCHESTER_API_ALLOWED_ORIGINS)"
                )
        if headers.get("sec-fetch-site", "").lower() == "cross-site" and not _navigation(scope, headers):
            return "Sec-Fetch-Site: cross-site requests are refused; call the API from its own origin"
        if loopback_only and not self._host_allowed(host, scope):
            return (
                f"Host: {_shown(host)} is neither loopback nor this server's address; with no token configured "
                "the API answers only those (an operator can allow a name with GORCHESTER_API_ALLOWED_HOSTS)"
            )
        return None

    def _host_allowed(self, host: str, scope: Scope) -> bool:
        name = host_name(host)
        server = scope.get("server")
        return is_loopback_name(name) or (server is not None and name == host_name(str(server[0]))) or (
            name in self.hosts
        )


def host_name(host: str) -> str:
    """The name or address in a Host header (or an allow-list entry), without the port or IPv6 brackets."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:].partition("]")[0]
    if host.count(":") == 1:
        return host.partition(":")[0]
    return host  # a bare IPv6 address (an allow-list entry or a server address) or a name


def is_loopback_name(name: str) -> bool:
    return name == "localhost" or is_loopback_address(name)


def is_loopback_address(text: str) -> bool:
    try:
        return ipaddress.ip_address(text).is_loopback
    except ValueError:
        return False


def normal_origin(origin: str) -> str:
    """scheme://host[:port], lower case, without a default port, for comparing."""
    text = origin.strip().lower().rstrip("/")
    scheme, sep, authority = text.partition("://")
    default = DEFAULT_PORTS.get(scheme)
    if sep and default and authority.endswith(f":{default}"):
        authority = authority[: -len(default) - 1]
    return f"{scheme}://{authority}" if sep else text


def _navigation(scope: Scope, headers: Headers) -> bool:
    """A user following a link: a GET for a document, which the linking page cannot read."""
    return (
        scope["method"] == "GET"
        and headers.get("sec-fetch-mode", "").lower() == "navigate"
        and headers.get("sec-fetch-dest", "document").lower() in ("document", "")
    )


def _shown(value: str) -> str:
    text = value if len(value) <= 100 else value[:100] + "..."
    return repr(text) if not text.isprintable() else text
