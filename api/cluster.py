"""Read-mostly endpoints about the cluster: health, nodes (with drain/activate), tasks, events."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from functools import partial
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from api.context import blocking, jobs_of, settings_of, store_of
from api.snapshot import json_response, views_of
from api.views import event_view, node_view, task_view
from shared.config import ConfigError
from shared.dispatch import Action, Job, enqueue
from shared.errors import Unavailable
from shared.records import Availability, NodeRecord

log = logging.getLogger("gorchester.api")

MAX_EVENTS = 10_000


async def health(request: Request) -> JSONResponse:
    """Liveness plus Redis reachability; a load balancer can take a 503 as "not ready"."""
    store = store_of(request)
    try:
        await blocking(store.redis.ping)
    except Unavailable as exc:
        return JSONResponse({"status": "unavailable", "reason": str(exc)}, status_code=503)
    return JSONResponse({"status": "ok", "cluster": settings_of(request).cluster, "redis": "ok"})


def _node_view(request: Request, node: NodeRecord) -> dict[str, Any]:
    return node_view(node, store_of(request).tasks(), time.time(), settings_of(request).heartbeat_misses)


async def list_nodes(request: Request) -> JSONResponse:
    store = store_of(request)
    nodes, tasks = await blocking(lambda: (store.nodes(), store.tasks()))
    misses, now = settings_of(request).heartbeat_misses, time.time()
    return JSONResponse([node_view(node, tasks, now, misses) for node in nodes])


async def get_node(request: Request) -> JSONResponse:
    node_id = request.path_params["id"]
    return JSONResponse(await blocking(lambda: _node_view(request, store_of(request).node(node_id))))


async def drain_node(request: Request) -> JSONResponse:
    return await _change_availability(request, Availability.DRAIN)


async def activate_node(request: Request) -> JSONResponse:
    return await _change_availability(request, Availability.ACTIVE)


AVAILABILITY_EVENTS = {
    Availability.DRAIN: ("node_draining", "node {id} draining: its tasks move elsewhere"),
    Availability.ACTIVE: ("node_activated", "node {id} active: it takes new tasks again"),
}


async def _change_availability(request: Request, availability: Availability) -> JSONResponse:
    node_id = request.path_params["id"]
    kind, message = AVAILABILITY_EVENTS[availability]
    store = store_of(request)

    def change() -> dict[str, Any]:
        node = store.set_availability(node_id, availability)
        store.emit(kind, message.format(id=node_id), node=node_id)
        log.info("%s", message.format(id=node_id))
        return _node_view(request, node)

    return JSONResponse(await blocking(change))


async def list_tasks(request: Request) -> Response:
    service, node = request.query_params.get("service"), request.query_params.get("node")
    store = store_of(request)

    views = views_of(store)

    def build() -> bytes:
        entries = store.task_entries()
        chosen = sorted(
            (
                (task.service, task.slot, body, task)
                for body, task in entries
                if (service is None or task.service == service) and (node is None or task.node == node)
            ),
            key=lambda entry: (entry[0], entry[1]),
        )
        body = b"[" + b",".join(views.fragment(raw, partial(task_view, task)) for _, _, raw, task in chosen) + b"]"
        views.prune([raw for raw, _ in entries])
        return body

    return json_response(await blocking(lambda: views.get_raw(store, ("tasks", service, node), build)))


async def get_task(request: Request) -> JSONResponse:
    task_id = request.path_params["id"]
    return JSONResponse(task_view(await blocking(lambda: store_of(request).task(task_id))))


async def stop_task(request: Request) -> JSONResponse:
    """A user's stop: the container stops but stays, and unless-stopped leaves it so."""
    task_id = request.path_params["id"]
    store = store_of(request)

    def stop() -> dict[str, Any]:
        task = store.request_stop(task_id)
        assert task.node is not None
        enqueue(jobs_of(request), store.keys, [Job(task.node, Action.HALT, task.id, task.gen, task.incarnation)])
        message = f"{task.id} stop requested on {task.node}"
        store.emit("task_stop_requested", message, service=task.service, task=task.id, node=task.node)
        return task_view(task)

    return JSONResponse(await blocking(stop), status_code=202)


def parse_since(raw: str) -> float:
    """Unix seconds, or ISO 8601 (a time without zone is taken as UTC)."""
    try:
        return float(raw)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise ConfigError(["since: must be unix seconds or an ISO 8601 time"]) from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def parse_limit(raw: str) -> int:
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_EVENTS:
        raise ConfigError([f"limit: must be an integer from 1 to {MAX_EVENTS}"])
    return int(raw)


async def list_events(request: Request) -> JSONResponse:
    query = request.query_params
    since = parse_since(query["since"]) if query.get("since") else None
    limit = parse_limit(query.get("limit", "500"))
    service = query.get("service") or None
    events = await blocking(lambda: store_of(request).events(since=since, service=service, limit=limit))
    return JSONResponse([event_view(event) for event in events])
