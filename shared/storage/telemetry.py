"""Usage samples and telemetry in Redis (what they are: shared/telemetry.py): the storage package's
side, behind the role methods that read and write them."""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable, Sequence
from typing import Any

from shared.event_kinds import EventKind
from shared.keys import Keys
from shared.telemetry import HISTORY, TELEMETRY, TaskSample, field_name, parse_field, sample_ttl


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


def count(pipe: Any, keys: Keys, name: str, amount: float = 1.0, **labels: str) -> None:
    """Queue a counter increment on a pipeline or client."""
    pipe.hincrbyfloat(keys.telemetry, field_name(name, "total", labels), amount)


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
            pipe.hincrby(keys.telemetry, field_name(name, "bucket", {**labels, "le": repr(float(bound))}), within)
    pipe.hincrby(keys.telemetry, field_name(name, "bucket", {**labels, "le": "+Inf"}), len(values))
    pipe.hincrbyfloat(keys.telemetry, field_name(name, "sum", labels), sum(values))
    pipe.hincrby(keys.telemetry, field_name(name, "count", labels), len(values))


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
