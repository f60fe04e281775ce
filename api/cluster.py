"""Read-mostly endpoints about the cluster: health, nodes (with drain/activate), tasks (with why one is
pending), events."""

from __future__ import annotations

import asyncio
import logging
import time

import redis
import redis.asyncio
from redis.asyncio.sentinel import SentinelConnectionPool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from api.context import acknowledged, blocking, settings_of, store_of
from api.mirror import Mirror, json_response, mirror_of
from api.responses import (
    HealthOk,
    HealthUnavailable,
    NodeRemoved,
    NodeView,
    PlacementView,
    RedisReplication,
    TaskView,
)
from api.routing import query_of
from api.views import event_view, node_view, placement_view, task_view
from shared.fit import asked, node_states, verdicts
from shared.records import Availability, NodeRecord, NodeStatus, TaskState
from shared.storage import ApiStore
from shared.version import build_version

log = logging.getLogger("gorchester.api")

HEALTH_TIMEOUT_SECONDS = 1.0


async def health(request: Request) -> JSONResponse:
    """Liveness plus Redis reachability; a load balancer can take a 503 as "not ready".

    A PING on a connection of its own (redis.asyncio, on the event loop): it never waits for a
    Redis thread, so a hanging Redis is reported within HEALTH_TIMEOUT_SECONDS however busy they are.
    """
    client: redis.asyncio.Redis = request.state.health_redis
    try:
        replication = await asyncio.wait_for(redis_replication(client), HEALTH_TIMEOUT_SECONDS)
    except TimeoutError:
        down: HealthUnavailable = {
            "status": "unavailable",
            "reason": f"redis unavailable: no answer to PING within {HEALTH_TIMEOUT_SECONDS:g} s",
        }
        return JSONResponse(down, status_code=503)
    except (redis.RedisError, OSError) as exc:
        down = {"status": "unavailable", "reason": f"redis unavailable: {exc}"}
        return JSONResponse(down, status_code=503)
    up: HealthOk = {"status": "ok", "cluster": settings_of(request).cluster, "redis": replication}
    return JSONResponse(up)


async def version(_: Request) -> JSONResponse:
    """This server's build (shared/version.py), for `gorchester version` beside the client's own."""
    return JSONResponse({"version": build_version()})


async def redis_replication(client: redis.asyncio.Redis) -> RedisReplication:
    """Which Redis is master now (HOST:PORT, as this API reaches it) and how many replicas follow it
    closely (online, acknowledged within the last second); null when INFO is not allowed to this user."""
    await client.ping()
    pool = client.connection_pool
    if isinstance(pool, SentinelConnectionPool):
        host, port = await pool.get_master_address()
    else:
        host, port = pool.connection_kwargs.get("host", "localhost"), pool.connection_kwargs.get("port", 6379)
    try:
        info = await client.info("replication")
    except redis.exceptions.NoPermissionError:
        in_sync = None
    else:
        in_sync = sum(1 for key, replica in info.items() if key.startswith("slave") and isinstance(replica, dict)
                      and replica.get("state") == "online" and int(replica.get("lag", 1 << 30)) <= 1)
    return {"master": f"{host}:{port}", "replicas_in_sync": in_sync}


def _node_view(request: Request, node: NodeRecord) -> NodeView:
    store = store_of(request)
    tasks = list(store.node_tasks(node.id).good.values())  # only the node's own, by its index
    return node_view(node, tasks, time.time(), settings_of(request).heartbeat_misses, store.heard_since())


async def list_nodes(request: Request) -> JSONResponse:
    store = store_of(request)
    nodes, tasks, heard_since = await blocking(lambda: (store.nodes(), store.tasks(), store.heard_since()))
    misses, now = settings_of(request).heartbeat_misses, time.time()
    return JSONResponse([node_view(node, tasks, now, misses, heard_since) for node in nodes])


async def get_node(request: Request) -> JSONResponse:
    node_id = request.path_params["node"]
    return JSONResponse(await blocking(lambda: _node_view(request, store_of(request).node(node_id))))


async def remove_node(request: Request) -> JSONResponse:
    """Forget a node that is down, as `docker node rm`; a live one only with `force` (its agent, if it
    keeps running, registers again at its next beat)."""
    node_id = request.path_params["node"]
    force = bool(query_of(request)["force"])
    misses = settings_of(request).heartbeat_misses

    def remove(store: ApiStore) -> NodeRemoved:
        heard_since = store.heard_since()

        def keep(node: NodeRecord) -> str | None:
            status = node.status(time.time(), misses, heard_since)
            if force or status is NodeStatus.DOWN:
                return None
            return (f"node {node_id!r} is {status.value}, not down: stop its agent and wait until the node is "
                    "down, or remove it anyway with force=true")

        node = store.remove_node(node_id, time.time(), keep)
        log.info("node %s removed", node_id)
        return {"id": node_id, "was": _node_view(request, node) if node is not None else None}

    return JSONResponse(await acknowledged(request, remove))


async def drain_node(request: Request) -> JSONResponse:
    return await _change_availability(request, Availability.DRAIN)


async def activate_node(request: Request) -> JSONResponse:
    return await _change_availability(request, Availability.ACTIVE)


async def _change_availability(request: Request, availability: Availability) -> JSONResponse:
    node_id = request.path_params["node"]
    def change(store: ApiStore) -> NodeView:
        node = store.set_availability(node_id, availability, time.time())
        log.info("node %s %s", node_id, availability.value)
        return _node_view(request, node)

    return JSONResponse(await acknowledged(request, change))


async def list_tasks(request: Request) -> Response:
    query = query_of(request)
    service, node = query["service"], query["node"]
    store = store_of(request)

    def render(mirror: Mirror) -> bytes:
        return mirror.tasks_json(service, node)

    return json_response(await blocking(lambda: mirror_of(store).view(store, ("tasks", service, node), render)))


async def get_task(request: Request) -> JSONResponse:
    task_id = request.path_params["task"]
    return JSONResponse(task_view(await blocking(lambda: store_of(request).task(task_id))))


async def task_placement(request: Request) -> JSONResponse:
    """Why a replica is pending: each node's verdict on what its service asks, as the nodes and the
    containers holding them stand now, by the checks the scheduler places with (shared/fit.py); at most
    `limit` nodes. Any other task, or one whose service is gone, is answered with its state alone."""
    task_id, limit = request.path_params["task"], query_of(request)["limit"]
    store, misses = store_of(request), settings_of(request).heartbeat_misses

    def explain() -> PlacementView:
        task = store.task(task_id)
        pending = task.state is TaskState.PENDING
        service = store.services_named([task.service]).get(task.service) if pending else None
        if service is None:
            return placement_view(task, None)
        nodes, tasks, heard_since, now = store.nodes(), store.tasks(), store.heard_since(), time.time()
        status = {node.id: node.status(now, misses, heard_since) for node in nodes}
        states = node_states(nodes, status, tasks)
        return placement_view(task, verdicts(states.values(), asked(task.id, service.spec), limit))

    return JSONResponse(await blocking(explain))


async def stop_task(request: Request) -> JSONResponse:
    """A user's stop: the container stops but stays, and unless-stopped leaves it so."""
    task_id = request.path_params["task"]

    def stop(store: ApiStore) -> TaskView:
        task = store.request_stop(task_id, time.time())  # the scheduler folds it in and sends it to the node
        return task_view(task)

    return JSONResponse(await acknowledged(request, stop), status_code=202)


async def list_events(request: Request) -> JSONResponse:
    query = query_of(request)
    since, limit, service, node = query["since"], query["limit"], query["service"], query["node"]
    events = await blocking(lambda: store_of(request).events(since=since, service=service, node=node, limit=limit))
    return JSONResponse([event_view(event) for event in events])
