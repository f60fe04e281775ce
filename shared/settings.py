"""Process settings from the environment, read once, so every command finds Redis and its cluster alike.

The Redis password comes from the URL (`redis://:PASSWORD@host:port/0`) or from the file named by
GORCHESTER_REDIS_PASSWORD_FILE (its first line; it wins over a password in the URL); either way
`redis_url` carries it, so every connection (ours and RQ's) is made from that one URL.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, quote, urlsplit, urlunsplit

from shared import defaults
from shared.hostaccess import NETWORK_SETTING, PATHS_SETTING, HostAccess, normal_path
from shared.redis_url import SENTINEL_SCHEMES, RedisUrlError, sentinel_target

PASSWORD_FILE_SETTING = "GORCHESTER_REDIS_PASSWORD_FILE"


class SettingError(SystemExit):
    """A setting that cannot be used: the process refuses to start (rather than run unprotected or
    misconfigured), and the message names the setting."""


def _float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw in (None, ""):
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise SettingError(f"{name}: must be a number, got {raw!r}") from exc


def _flag(name: str) -> bool:
    raw = (os.environ.get(name) or "false").strip().lower()
    if raw not in ("true", "1", "yes", "false", "0", "no"):
        raise SettingError(f"{name}: must be true or false, got {raw!r}")
    return raw in ("true", "1", "yes")


def _choice(name: str, choices: tuple[str, ...], default: str, env: Mapping[str, str]) -> str:
    """One of `choices` (any case), the whole value: `jsonl` or `info,debug` is refused, not guessed."""
    raw = (env.get(name) or default).strip().lower()
    if raw not in choices:
        raise SettingError(f"{name}: must be one of {', '.join(choices)}, got {raw!r}")
    return raw


def _paths(name: str) -> tuple[str, ...]:
    """Comma-separated absolute host paths, normalised (`/srv/data/` is /srv/data)."""
    paths = []
    for item in (os.environ.get(name) or "").split(","):
        item = item.strip()
        if not item:
            continue
        if not item.startswith("/") or ".." in item.split("/"):
            raise SettingError(f"{name}: {item!r} must be an absolute path without '..'")
        paths.append(normal_path(item))
    return tuple(paths)


def _cidr(name: str, default: str) -> str:
    """An IPv4 network of at least a /24 (a /24 of it per engine), e.g. 10.244.0.0/16."""
    raw = (os.environ.get(name) or default).strip()
    try:
        network = ipaddress.IPv4Network(raw)
    except ValueError:
        raise SettingError(f"{name}: {raw!r} must be an IPv4 network such as 10.244.0.0/16") from None
    if network.prefixlen > 24:
        raise SettingError(f"{name}: {raw!r} must be a /24 or larger (each engine takes a /24 of it)")
    return str(network)


def read_secret(name: str, path: str) -> str:
    """The first line of the file a *_FILE setting names; exits naming the setting when it cannot."""
    try:
        text = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise SettingError(f"{name}: cannot read {path}: {reason}") from None
    secret = text.splitlines()[0].strip() if text else ""
    if not secret:
        raise SettingError(f"{name}: {path} is empty")
    return secret


def with_password(url: str, password: str) -> str:
    """`url` with `password` in place of any it has (a user name is kept)."""
    parts = urlsplit(url)
    userinfo, _, host = parts.netloc.rpartition("@")
    user = userinfo.partition(":")[0]
    return urlunsplit(parts._replace(netloc=f"{user}:{quote(password, safe='')}@{host}"))


def without_password(url: str) -> str:
    """`url` fit to print: a password in it is shown as `***`."""
    parts = urlsplit(url)
    userinfo, _, host = parts.netloc.rpartition("@")
    if ":" not in userinfo:
        return url
    return urlunsplit(parts._replace(netloc=f"{userinfo.partition(':')[0]}:***@{host}"))


def redis_url_from_env(env: Mapping[str, str] | None = None) -> str:
    """GORCHESTER_REDIS_URL (or the default) with the password of GORCHESTER_REDIS_PASSWORD_FILE when set."""
    env = os.environ if env is None else env
    url = env.get("GORCHESTER_REDIS_URL") or defaults.DEFAULT_REDIS_URL
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss", "unix", *SENTINEL_SCHEMES):
        raise SettingError(
            "GORCHESTER_REDIS_URL: must start redis://, rediss:// (TLS), redis+sentinel://, rediss+sentinel:// "
            f"or unix://, got {parts.scheme!r}"
        )
    try:
        sentinel_target(url)
    except RedisUrlError as exc:
        raise SettingError(f"GORCHESTER_REDIS_URL: {exc}") from None
    tls_options = sorted({name for name, _ in parse_qsl(parts.query) if name.startswith("ssl")})
    if tls_options and not parts.scheme.startswith("rediss"):
        raise SettingError(f"GORCHESTER_REDIS_URL: {', '.join(tls_options)} are TLS options: use rediss://")
    password_file = env.get(PASSWORD_FILE_SETTING)
    return with_password(url, read_secret(PASSWORD_FILE_SETTING, password_file)) if password_file else url


LOG_FORMATS = ("text", "json")
LOG_LEVELS = ("debug", "info", "warning", "error")


@dataclass(frozen=True)
class LogSettings:
    """How a process writes its own log lines (shared/process_logs.py); read before anything else, so a
    process logs its start (and a bad setting of its own) in the format asked for."""

    format: str = "text"  # GORCHESTER_LOG_FORMAT: text for people, json (one object a line) for machines
    level: str = "info"  # GORCHESTER_LOG_LEVEL: debug adds RQ's lines about each job, among others

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> LogSettings:
        env = os.environ if env is None else env
        return cls(
            format=_choice("GORCHESTER_LOG_FORMAT", LOG_FORMATS, "text", env),
            level=_choice("GORCHESTER_LOG_LEVEL", LOG_LEVELS, "info", env),
        )


@dataclass(frozen=True)
class Settings:
    redis_url: str = field(default=defaults.DEFAULT_REDIS_URL, repr=False)  # may hold the password
    cluster: str = defaults.DEFAULT_CLUSTER_NAME
    heartbeat_interval: float = defaults.DEFAULT_HEARTBEAT_INTERVAL
    heartbeat_misses: float = defaults.DEFAULT_HEARTBEAT_MISSES
    reconcile_interval: float = defaults.DEFAULT_RECONCILE_INTERVAL
    assigned_timeout: float = defaults.DEFAULT_ASSIGNED_TIMEOUT
    update_deadline: float = defaults.DEFAULT_UPDATE_DEADLINE
    restart_backoff_base: float = defaults.DEFAULT_RESTART_BACKOFF_BASE
    restart_backoff_max: float = defaults.DEFAULT_RESTART_BACKOFF_MAX
    restart_reset_after: float = defaults.DEFAULT_RESTART_RESET_AFTER
    leader_lease: float = defaults.DEFAULT_LEADER_LEASE
    metrics_interval: float = defaults.DEFAULT_METRICS_INTERVAL
    host_access: HostAccess = HostAccess()  # shared/hostaccess.py: nothing of the host unless allowed
    pod_cidr: str = defaults.DEFAULT_POD_CIDR  # the cluster's container addresses (shared/podnet.py)

    @property
    def replicated(self) -> bool:
        """Whether Redis is a master with replicas that sentinels fail over (a redis+sentinel:// URL)."""
        return sentinel_target(self.redis_url) is not None

    @classmethod
    def from_env(cls) -> Settings:
        env = os.environ
        return cls(
            redis_url=redis_url_from_env(),
            cluster=env.get("GORCHESTER_CLUSTER") or defaults.DEFAULT_CLUSTER_NAME,
            heartbeat_interval=_float("GORCHESTER_HEARTBEAT_INTERVAL", defaults.DEFAULT_HEARTBEAT_INTERVAL),
            heartbeat_misses=_float("GORCHESTER_HEARTBEAT_MISSES", defaults.DEFAULT_HEARTBEAT_MISSES),
            reconcile_interval=_float("GORCHESTER_RECONCILE_INTERVAL", defaults.DEFAULT_RECONCILE_INTERVAL),
            assigned_timeout=_float("GORCHESTER_ASSIGNED_TIMEOUT", defaults.DEFAULT_ASSIGNED_TIMEOUT),
            update_deadline=_float("GORCHESTER_UPDATE_DEADLINE", defaults.DEFAULT_UPDATE_DEADLINE),
            restart_backoff_base=_float("GORCHESTER_RESTART_BACKOFF_BASE", defaults.DEFAULT_RESTART_BACKOFF_BASE),
            restart_backoff_max=_float("GORCHESTER_RESTART_BACKOFF_MAX", defaults.DEFAULT_RESTART_BACKOFF_MAX),
            restart_reset_after=_float("GORCHESTER_RESTART_RESET_AFTER", defaults.DEFAULT_RESTART_RESET_AFTER),
            leader_lease=_float("GORCHESTER_LEADER_LEASE", defaults.DEFAULT_LEADER_LEASE),
            metrics_interval=_float("GORCHESTER_METRICS_INTERVAL", defaults.DEFAULT_METRICS_INTERVAL),
            host_access=HostAccess(allowed_paths=_paths(PATHS_SETTING), host_network=_flag(NETWORK_SETTING)),
            pod_cidr=_cidr("GORCHESTER_POD_CIDR", defaults.DEFAULT_POD_CIDR),
        )
