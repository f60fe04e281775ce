"""The autoscaler's arithmetic (HPA's rules) as tables: no Redis, no Docker, no clock."""

from __future__ import annotations

import pytest

from scheduler.replica_calculator import Readiness, Replica, applied, decide, metric_replicas
from shared.config import ServiceSpec
from shared.records import AutoscaleState

M, X, U, IGN = Readiness.MEASURED, Readiness.MISSING, Readiness.UNREADY, Readiness.IGNORED


def cpu(*values: float, extra: tuple[Readiness, ...] = ()) -> list[Replica]:
    replicas = [Replica(f"s.{i}", M, cpu_percent=v) for i, v in enumerate(values, 1)]
    return replicas + [Replica(f"s.x{i}", r) for i, r in enumerate(extra)]


@pytest.mark.parametrize(
    ("current", "replicas", "target", "desired"),
    [
        # desired = ceil(current x utilisation / target)
        (1, cpu(100), 50, 2),
        (2, cpu(100, 100), 50, 4),
        (3, cpu(90, 90, 90), 30, 9),
        (4, cpu(10, 10, 10, 10), 50, 1),  # ceil(4 x 0.2) = 1
        (3, cpu(0, 0, 0), 50, 0),  # clamping to min_replicas happens in decide()
        # within 10% of the target: no change
        (2, cpu(54, 54), 50, 2),
        (2, cpu(46, 46), 50, 2),
        (2, cpu(56, 56), 50, 3),  # ratio 1.12: ceil(2.24) = 3
        # missing samples: 0% on a scale-up ...
        (3, cpu(100, 100, extra=(X,)), 50, 4),  # (100+100+0)/3 = 66.7 -> ratio 1.33 -> ceil(4) = 4
        # ... and 100% on a scale-down, so a replica we know nothing about never looks idle
        (3, cpu(10, 10, extra=(X,)), 50, 3),  # (10+10+100)/3 = 40 -> ratio 0.8 -> ceil(2.4) = 3
        (4, cpu(0, 0, 0, extra=(X,)), 50, 2),  # (0+0+0+100)/4 = 25 -> ratio 0.5 -> 2
        # a missing replica can cancel a scale-down altogether (the ratio flips)
        (2, cpu(40, extra=(X,)), 50, 2),  # (40+100)/2 = 70 -> ratio 1.4, the other way: no change
        # unready replicas: 0% on a scale-up, ignored on a scale-down
        (2, cpu(100, extra=(U,)), 50, 2),  # (100+0)/2 = 50: within tolerance once filled in
        (3, cpu(100, 100, extra=(U,)), 50, 4),  # (100+100+0)/3 = 66.7 -> ratio 1.33 -> ceil(4) = 4
        (3, cpu(10, 10, extra=(U,)), 50, 1),  # scale-down ignores it: ceil(0.2 x 2) = 1
        # failed replicas are left out
        (3, cpu(100, 100, extra=(IGN,)), 50, 4),
    ],
)
def test_metric_replicas_table(current: int, replicas: list[Replica], target: float, desired: int):
    assert metric_replicas(current, replicas, "cpu", target).desired == desired


def test_missing_samples_on_a_scale_up_count_as_zero():
    result = metric_replicas(3, cpu(100, 100, extra=(X,)), "cpu", 50)
    assert result.utilisation == 100  # the average is of the measured ones
    assert result.desired == 4  # but the filled-in ratio is 66.7 / 50: ceil(1.33 x 3)
    assert (result.measured, result.missing, result.unready) == (2, 1, 0)


def test_nothing_measured_gives_no_recommendation():
    result = metric_replicas(2, [Replica("s.1", X), Replica("s.2", U)], "cpu", 50)
    assert result.desired is None and result.utilisation is None


def spec(replicas: int, **policy) -> ServiceSpec:
    policy.setdefault("cooldown_seconds", 30)
    return ServiceSpec.model_validate(
        {"service_name": "s", "image": "busybox", "replicas": replicas, "scale_policy": policy}
    )


def run(s: ServiceSpec, replicas: list[Replica], state: AutoscaleState, now: float, version: int = 1):
    return decide(s, version, replicas, state, now)


@pytest.mark.parametrize(
    ("replicas", "policy", "usage", "desired"),
    [
        (1, {"max_replicas": 3, "target_cpu": 50.0}, cpu(100), 2),
        (1, {"max_replicas": 3, "target_cpu": 25.0}, cpu(100), 3),  # 4 clamped to max_replicas
        (3, {"max_replicas": 5, "target_cpu": 50.0}, cpu(52, 50, 49), 3),  # within tolerance
        (2, {"max_replicas": 4}, cpu(100, 100), 3),  # no target named: CPU at 80% -> ceil(2.5) = 3
        (2, {"max_replicas": 10, "target_cpu": 50.0}, cpu(100, 100), 4),  # max_replicas set
        (2, {"target_cpu": 50.0}, cpu(100, 100), 2),  # max_replicas absent: the declared replicas
    ],
)
def test_decide_scales_up_at_once(replicas: int, policy: dict, usage: list[Replica], desired: int):
    decision, state = run(spec(replicas, **policy), usage, AutoscaleState(), 100.0)
    assert decision.desired == desired
    assert decision.act is (desired != replicas)


def test_the_larger_of_cpu_and_memory_wins():
    usage = [
        Replica("s.1", M, cpu_percent=10, memory_percent=90),
        Replica("s.2", M, cpu_percent=10, memory_percent=90),
    ]
    decision, _ = run(spec(2, max_replicas=6, target_cpu=50.0, target_memory=30.0), usage, AutoscaleState(), 0.0)
    assert decision.desired == 6  # memory: ceil(2 x 3) = 6; cpu alone would say 1
    assert {r.metric: r.desired for r in decision.metrics} == {"cpu": 1, "memory": 6}


def test_memory_only_policy_ignores_cpu():
    usage = [Replica("s.1", M, cpu_percent=100, memory_percent=50)]
    decision, _ = run(spec(1, max_replicas=4, target_memory=50.0), usage, AutoscaleState(), 0.0)
    assert decision.desired == 1 and [r.metric for r in decision.metrics] == ["memory"]


def test_scale_down_waits_for_the_cooldown_window_and_clamps_to_min():
    s = spec(3, min_replicas=1, target_cpu=50.0)
    idle = cpu(0, 0, 0)
    # First sight of the service: its replica count is a recommendation for the next 30 s.
    decision, state = run(s, idle, AutoscaleState(), 1000.0)
    assert not decision.act and decision.desired == 3 and decision.recommendation == 1
    for now in (1010.0, 1020.0, 1030.0):
        decision, state = run(s, idle, state, now)
        assert not decision.act, now
    decision, state = run(s, idle, state, 1030.5)
    assert decision.act and decision.desired == 1 and decision.direction == "down"


def test_a_brief_dip_does_not_remove_replicas():
    s = spec(4, min_replicas=1, target_cpu=50.0)
    state = AutoscaleState(version=1)
    busy, dip = cpu(50, 50, 50, 50), cpu(5, 5, 5, 5)
    for now in range(0, 100, 5):
        decision, state = run(s, dip if now == 60 else busy, state, float(now))
        assert decision.desired == 4 and not decision.act
    # Once the busy recommendations are older than the cooldown, a lasting dip counts.
    for now in range(100, 135, 5):
        decision, state = run(s, dip, state, float(now))
    assert decision.act and decision.desired == 1


def test_scale_down_goes_to_the_highest_recommendation_of_the_window():
    s = spec(6, min_replicas=1, target_cpu=50.0)
    state = AutoscaleState(version=1, recommendations=[(-100.0, 6), (0.0, 5), (10.0, 4)])
    decision, state = run(s, cpu(*[25.0] * 6), state, 20.0)  # recommends 3
    assert decision.recommendation == 3
    assert decision.act and decision.desired == 5  # the highest of the last 30 s; (-100, 6) is older
    assert [n for _, n in state.recommendations] == [5, 4, 3]


def test_one_action_per_cooldown():
    s1 = spec(1, max_replicas=8, target_cpu=50.0)
    decision, state = run(s1, cpu(100), AutoscaleState(version=1), 0.0)
    assert decision.act and decision.desired == 2
    state = applied(state, decision, 2, 0.0)
    s2 = spec(2, max_replicas=8, target_cpu=50.0)
    decision, state = run(s2, cpu(100, 100), state, 10.0, version=2)
    assert decision.desired == 4 and not decision.act and "cooldown" in decision.reason
    decision, state = run(s2, cpu(100, 100), state, 30.5, version=2)
    assert decision.act and decision.desired == 4


def test_a_change_by_someone_else_restarts_the_window():
    s = spec(2, min_replicas=1, max_replicas=4, target_cpu=50.0)
    state = AutoscaleState(version=1, recommendations=[(0.0, 1)])
    decision, state = run(s, cpu(0, 0), state, 40.0, version=2)  # the user scaled to 2 (version 2)
    assert not decision.act and decision.desired == 2


def test_no_samples_keeps_the_count():
    s = spec(3, min_replicas=1, target_cpu=50.0)
    decision, state = run(s, [Replica("s.1", U), Replica("s.2", X)], AutoscaleState(version=1), 0.0)
    assert not decision.act and decision.recommendation is None and "no fresh samples" in decision.reason
    assert state.recommendations == []


def test_state_round_trips_through_json():
    s = spec(1, max_replicas=3, target_cpu=50.0)
    decision, state = run(s, cpu(100), AutoscaleState(), 5.0)
    state = applied(state, decision, 2, 5.0)
    again = AutoscaleState.model_validate_json(state.model_dump_json())
    assert again == state
    assert again.last_action is not None and again.last_action["to"] == 2
    assert again.last_decision is not None and again.last_decision["metrics"]["cpu"]["utilisation"] == 100
