"""Usage samples and process telemetry as they are kept in Redis; shared by agents, scheduler and API.

Samples: each node agent writes, for every running task it holds, a `TaskSample` to a capped list
per task (`Keys.task_metrics`, newest first, with an expiry), so the latest value and a short
history are one LINDEX / LRANGE away, and a task that is gone leaves nothing behind for long.

Telemetry: counters and histograms measured in the scheduler and the agents are kept in one Redis
hash (`Keys.telemetry`), so the API exposes the whole cluster's numbers on one `GET /metrics`,
whichever process measured them, and they survive a process restart (a lost Redis resets them,
which Prometheus reads as a counter reset).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Collection, Iterable, Sequence
from typing import Any

from pydantic import BaseModel

from shared.event_kinds import EventKind
from shared.keys import Keys

HISTORY = 12  # samples kept per task (a minute at the default 5 s interval)
FRESH_INTERVALS = 3.0  # a sample older than this many intervals is stale


class TaskSample(BaseModel):
    """One measurement of one replica's container: shares of what its service reserves for it."""

    task: str
    service: str
    node: str
    gen: int
    container_id: str
    sampled_at: float
    cpu_millicores: float  # cores in use x 1000, averaged since the previous sample
    cpu_percent: float | None  # of the container's cpu_millicores; None when it has no CPU limit
    memory_bytes: int  # working set: usage less inactive page cache (what the OOM killer counts)
    memory_percent: float | None  # of the container's memory_bytes; None without a memory limit
    source: str = "cgroup"  # cgroup | engine


def sample_ttl(interval: float) -> int:
    """Keep a task's history a little longer than it takes to fill, then let it expire."""
    return max(60, math.ceil(interval * HISTORY * 2))


def is_fresh(sample: TaskSample, now: float, interval: float) -> bool:
    return now - sample.sampled_at <= max(interval * FRESH_INTERVALS, interval + 2.0)


def write_samples(pipe: Any, keys: Keys, samples: Iterable[TaskSample], interval: float) -> None:
    """Queue the writes of `samples` on a pipeline (the caller executes it)."""
    ttl = sample_ttl(interval)
    for sample in samples:
        key = keys.task_metrics(sample.task)
        pipe.lpush(key, sample.model_dump_json())
        pipe.ltrim(key, 0, HISTORY - 1)
        pipe.expire(key, ttl)


def latest_samples(client: Any, keys: Keys, task_ids: Sequence[str]) -> dict[str, TaskSample]:
    """The newest sample of each task that has one."""
    if not task_ids:
        return {}
    with client.pipeline(transaction=False) as pipe:
        for task_id in task_ids:
            pipe.lindex(keys.task_metrics(task_id), 0)
        raw = pipe.execute()
    return {task_id: TaskSample.model_validate_json(body) for task_id, body in zip(task_ids, raw, strict=True) if body}


def sample_history(client: Any, keys: Keys, task_id: str) -> list[TaskSample]:
    return [TaskSample.model_validate_json(body) for body in client.lrange(keys.task_metrics(task_id), 0, -1)]


# -- telemetry: counters and histograms in one Redis hash ------------------------------------------

RECONCILE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)

# Every metric recorded through Redis: name -> (kind, help, buckets for histograms).
TELEMETRY: dict[str, tuple[str, str, tuple[float, ...]]] = {
    "gorchester_reconcile_duration_seconds": (
        "histogram", "Time the leading scheduler spends in one reconcile pass (snapshot, plan, write, enqueue).",
        RECONCILE_BUCKETS,
    ),
    "gorchester_schedule_to_running_seconds": (
        "histogram", "Time from a task's assignment to a node (assigned_at) to its container running (started_at).",
        LATENCY_BUCKETS,
    ),
    "gorchester_task_restarts": ("counter", "Replicas restarted by the scheduler (restart policy), by service.", ()),
    "gorchester_scheduler_events": ("counter", "Events the scheduler emitted, by type.", ()),
    "gorchester_autoscaler_actions": ("counter", "Scaling actions the autoscaler applied, by service, direction.", ()),
    "gorchester_metrics_samples": ("counter", "Container usage samples written by node agents, by node, source.", ()),
    "gorchester_metrics_sample_errors": ("counter", "Container usage samples that failed or timed out, by node.", ()),
}


def _field(name: str, suffix: str, labels: dict[str, str]) -> str:
    return json.dumps([name, suffix, dict(sorted(labels.items()))], separators=(",", ":"))


def parse_field(field: str) -> tuple[str, str, dict[str, str]]:
    name, suffix, labels = json.loads(field)
    return name, suffix, labels


def count(pipe: Any, keys: Keys, name: str, amount: float = 1.0, **labels: str) -> None:
    """Queue a counter increment on a pipeline or client."""
    pipe.hincrbyfloat(keys.telemetry, _field(name, "total", labels), amount)


def observe(pipe: Any, keys: Keys, name: str, values: Collection[float], **labels: str) -> None:
    """Queue histogram observations: cumulative buckets, sum and count, as Prometheus keeps them.

    Added up here first, so a pass that sees 10,000 replicas start sends one increment per bucket,
    not one per bucket per replica.
    """
    kind, _, buckets = TELEMETRY[name]
    assert kind == "histogram", name
    if not values:
        return
    for bound in buckets:
        within = sum(1 for value in values if value <= bound)
        if within:
            pipe.hincrby(keys.telemetry, _field(name, "bucket", {**labels, "le": repr(float(bound))}), within)
    pipe.hincrby(keys.telemetry, _field(name, "bucket", {**labels, "le": "+Inf"}), len(values))
    pipe.hincrbyfloat(keys.telemetry, _field(name, "sum", labels), sum(values))
    pipe.hincrby(keys.telemetry, _field(name, "count", labels), len(values))


def read_telemetry(client: Any, keys: Keys) -> dict[str, list[tuple[str, dict[str, str], float]]]:
    """Everything recorded: metric name -> [(suffix, labels, value)]."""
    result: dict[str, list[tuple[str, dict[str, str], float]]] = {}
    for field, value in client.hgetall(keys.telemetry).items():
        try:
            name, suffix, labels = parse_field(field)
        except (ValueError, TypeError):
            continue
        result.setdefault(name, []).append((suffix, labels, float(value)))
    return result


class ReconcileTelemetry:
    """What the scheduler measures in its reconcile passes, recorded into the telemetry hash.

    Schedule-to-running latency is started_at - assigned_at of each (task, gen) the first time a
    pass sees it running, for tasks that started after this scheduler started (earlier ones were a
    previous leader's to count).
    """

    def __init__(self, client: Any, keys: Keys, since: float):
        self.client = client
        self.keys = keys
        self.since = since
        self.seen: set[tuple[str, int]] = set()

    def record(self, duration: float, tasks: Iterable[Any], events: Iterable[Any]) -> None:
        current: set[tuple[str, int]] = set()
        latencies = []
        for task in tasks:
            if task.state != "running" or not task.started_at or not task.assigned_at:
                continue
            key = (task.id, task.gen)
            current.add(key)
            if key not in self.seen and task.started_at >= self.since:
                latencies.append(max(task.started_at - task.assigned_at, 0.0))
        self.seen = current
        kinds = Counter(event.kind for event in events)
        restarts = Counter(
            str(event.data.get("service", "")) for event in events if event.kind == EventKind.TASK_RESTARTED
        )
        with self.client.pipeline(transaction=False) as pipe:
            observe(pipe, self.keys, "gorchester_reconcile_duration_seconds", [duration])
            observe(pipe, self.keys, "gorchester_schedule_to_running_seconds", latencies)
            for kind, amount in kinds.items():
                count(pipe, self.keys, "gorchester_scheduler_events", amount, type=kind)
            for service, amount in restarts.items():
                count(pipe, self.keys, "gorchester_task_restarts", amount, service=service)
            pipe.execute()
