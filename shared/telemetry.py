"""Usage samples and process telemetry: what they are (their Redis side: shared/storage/telemetry.py).

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

from pydantic import BaseModel

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


def field_name(name: str, suffix: str, labels: dict[str, str]) -> str:
    return json.dumps([name, suffix, dict(sorted(labels.items()))], separators=(",", ":"))


def parse_field(field: str) -> tuple[str, str, dict[str, str]]:
    name, suffix, labels = json.loads(field)
    return name, suffix, labels
