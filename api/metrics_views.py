"""Usage and the orchestrator's own metrics: `GET /v1/services/{name}/metrics` and `GET /metrics`.

`GET /metrics` is Prometheus' text format (prometheus-client). Gauges are read from Redis at scrape
time (services, nodes, tasks, queue depths, node usage); counters and histograms measured in the
scheduler and the agents (reconcile duration, schedule-to-running latency, restarts, scaling
actions, samples) are kept by them in the Redis `telemetry` hash (shared/telemetry.py) and exposed
here, so one scrape of any API instance sees the whole cluster. API request durations are this
process's own (middleware), as each API instance serves its own requests.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator, Mapping
from typing import Any, TypeVar

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from pydantic import TypeAdapter
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.context import blocking, settings_of, store_of
from api.responses import AutoscaleAction, AutoscaleDecision, AutoscaleStatus, ReplicaUsage, ServiceUsage, stored
from api.views import iso
from shared import telemetry
from shared.records import AutoscaleState, NodeStatus, TaskState
from shared.storage import ApiStore

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


class ClusterCollector(Collector):
    """The cluster's state, read from Redis when scraped."""

    def __init__(self, store: ApiStore, heartbeat_misses: float):
        self.store = store
        self.misses = heartbeat_misses

    def collect(self) -> Iterator[Metric]:
        store, now = self.store, time.time()
        services, tasks, nodes, heard_since = store.services(), store.tasks(), store.nodes(), store.heard_since()

        desired = GaugeMetricFamily(
            "gorchester_service_desired_replicas", "Replicas a service asks for.", labels=["service"]
        )
        running = GaugeMetricFamily("gorchester_service_running_replicas", "Replicas running.", labels=["service"])
        states_of = Counter((task.service, task.state) for task in tasks)
        wanted_of = Counter(task.service for task in tasks if task.state is not TaskState.SHUTDOWN)
        for name, record in sorted(services.items()):
            count = wanted_of[name] if record.spec.is_global else record.spec.count
            desired.add_metric([name], 0 if record.deleting else count)
            running.add_metric([name], states_of[(name, TaskState.RUNNING)])
        yield desired
        yield running
        yield GaugeMetricFamily("gorchester_services", "Services defined (with those being deleted).", len(services))

        by_state = GaugeMetricFamily("gorchester_tasks", "Tasks (replica slots) by state.", labels=["state"])
        counted = Counter(task.state for task in tasks)
        for state in TaskState:
            by_state.add_metric([state.value], counted[state])
        yield by_state

        by_status = GaugeMetricFamily("gorchester_nodes", "Registered nodes by status.", labels=["status"])
        statuses = Counter(node.status(now, self.misses, heard_since) for node in nodes)
        for status in NodeStatus:
            by_status.add_metric([status.value], statuses[status])
        yield by_status

        queue = GaugeMetricFamily("gorchester_node_queue_depth", "Jobs waiting in a node's RQ queue.", labels=["node"])
        depths = store.queue_depths([node.id for node in nodes])
        for node, depth in zip(nodes, depths, strict=True):
            queue.add_metric([node.id], depth)
        yield queue

        used_cpu = GaugeMetricFamily(
            "gorchester_node_cpu_used_millicores", "CPU the node's containers used (last sample).", labels=["node"]
        )
        used_mem = GaugeMetricFamily(
            "gorchester_node_memory_used_bytes", "Memory the node's containers used (last sample).", labels=["node"]
        )
        cap_cpu = GaugeMetricFamily("gorchester_node_cpu_capacity_millicores", "CPU a node offers.", labels=["node"])
        cap_mem = GaugeMetricFamily("gorchester_node_memory_capacity_bytes", "Memory a node offers.", labels=["node"])
        for node in nodes:
            cap_cpu.add_metric([node.id], node.cpu_millicores)
            cap_mem.add_metric([node.id], node.memory_bytes)
            used = (node.usage or {}).get("used") or {}
            if used:
                used_cpu.add_metric([node.id], float(used.get("cpu_millicores", 0)))
                used_mem.add_metric([node.id], float(used.get("memory_bytes", 0)))
        yield from (cap_cpu, cap_mem, used_cpu, used_mem)

        yield from telemetry_families(store.telemetry())


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


class RequestMetrics:
    """ASGI middleware: every HTTP request's duration by method, route template and status."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = {"code": 500}

        async def record_status(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record_status)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None)
            template = f"{scope.get('root_path', '')}{path}" if path is not None else "unmatched"
            REQUEST_DURATION.labels(scope["method"], template, str(status["code"])).observe(
                time.perf_counter() - started
            )
