"""Process settings from the environment, read once, so every command finds Redis and its cluster alike."""

from __future__ import annotations

import os
from dataclasses import dataclass

from shared import defaults


def _float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw in (None, ""):
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise SystemExit(f"{name}: must be a number, got {raw!r}") from exc


@dataclass(frozen=True)
class Settings:
    redis_url: str = defaults.DEFAULT_REDIS_URL
    cluster: str = defaults.DEFAULT_CLUSTER_NAME
    heartbeat_interval: float = defaults.DEFAULT_HEARTBEAT_INTERVAL
    heartbeat_misses: float = defaults.DEFAULT_HEARTBEAT_MISSES
    reconcile_interval: float = defaults.DEFAULT_RECONCILE_INTERVAL
    assigned_timeout: float = defaults.DEFAULT_ASSIGNED_TIMEOUT
    restart_backoff_base: float = defaults.DEFAULT_RESTART_BACKOFF_BASE
    restart_backoff_max: float = defaults.DEFAULT_RESTART_BACKOFF_MAX
    restart_reset_after: float = defaults.DEFAULT_RESTART_RESET_AFTER
    leader_lease: float = defaults.DEFAULT_LEADER_LEASE
    metrics_interval: float = defaults.DEFAULT_METRICS_INTERVAL

    @classmethod
    def from_env(cls) -> Settings:
        env = os.environ
        return cls(
            redis_url=env.get("GORCHESTER_REDIS_URL") or defaults.DEFAULT_REDIS_URL,
            cluster=env.get("GORCHESTER_CLUSTER") or defaults.DEFAULT_CLUSTER_NAME,
            heartbeat_interval=_float("GORCHESTER_HEARTBEAT_INTERVAL", defaults.DEFAULT_HEARTBEAT_INTERVAL),
            heartbeat_misses=_float("GORCHESTER_HEARTBEAT_MISSES", defaults.DEFAULT_HEARTBEAT_MISSES),
            reconcile_interval=_float("GORCHESTER_RECONCILE_INTERVAL", defaults.DEFAULT_RECONCILE_INTERVAL),
            assigned_timeout=_float("GORCHESTER_ASSIGNED_TIMEOUT", defaults.DEFAULT_ASSIGNED_TIMEOUT),
            restart_backoff_base=_float("GORCHESTER_RESTART_BACKOFF_BASE", defaults.DEFAULT_RESTART_BACKOFF_BASE),
            restart_backoff_max=_float("GORCHESTER_RESTART_BACKOFF_MAX", defaults.DEFAULT_RESTART_BACKOFF_MAX),
            restart_reset_after=_float("GORCHESTER_RESTART_RESET_AFTER", defaults.DEFAULT_RESTART_RESET_AFTER),
            leader_lease=_float("GORCHESTER_LEADER_LEASE", defaults.DEFAULT_LEADER_LEASE),
            metrics_interval=_float("GORCHESTER_METRICS_INTERVAL", defaults.DEFAULT_METRICS_INTERVAL),
        )
