"""Health of a replica from its consecutive check results. Pure: no threads, no Docker, no Redis.

A replica is `starting` until its first passing check, `healthy` after it, and `unhealthy` once
`retries` checks in a row have failed (`retries` 0 counts like 1: the first failure). A pass resets
the count of failures.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.records import Health


@dataclass(frozen=True)
class HealthState:
    health: Health = Health.STARTING
    failures: int = 0  # failed checks in a row
    output: str = ""  # what the last check said


def failure_threshold(retries: int) -> int:
    return max(retries, 1)


def observe(state: HealthState, ok: bool, output: str, retries: int) -> HealthState:
    """The state after one more check result."""
    if state.health is Health.UNHEALTHY:
        return state  # final: the replica is replaced, not revived
    if ok:
        return HealthState(Health.HEALTHY, 0, output)
    failures = state.failures + 1
    health = Health.UNHEALTHY if failures >= failure_threshold(retries) else state.health
    return HealthState(health, failures, output)


def replay(results: list[bool], retries: int, start: Health = Health.STARTING) -> Health:
    """The health after a sequence of results (for tests and reasoning)."""
    state = HealthState(start)
    for ok in results:
        state = observe(state, ok, "", retries)
    return state.health
