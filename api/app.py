"""The gorchester REST API: routes, middleware, the lifespan that owns the ApiStore, the error map.

Run with `uvicorn api.app:app`; settings come from GORCHESTER_* environment variables at startup.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TypedDict

import redis
import redis.asyncio
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Mount

from api import cluster, dashboard, logs, openapi, params, rollouts, services, task_exec
from api.access_log import AccessLog
from api.auth import Auth, Tokens
from api.body import BodyLimit
from api.context import API_REDIS_TIMEOUT_SECONDS, RedisWork, RequestDeadline, api_redis
from api.errors import HANDLERS
from api.metrics_views import RequestMetrics, get_service_metrics, prometheus
from api.node_calls import NodeCalls
from api.origins import OriginPolicy
from api.routing import Resource
from shared import process_logs
from shared.keys import Keys
from shared.redis_access import check_access
from shared.redis_url import async_client
from shared.settings import SettingError, Settings
from shared.storage import ApiStore

log = logging.getLogger("gorchester.api")

ROUTES = [
    Resource("/metrics", get=prometheus),  # Prometheus text format (api/metrics_views.py)
    Mount(
        "/v1",
        routes=[
            Resource("/health", get=cluster.health),
            Resource("/openapi.json", get=openapi.openapi),
            Resource("/version", get=cluster.version),
            Resource("/services", get=services.list_services, post=services.create_service),
            Resource(
                "/services/{name}",
                get=services.get_service, put=services.replace_service, delete=services.delete_service,
            ),
            Resource("/services/{name}/scale", post=services.scale_service),
            Resource("/services/{name}/metrics", get=get_service_metrics),
            Resource("/services/{name}/endpoints", get=services.service_endpoints),
            Resource("/services/{name}/history", get=rollouts.service_history),
            Resource("/services/{name}/pause", post=rollouts.pause),
            Resource("/services/{name}/resume", post=rollouts.resume),
            Resource("/services/{name}/undo", post=rollouts.undo, query=params.UNDO),
            Resource("/services/{name}/rebalance", post=services.rebalance, query=params.REBALANCE),
            Resource("/apply", post=services.apply, query=params.APPLY),
            Resource("/nodes", get=cluster.list_nodes),
            Resource("/nodes/{node}", get=cluster.get_node, delete=cluster.remove_node,
                     method_query={"delete": params.REMOVE_NODE}),
            Resource("/nodes/{node}/drain", post=cluster.drain_node),
            Resource("/nodes/{node}/activate", post=cluster.activate_node),
            Resource("/tasks", get=cluster.list_tasks, query=params.TASKS),
            Resource("/tasks/{task}", get=cluster.get_task),
            Resource("/tasks/{task}/placement", get=cluster.task_placement, query=params.PLACEMENT),
            Resource("/tasks/{task}/stop", post=cluster.stop_task),
            Resource("/tasks/{task}/logs", get=logs.task_logs, query=params.LOGS),
            Resource("/tasks/{task}/exec", post=task_exec.exec_in_task),
            Resource("/events", get=cluster.list_events, query=params.EVENTS),
        ],
    ),
    dashboard.MOUNT,
    dashboard.FAVICON_ROUTE,  # the dashboard's icon where browsers look for it
]


class State(TypedDict):
    settings: Settings
    store: ApiStore
    tokens: Tokens  # bearer tokens (api/auth.py); none configured means loopback-only
    origins: OriginPolicy  # which browser origins and Host names may call (api/origins.py)
    redis_work: RedisWork  # the threads Redis calls run on, bounded (api/context.py)
    health_redis: redis.asyncio.Redis  # /v1/health's own connection, on the event loop
    node_calls: NodeCalls  # logs and exec through the nodes' agents, on the event loop (api/node_calls.py)


def create_app(
    settings: Settings | None = None, tokens: Tokens | None = None, origins: OriginPolicy | None = None
) -> Starlette:
    """An API app; without settings (or tokens, origins) it reads the environment when it starts, not when
    imported."""

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[State]:
        try:
            resolved = settings or Settings.from_env()
            auth = tokens if tokens is not None else Tokens.from_env()
            # A wrong password or TLS setting, or data of another layout version, stops it here, named.
            check_access(resolved.redis_url, resolved.cluster, "api")
        except SettingError as exc:
            log.error("cannot start: %s", exc)  # one line to read before uvicorn's traceback of the failed startup
            raise
        (log.info if auth.enabled else log.warning)("%s", auth.describe())
        store = ApiStore(api_redis(resolved.redis_url), resolved.cluster)
        health_redis = async_client(
            resolved.redis_url, socket_timeout=API_REDIS_TIMEOUT_SECONDS,
            socket_connect_timeout=API_REDIS_TIMEOUT_SECONDS,
        )
        work = RedisWork()
        node_calls = NodeCalls(resolved.redis_url, Keys(resolved.cluster))
        log.info("serving cluster %s", resolved.cluster)
        try:
            yield {
                "settings": resolved, "store": store, "tokens": auth,
                "origins": origins or OriginPolicy.from_env(), "redis_work": work, "health_redis": health_redis,
                "node_calls": node_calls,
            }
        finally:
            work.close()
            store.close()
            await health_redis.aclose()
            await node_calls.aclose()

    return Starlette(
        routes=ROUTES,
        middleware=[
            Middleware(AccessLog), Middleware(RequestMetrics), Middleware(Auth), Middleware(BodyLimit),
            Middleware(RequestDeadline),
        ],
        lifespan=lifespan,
        exception_handlers=HANDLERS,
    )


# `uvicorn api.app:app` set up its own loggers before importing this: ours replace them, so every line of
# the API is in the processes' format (shared/process_logs.py), a bad GORCHESTER_LOG_* setting stops it here.
# uvicorn logs what the app raises; hooks of our own would only replace a test runner's that imports the app.
process_logs.configure("api", uncaught=False)
app = create_app()
