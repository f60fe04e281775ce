"""Health from consecutive check results, and the view of it (pure)."""

from __future__ import annotations

import pytest

from shared.config import HealthCheck
from shared.records import Health, TaskRecord, TaskState
from worker.health import inside_argv
from worker.health_state import HealthState, observe, replay

P, F = True, False


@pytest.mark.parametrize(
    ("results", "retries", "health"),
    [
        ([], 3, Health.STARTING),
        ([F, F], 3, Health.STARTING),  # fewer than retries failures: still starting
        ([F, F, F], 3, Health.UNHEALTHY),  # never passed, retries failures in a row
        ([P], 3, Health.HEALTHY),
        ([F, F, P], 3, Health.HEALTHY),
        ([P, F, F], 3, Health.HEALTHY),  # a failure or two keep it healthy
        ([P, F, F, F], 3, Health.UNHEALTHY),
        ([P, F, F, P, F, F], 3, Health.HEALTHY),  # a pass resets the count
        ([F], 0, Health.UNHEALTHY),  # retries 0: the first failure
        ([F], 1, Health.UNHEALTHY),
        ([P, F, P], 1, Health.UNHEALTHY),  # unhealthy is final: the replica is replaced
    ],
)
def test_health_follows_consecutive_results(results: list[bool], retries: int, health: Health) -> None:
    assert replay(results, retries) is health


def test_observe_keeps_the_output_and_counts_failures() -> None:
    state = observe(HealthState(), False, "GET /health: HTTP 500", 3)
    assert state == HealthState(Health.STARTING, 1, "GET /health: HTTP 500")
    assert observe(state, True, "GET /health: HTTP 200", 3) == HealthState(Health.HEALTHY, 0, "GET /health: HTTP 200")


def test_a_task_is_ready_when_running_and_healthy_or_unchecked() -> None:
    def task(state: TaskState, health: Health) -> TaskRecord:
        return TaskRecord(id="web.1", service="web", slot=1, state=state, health=health)

    assert task(TaskState.RUNNING, Health.NONE).ready()
    assert task(TaskState.RUNNING, Health.HEALTHY).ready()
    assert not task(TaskState.RUNNING, Health.STARTING).ready()
    assert not task(TaskState.FAILED, Health.UNHEALTHY).ready()
    assert not task(TaskState.ASSIGNED, Health.NONE).ready()


def test_checks_of_an_unreachable_container_run_inside_it() -> None:
    http = HealthCheck(http_path="/health", port=80, timeout=2)
    assert inside_argv(http, 2) == ["wget", "-q", "-O", "/dev/null", "http://127.0.0.1:80/health"]
    tcp = HealthCheck(port=5432)
    assert inside_argv(tcp, 5) == ["sh", "-c", "nc -w 5 127.0.0.1 5432 </dev/null"]
