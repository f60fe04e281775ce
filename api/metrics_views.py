"""Usage and the orchestrator's own metrics: `GET /v1/services/{name}/metrics` and `GET /metrics`.

`GET /metrics` is Prometheus' text format (prometheus-client), in base units (seconds, bytes, CPU
cores). Gauges are read from Redis at scrape time (replicas and rollout state per service, tasks,
nodes: status, heartbeat age, capacity, allocation, usage, queue depth; the leading scheduler; this
build) and built by a pure function of what was read (`cluster_families`); counters and
histograms measured in the scheduler and the agents (reconcile duration, schedule-to-running
latency, restarts, scaling actions, samples) are kept by them in the Redis `telemetry` hash
(shared/telemetry.py) and exposed here, so one scrape of any API instance sees the whole cluster.
API request durations are this process's own (middleware), as each API instance serves its own
requests.
"""

from __future__ import annotations

import platform
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from pydantic import TypeAdapter
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Scope

from api.context import blocking, settings_of, store_of
from api.observed import ObservedRequests
from api.responses import AutoscaleAction, AutoscaleDecision, AutoscaleStatus, ReplicaUsage, ServiceUsage, stored
from api.views import iso, service_status
from shared import telemetry
from shared.fit import Allocation, allocations
from shared.records import AutoscaleState, NodeRecord, NodeStatus, ServiceRecord, TaskRecord, TaskState, UpdateState
from shared.storage import ApiStore
from shared.version import build_version

# -- per-service usage ---------------------------------------------------------------------------


def _mean(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 2) if values else None


def service_usage(store: ApiStore, name: str, interval: float, now: float) -> ServiceUsage:
    record = store.service(name)
    tasks = sorted(store.service_tasks([name]), key=lambda t: t.slot)
    samples = store.latest_samples([task.id for task in tasks])
    replicas: list[ReplicaUsage] = []
    fresh = []
    for task in tasks:
        sample = samples.get(task.id)
        current = sample is not None and sample.gen == task.gen and task.state is TaskState.RUNNING
        ok = current and sample is not None and telemetry.is_fresh(sample, now, interval)
        replicas.append(
            {
                "task": task.id,
                "node": task.node,
                "state": task.state,
                "cpu_percent": sample.cpu_percent if current and sample else None,
                "cpu_millicores": sample.cpu_millicores if current and sample else None,
                "memory_percent": sample.memory_percent if current and sample else None,
                "memory_bytes": sample.memory_bytes if current and sample else None,
                "sampled_at": iso(sample.sampled_at) if current and sample else None,
                "fresh": ok,
            }
        )
        if ok and sample is not None:
            fresh.append(sample)
    cpu = [s.cpu_percent for s in fresh if s.cpu_percent is not None]
    memory = [s.memory_percent for s in fresh if s.memory_percent is not None]
    return {
        "service": name,
        "replicas": replicas,
        "average": {
            "cpu_percent": _mean(cpu),
            "cpu_millicores": _mean([s.cpu_millicores for s in fresh]),
            "memory_percent": _mean(memory),
            "memory_bytes": int(sum(s.memory_bytes for s in fresh) / len(fresh)) if fresh else None,
            "replicas_sampled": len(fresh),
        },
        "sampled_at": iso(max(s.sampled_at for s in fresh)) if fresh else None,
        "interval_seconds": interval,
        "autoscale": autoscale_status(store, name, record.spec.count, record.spec.scale_policy is not None),
    }


T = TypeVar("T")
DECISION, ACTION = TypeAdapter(AutoscaleDecision), TypeAdapter(AutoscaleAction)


def autoscale_status(store: ApiStore, name: str, replicas: int, enabled: bool) -> AutoscaleStatus | None:
    """The autoscaler's view of a service: replicas now, what it wants, its last decision and action."""
    if not enabled:
        return None
    state = store.autoscale_states([name]).get(name, AutoscaleState())
    decision = state.last_decision or {}
    return {
        "current_replicas": replicas,
        "desired_replicas": decision.get("desired_replicas", replicas),
        # As the scheduler stored them (scheduler/replica_calculator.py), with their time in ISO 8601.
        "last_decision": _stored_entry(DECISION, state.last_decision),
        "last_scaled": _stored_entry(ACTION, state.last_action),
    }


def _stored_entry(adapter: TypeAdapter[T], entry: dict[str, Any] | None) -> T | None:
    return None if entry is None else stored(adapter, {**entry, "time": iso(entry.get("time"))})


def with_autoscale(store: ApiStore, view: Mapping[str, Any]) -> dict[str, Any]:
    """A service view (api/views.py) with its `autoscale` block; null for a service without a policy."""
    enabled = view.get("scale_policy") is not None
    return {**view, "autoscale": autoscale_status(store, view["service_name"], view.get("replicas") or 0, enabled)}


async def get_service_metrics(request: Request) -> JSONResponse:
    name = request.path_params["name"]
    store, interval = store_of(request), settings_of(request).metrics_interval
    return JSONResponse(await blocking(lambda: service_usage(store, name, interval, time.time())))


# -- Prometheus ----------------------------------------------------------------------------------

API_REGISTRY = CollectorRegistry(auto_describe=True)
REQUEST_DURATION = Histogram(
    "gorchester_api_request_duration_seconds",
    "Time the API took to answer, by method, route template and status code.",
    ["method", "route", "status"],
    registry=API_REGISTRY,
)


MILLICORES_PER_CORE = 1000


def cores(millicores: float) -> float:
    """CPU in cores, Prometheus' base unit (the records keep millicores)."""
    return millicores / MILLICORES_PER_CORE


def heartbeat_age(node: NodeRecord, now: float) -> float:
    """Seconds since the node's last heartbeat, by the API's clock as its status is judged (NodeRecord.status);
    negative when the agent's clock runs ahead of the API's."""
    return now - node.last_heartbeat


def one_hot(current: str, states: Iterable[str]) -> list[tuple[str, float]]:
    """An enum as Prometheus has it: one series per possible state, 1 on the current one, 0 on the others."""
    return [(state, 1.0 if state == current else 0.0) for state in states]


def leader_label(token: str) -> str:
    """The scheduler's name in metrics: its lease's first 8 characters, as the LEADER_CHANGED event names it."""
    return token[:8]


NOTHING_HELD = Allocation()
BUILD_LABELS = {"version": build_version(), "python": platform.python_version()}


@dataclass(frozen=True)
class Scraped:
    """What one scrape read of the cluster (plain records), for `cluster_families`."""

    services: dict[str, ServiceRecord]
    tasks: list[TaskRecord]
    nodes: list[NodeRecord]
    queue_depths: list[int]  # of `nodes`, in their order
    heard_since: float
    leader: str | None  # the token holding the scheduler's lease
    now: float
    misses: float  # heartbeats a node may miss (Settings.heartbeat_misses)


class ClusterCollector(Collector):
    """The cluster's state, read from Redis when scraped: the reads the API's views make, no more."""

    def __init__(self, store: ApiStore, heartbeat_misses: float):
        self.store = store
        self.misses = heartbeat_misses

    def collect(self) -> Iterator[Metric]:
        store = self.store
        nodes = store.nodes()
        yield from cluster_families(
            Scraped(
                services=store.services(), tasks=store.tasks(), nodes=nodes,
                queue_depths=store.queue_depths([node.id for node in nodes]), heard_since=store.heard_since(),
                leader=store.leader(), now=time.time(), misses=self.misses,
            )
        )
        yield from telemetry_families(store.telemetry())


def cluster_families(scraped: Scraped) -> Iterator[Metric]:
    """The gauges of the cluster's state. Labels are values given to prometheus-client, which escapes
    them: a name with quotes or newlines cannot break the exposition."""
    yield build_info()
    yield from service_families(scraped.services, scraped.tasks)
    yield from node_families(scraped)

    leader = GaugeMetricFamily(
        "gorchester_scheduler_leader",
        "1 for the scheduler holding the lease (named by its lease's first 8 characters); no series while none does.",
        labels=["scheduler"],
    )
    if scraped.leader is not None:
        leader.add_metric([leader_label(scraped.leader)], 1)
    yield leader


def build_info() -> Metric:
    info = GaugeMetricFamily(
        "gorchester_build_info", "This API's build: its version and Python's; always 1.", labels=list(BUILD_LABELS)
    )
    info.add_metric(list(BUILD_LABELS.values()), 1)
    return info


def service_families(services: dict[str, ServiceRecord], tasks: list[TaskRecord]) -> Iterator[Metric]:
    """Replicas per service as its view counts them (api/views.py service_status), and its rollout's state."""
    desired = GaugeMetricFamily(
        "gorchester_service_desired_replicas", "Replicas a service asks for (0 while it is deleted).",
        labels=["service"],
    )
    running = GaugeMetricFamily(
        "gorchester_service_running_replicas", "Replicas with a running container.", labels=["service"]
    )
    healthy = GaugeMetricFamily(
        "gorchester_service_healthy_replicas",
        "Wanted replicas that are ready (running, and passing their health check if they have one).",
        labels=["service"],
    )
    rollout = GaugeMetricFamily(
        "gorchester_service_rollout_state",
        "The state of a service's last rolling update: 1 on the current state; no series before its first update.",
        labels=["service", "state"],
    )
    own: dict[str, list[TaskRecord]] = defaultdict(list)
    for task in tasks:
        own[task.service].append(task)
    for name, record in sorted(services.items()):
        status = service_status(record, own[name])
        desired.add_metric([name], 0 if record.deleting else status["desired_replicas"] or 0)
        running.add_metric([name], status["running_replicas"])
        healthy.add_metric([name], status["healthy_replicas"])
        if record.update is not None:
            for state, value in one_hot(record.update.state, UpdateState):
                rollout.add_metric([name, state], value)
    yield from (desired, running, healthy, rollout)
    yield GaugeMetricFamily("gorchester_services", "Services defined (with those being deleted).", len(services))

    by_state = GaugeMetricFamily("gorchester_tasks", "Tasks (replica slots) by state.", labels=["state"])
    counted = Counter(task.state for task in tasks)
    for state in TaskState:
        by_state.add_metric([state.value], counted[state])
    yield by_state


def node_families(scraped: Scraped) -> Iterator[Metric]:
    """Each node's status, capacity, what its replicas request (as the node view counts it, shared/fit.py
    allocations) and use, its queue and the age of its last heartbeat."""
    nodes, now = scraped.nodes, scraped.now
    by_status = GaugeMetricFamily("gorchester_nodes", "Registered nodes by status.", labels=["status"])
    statuses = Counter(node.status(now, scraped.misses, scraped.heard_since) for node in nodes)
    for status in NodeStatus:
        by_status.add_metric([status.value], statuses[status])
    yield by_status

    queue = GaugeMetricFamily("gorchester_node_queue_depth", "Jobs waiting in a node's RQ queue.", labels=["node"])
    for node, depth in zip(nodes, scraped.queue_depths, strict=True):
        queue.add_metric([node.id], depth)
    yield queue

    age = GaugeMetricFamily(
        "gorchester_node_heartbeat_age_seconds", "Seconds since the node's last heartbeat, by the API's clock.",
        labels=["node"],
    )
    cap_cpu = GaugeMetricFamily("gorchester_node_cpu_capacity_cores", "CPU a node offers.", labels=["node"])
    cap_mem = GaugeMetricFamily("gorchester_node_memory_capacity_bytes", "Memory a node offers.", labels=["node"])
    alloc_cpu = GaugeMetricFamily(
        "gorchester_node_cpu_allocated_cores", "CPU the replicas placed on the node request.", labels=["node"]
    )
    alloc_mem = GaugeMetricFamily(
        "gorchester_node_memory_allocated_bytes", "Memory the replicas placed on the node request.", labels=["node"]
    )
    used_cpu = GaugeMetricFamily(
        "gorchester_node_cpu_used_cores", "CPU the node's containers used (last sample).", labels=["node"]
    )
    used_mem = GaugeMetricFamily(
        "gorchester_node_memory_used_bytes", "Memory the node's containers used (last sample).", labels=["node"]
    )
    held = allocations(scraped.tasks)
    for node in nodes:
        age.add_metric([node.id], heartbeat_age(node, now))
        cap_cpu.add_metric([node.id], cores(node.cpu_millicores))
        cap_mem.add_metric([node.id], node.memory_bytes)
        alloc = held.get(node.id, NOTHING_HELD)
        alloc_cpu.add_metric([node.id], cores(alloc.cpu_millicores))
        alloc_mem.add_metric([node.id], alloc.memory_bytes)
        used = (node.usage or {}).get("used") or {}
        if used:
            used_cpu.add_metric([node.id], cores(float(used.get("cpu_millicores", 0))))
            used_mem.add_metric([node.id], float(used.get("memory_bytes", 0)))
    yield from (age, cap_cpu, cap_mem, alloc_cpu, alloc_mem, used_cpu, used_mem)


def telemetry_families(recorded: dict[str, list[tuple[str, dict[str, str], float]]]) -> Iterator[Metric]:
    """The counters and histograms processes recorded in Redis, as metric families (empty ones too)."""
    for name, (kind, help_text, buckets) in telemetry.TELEMETRY.items():
        entries = recorded.get(name, [])
        if kind == "counter":
            label_names = sorted({key for _, labels, _ in entries for key in labels})
            counter = CounterMetricFamily(name, help_text, labels=label_names)
            for _, labels, value in entries:
                counter.add_metric([labels.get(key, "") for key in label_names], value)
            yield counter
            continue
        series: dict[tuple[tuple[str, str], ...], dict[str, Any]] = {}
        for suffix, labels, value in entries:
            le = labels.get("le")
            key = tuple(sorted((k, v) for k, v in labels.items() if k != "le"))
            one = series.setdefault(key, {"buckets": {}, "sum": 0.0})
            if suffix == "bucket" and le is not None:
                one["buckets"][le] = value
            elif suffix == "sum":
                one["sum"] = value
        label_names = sorted({k for key in series for k, _ in key})
        histogram = HistogramMetricFamily(name, help_text, labels=label_names)
        bounds = [repr(float(bound)) for bound in buckets] + ["+Inf"]
        for key, one in series.items():
            values = dict(key)
            histogram.add_metric(
                [values.get(k, "") for k in label_names],
                [(bound, one["buckets"].get(bound, 0.0)) for bound in bounds],
                one["sum"],
            )
        yield histogram


def exposition(store: ApiStore, heartbeat_misses: float) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ClusterCollector(store, heartbeat_misses))
    return generate_latest(registry) + generate_latest(API_REGISTRY)


async def prometheus(request: Request) -> Response:
    store, misses = store_of(request), settings_of(request).heartbeat_misses
    body = await blocking(lambda: exposition(store, misses))
    return Response(body, media_type=CONTENT_TYPE_LATEST)


class RequestMetrics(ObservedRequests):
    """Every HTTP request's duration by method, route template and status."""

    def observe(self, scope: Scope, status: int, seconds: float) -> None:
        route = scope.get("route")
        path = getattr(route, "path", None)
        template = f"{scope.get('root_path', '')}{path}" if path is not None else "unmatched"
        REQUEST_DURATION.labels(scope["method"], template, str(status)).observe(seconds)
