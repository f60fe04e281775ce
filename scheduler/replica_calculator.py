"""Autoscaling arithmetic, as Kubernetes' Horizontal Pod Autoscaler does it. Pure: no Redis, no clock.

Per metric (CPU, memory; each when its target is set), `metric_replicas` follows HPA's replica
calculator (pkg/controller/podautoscaler/replica_calculator.go):

- utilisation is the average over the replicas *measured* (running, with a fresh sample), as a
  percent of what the service reserves per container; ratio = utilisation / target;
- within the tolerance (10%) of 1 nothing changes; otherwise desired = ceil(ratio x measured);
- replicas that are running but have no fresh sample (*missing*) count, as in HPA, as 0% of the
  request when the measured ones ask to scale up and as 100% when they ask to scale down;
  replicas not running yet (*unready*: pending, assigned, starting) count as 0% on a scale-up and
  are left out on a scale-down; failed or stopped replicas are left out (HPA ignores failed pods).
  With those filled in the ratio is computed again, and if it now lies within the tolerance or
  points the other way, nothing changes. So a replica we know nothing about never looks idle.
- no measured replica at all: no recommendation (HPA reports an error and keeps the count).

`decide` takes the largest recommendation over the metrics, clamps it to [min_replicas,
max_replicas], and stabilises it: a scale-down goes only to the highest recommendation seen in the
last cooldown_seconds (a brief dip removes nothing; a change of the service by anyone else counts
as a recommendation of its replica count then), and at most one scaling action is taken per
cooldown_seconds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from shared.config import ServiceSpec
from shared.records import AutoscaleState

TOLERANCE = 0.1


class Readiness(StrEnum):
    MEASURED = "measured"  # running, with a fresh sample of its current container
    MISSING = "missing"  # running, but no fresh sample
    UNREADY = "unready"  # not running yet (pending, assigned, starting)
    IGNORED = "ignored"  # failed or stopped


@dataclass(frozen=True)
class Replica:
    task: str
    readiness: Readiness
    cpu_percent: float | None = None
    memory_percent: float | None = None

    def value(self, metric: str) -> float | None:
        return self.cpu_percent if metric == "cpu" else self.memory_percent


@dataclass(frozen=True)
class MetricResult:
    metric: str  # cpu | memory
    target: float
    utilisation: float | None  # average over the measured replicas; None: nothing measured
    desired: int | None  # None: no recommendation (nothing measured)
    measured: int = 0
    missing: int = 0
    unready: int = 0

    def as_dict(self) -> dict[str, Any]:
        ratio = None if self.utilisation is None else round(self.utilisation / self.target, 3)
        return {
            "target": self.target,
            "utilisation": None if self.utilisation is None else round(self.utilisation, 2),
            "ratio": ratio,
            "desired": self.desired,
            "measured": self.measured,
            "missing": self.missing,
            "unready": self.unready,
        }


def metric_replicas(
    current: int, replicas: Sequence[Replica], metric: str, target: float, tolerance: float = TOLERANCE
) -> MetricResult:
    """HPA's GetResourceReplicas for one metric; `desired` is `current` when nothing should change."""
    measured = [r.value(metric) for r in replicas if r.readiness is Readiness.MEASURED]
    values = [value for value in measured if value is not None]
    missing = sum(1 for r in replicas if r.readiness is Readiness.MISSING)
    missing += len(measured) - len(values)  # measured, but this metric has no value (no limit set)
    unready = sum(1 for r in replicas if r.readiness is Readiness.UNREADY)
    counts = {"measured": len(values), "missing": missing, "unready": unready}
    if not values:
        return MetricResult(metric, target, None, None, **counts)
    utilisation = sum(values) / len(values)
    ratio = utilisation / target
    scale_up_with_unready = unready > 0 and ratio > 1.0
    if not scale_up_with_unready and missing == 0:
        if abs(1.0 - ratio) <= tolerance:
            return MetricResult(metric, target, utilisation, current, **counts)
        return MetricResult(metric, target, utilisation, math.ceil(ratio * len(values)), **counts)

    filled = list(values)
    if missing:
        if ratio < 1.0:
            filled += [max(100.0, target)] * missing  # scale-down: assume they use all they reserve
        elif ratio > 1.0:
            filled += [0.0] * missing  # scale-up: assume they use nothing
    if scale_up_with_unready:
        filled += [0.0] * unready
    new_ratio = sum(filled) / len(filled) / target
    if abs(1.0 - new_ratio) <= tolerance or (ratio < 1.0 < new_ratio) or (ratio > 1.0 > new_ratio):
        return MetricResult(metric, target, utilisation, current, **counts)
    desired = math.ceil(new_ratio * len(filled))
    if (new_ratio < 1.0 and desired > current) or (new_ratio > 1.0 and desired < current):
        desired = current
    return MetricResult(metric, target, utilisation, desired, **counts)


@dataclass
class Decision:
    current: int
    desired: int  # what the autoscaler wants now, after clamping and stabilisation
    recommendation: int | None  # the raw (clamped) recommendation of this pass; None: no data
    act: bool  # desired differs from current and the cooldown allows it
    reason: str
    metrics: list[MetricResult] = field(default_factory=list)

    @property
    def direction(self) -> str:
        return "up" if self.desired > self.current else "down" if self.desired < self.current else "none"

    def as_dict(self, now: float) -> dict[str, Any]:
        return {
            "time": now,
            "current_replicas": self.current,
            "desired_replicas": self.desired,
            "recommendation": self.recommendation,
            "scale": self.act,
            "direction": self.direction,
            "reason": self.reason,
            "metrics": {result.metric: result.as_dict() for result in self.metrics},
        }


def targets(spec: ServiceSpec) -> dict[str, float]:
    policy = spec.scale_policy
    if policy is None:
        return {}
    chosen: dict[str, float] = {}
    cpu = policy.effective_target_cpu()
    if cpu is not None:
        chosen["cpu"] = cpu
    if policy.target_memory is not None:
        chosen["memory"] = policy.target_memory
    return chosen


def decide(
    spec: ServiceSpec,
    version: int,
    replicas: Sequence[Replica],
    state: AutoscaleState,
    now: float,
    tolerance: float = TOLERANCE,
) -> tuple[Decision, AutoscaleState]:
    """One evaluation of a service with a scale_policy; returns the decision and the new state.

    `version` is the service record's version: when it differs from the state's, someone else
    changed the service, and its replica count enters the window as a recommendation, so the
    autoscaler does not scale it down before a cooldown has passed.
    """
    policy = spec.scale_policy
    assert policy is not None, "decide() needs a service with a scale_policy"
    current = spec.count
    low, high = policy.min_replicas, spec.max_replicas()
    cooldown = float(policy.cooldown_seconds)

    window = [(t, n) for t, n in state.recommendations if t >= now - cooldown]
    if state.version != version:
        window.append((now, current))

    results = [
        metric_replicas(current, replicas, metric, target, tolerance) for metric, target in targets(spec).items()
    ]
    proposals = [result.desired for result in results if result.desired is not None]
    recommendation: int | None = None
    if proposals:
        recommendation = min(max(max(proposals), low), high)
        window.append((now, recommendation))

    if recommendation is None:
        desired, reason = min(max(current, low), high), "no fresh samples of running replicas: keep the count"
    elif recommendation > current:
        desired, reason = recommendation, _why(results, "above")
    elif recommendation < current:
        # Scale down only as far as the highest recommendation of the cooldown window.
        desired = min(current, max(n for _, n in window))
        reason = _why(results, "below") if desired < current else (
            f"below target, but a recommendation of {current} or more was seen in the last {int(cooldown)}s"
        )
    else:
        raw = max(proposals)
        desired = current
        reason = "within tolerance of the target" if raw == current else (
            f"recommendation {raw} clamped to [min_replicas {low}, max_replicas {high}]"
        )
    # A count outside the bounds (the policy changed) is brought within them.
    desired = min(max(desired, low), high)

    act = desired != current
    if act and state.last_scaled_at is not None and now - state.last_scaled_at < cooldown:
        act = False
        reason = f"{reason}; in cooldown until {state.last_scaled_at + cooldown:.0f} (one action per {int(cooldown)}s)"

    decision = Decision(current, desired, recommendation, act, reason, results)
    new_state = state.model_copy(
        update={"recommendations": window, "version": version, "last_decision": decision.as_dict(now)}
    )
    return decision, new_state


def _why(results: list[MetricResult], side: str) -> str:
    parts = [
        f"{r.metric} {r.utilisation:.1f}% vs target {r.target:g}%"
        for r in results
        if r.utilisation is not None
    ]
    return f"utilisation {side} target: " + ", ".join(parts)


def applied(state: AutoscaleState, decision: Decision, version: int, now: float) -> AutoscaleState:
    """The state after the decision's new replica count was written as service version `version`."""
    action = {**decision.as_dict(now), "from": decision.current, "to": decision.desired}
    return state.model_copy(update={"last_scaled_at": now, "version": version, "last_action": action})
