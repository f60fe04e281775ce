"""The scheduler's telemetry arithmetic, against a recorder of the hash increments it would send."""

from __future__ import annotations

from collections import defaultdict
from types import SimpleNamespace
from typing import Any

from shared.keys import Keys
from shared.storage.telemetry import ReconcileTelemetry, observe
from shared.telemetry import LATENCY_BUCKETS, parse_field

KEYS = Keys("c")


class Recorder:
    """Adds up HINCRBY/HINCRBYFLOAT as Redis would, and counts the commands sent."""

    def __init__(self) -> None:
        self.hash: dict[str, float] = defaultdict(float)
        self.commands = 0

    def hincrby(self, key: str, field: str, amount: int) -> None:
        self.hash[field] += amount
        self.commands += 1

    hincrbyfloat = hincrby

    def pipeline(self, transaction: bool = True) -> Recorder:
        return self

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *exc: Any) -> None:
        pass

    def execute(self) -> None:
        pass

    def values(self, name: str, suffix: str) -> dict[str, float]:
        found = {}
        for field, value in self.hash.items():
            metric, kind, labels = parse_field(field)
            if (metric, kind) == (name, suffix):
                found[labels.get("le", labels.get("type", ""))] = value
        return found


def test_observe_adds_a_batch_up_as_one_observation_each_would():
    values = [0.05, 0.3, 0.3, 7.0, 500.0]
    batch, single = Recorder(), Recorder()
    observe(batch, KEYS, "gorchester_schedule_to_running_seconds", values)
    for value in values:
        observe(single, KEYS, "gorchester_schedule_to_running_seconds", [value])
    assert batch.hash == single.hash
    buckets = batch.values("gorchester_schedule_to_running_seconds", "bucket")
    assert buckets["0.1"] == 1 and buckets["0.5"] == 3 and buckets["10.0"] == 4 and buckets["+Inf"] == 5
    assert batch.values("gorchester_schedule_to_running_seconds", "count") == {"": 5}
    assert batch.commands <= len(LATENCY_BUCKETS) + 3  # one increment per bucket, not per value


def task(name: str, gen: int = 1, state: str = "running") -> SimpleNamespace:
    return SimpleNamespace(id=name, gen=gen, state=state, assigned_at=100.0, started_at=101.5)


def test_a_pass_records_each_start_once_and_counts_events_by_kind():
    recorder = Recorder()
    telemetry = ReconcileTelemetry(recorder, KEYS, since=50.0)
    events = [SimpleNamespace(kind="task_scheduled", data={}) for _ in range(3)]
    events.append(SimpleNamespace(kind="task_restarted", data={"service": "web"}))
    tasks = [task(f"web.{i}") for i in range(1, 1001)] + [task("web.1001", state="starting")]
    telemetry.record(0.02, tasks, events)
    telemetry.record(0.03, tasks, [])  # the same starts: not observed again
    assert recorder.values("gorchester_schedule_to_running_seconds", "count") == {"": 1000}
    assert recorder.values("gorchester_schedule_to_running_seconds", "sum") == {"": 1500.0}
    assert recorder.values("gorchester_reconcile_duration_seconds", "count") == {"": 2}
    assert recorder.values("gorchester_scheduler_events", "total") == {"task_scheduled": 3, "task_restarted": 1}
    assert recorder.commands < 60  # a thousand starts are a handful of increments
