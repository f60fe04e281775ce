"""The gorchester REST API: routes, middleware, the lifespan that owns the Store, the error map.

Run with `uvicorn api.app:app`; settings come from GORCHESTER_* environment variables at startup.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TypedDict

import redis
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Mount, Route

from api import cluster, dashboard, logs, openapi, services
from api.auth import Auth, Tokens
from api.body import BodyLimit
from api.errors import HANDLERS
from api.metrics import RequestMetrics, get_service_metrics, prometheus
from shared.settings import Settings
from shared.store import Store, connect

log = logging.getLogger("gorchester.api")

ROUTES = [
    Route("/metrics", prometheus, methods=["GET"]),  # Prometheus text format (api/metrics.py)
    Mount(
        "/v1",
        routes=[
            Route("/health", cluster.health, methods=["GET"]),
            Route("/openapi.json", openapi.openapi, methods=["GET"]),
            Route("/services", services.list_services, methods=["GET"]),
            Route("/services", services.create_service, methods=["POST"]),
            Route("/services/{name}", services.get_service, methods=["GET"]),
            Route("/services/{name}", services.replace_service, methods=["PUT"]),
            Route("/services/{name}", services.delete_service, methods=["DELETE"]),
            Route("/services/{name}/scale", services.scale_service, methods=["POST"]),
            Route("/services/{name}/metrics", get_service_metrics, methods=["GET"]),
            Route("/services/{name}/endpoints", services.service_endpoints, methods=["GET"]),
            Route("/apply", services.apply, methods=["POST"]),
            Route("/nodes", cluster.list_nodes, methods=["GET"]),
            Route("/nodes/{id}", cluster.get_node, methods=["GET"]),
            Route("/nodes/{id}/drain", cluster.drain_node, methods=["POST"]),
            Route("/nodes/{id}/activate", cluster.activate_node, methods=["POST"]),
            Route("/tasks", cluster.list_tasks, methods=["GET"]),
            Route("/tasks/{id}", cluster.get_task, methods=["GET"]),
            Route("/tasks/{id}/stop", cluster.stop_task, methods=["POST"]),
            Route("/tasks/{id}/logs", logs.task_logs, methods=["GET"]),
            Route("/events", cluster.list_events, methods=["GET"]),
        ],
    ),
    dashboard.MOUNT,
]


class State(TypedDict):
    settings: Settings
    store: Store
    jobs: redis.Redis  # RQ's connection (zlib-compressed payloads, so not decoding) for the jobs the API sends
    tokens: Tokens  # bearer tokens (api/auth.py); none configured means loopback-only


def create_app(settings: Settings | None = None, tokens: Tokens | None = None) -> Starlette:
    """An API app; without settings (or tokens) it reads the environment when it starts, not when imported."""

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[State]:
        resolved = settings or Settings.from_env()
        auth = tokens if tokens is not None else Tokens.from_env()
        (log.info if auth.enabled else log.warning)("%s", auth.describe())
        store = Store.from_settings(resolved)
        jobs = connect(resolved.redis_url, decode=False)
        log.info("serving cluster %s", resolved.cluster)
        try:
            yield {"settings": resolved, "store": store, "jobs": jobs, "tokens": auth}
        finally:
            store.redis.close()
            jobs.close()

    return Starlette(
        routes=ROUTES,
        middleware=[Middleware(RequestMetrics), Middleware(Auth), Middleware(BodyLimit)],
        lifespan=lifespan,
        exception_handlers=HANDLERS,
    )


app = create_app()
