"""Rollout endpoints: a service's history, pausing and resuming its rolling update, and undo (a rolling
update back to an earlier version's template)."""

from __future__ import annotations

import logging
import time

from starlette.requests import Request
from starlette.responses import JSONResponse

from api.auth import Role, role_of
from api.context import acknowledged, blocking, settings_of, store_of
from api.responses import HistoryView, ServiceView
from api.routing import query_of
from api.views import history_view, service_view, without_env_values
from shared.config import ServiceSpec, validate_service
from shared.hostaccess import check_service
from shared.storage import ApiStore, history

log = logging.getLogger("gorchester.api")


async def service_history(request: Request) -> JSONResponse:
    name = request.path_params["name"]
    store = store_of(request)

    def read() -> HistoryView:
        record = store.service(name)
        return history_view(record, store.history(name))

    view = await blocking(read)
    return JSONResponse(without_env_values(view) if role_of(request) is Role.READ else view)


async def pause(request: Request) -> JSONResponse:
    return await _set_paused(request, True)


async def resume(request: Request) -> JSONResponse:
    return await _set_paused(request, False)


async def _set_paused(request: Request, paused: bool) -> JSONResponse:
    name = request.path_params["name"]

    def change(store: ApiStore) -> ServiceView:
        record = store.set_paused(name, paused, time.time())
        log.info("service %s: rolling update %s", name, "paused" if paused else "resumed")
        return service_view(record, store.service_tasks([name]))

    return JSONResponse(await acknowledged(request, change))


async def undo(request: Request) -> JSONResponse:
    """Roll an earlier version's template out again (replicas, autoscaling and rollout controls stay
    as they are now), as a new version; checked against the host-access allow-list as any change."""
    name = request.path_params["name"]
    to_version: int | None = query_of(request)["to_version"]
    host_access = settings_of(request).host_access

    def change(store: ApiStore) -> ServiceView:
        current = store.service(name)
        target = history.undo_target(store.history(name), current, to_version)

        def restored(spec: ServiceSpec) -> ServiceSpec:
            now = spec.model_dump(mode="json")
            data = target.spec.model_dump(mode="json")
            data.update({field: now[field] for field in ("replicas", "scale_policy", "update_config")})
            back = validate_service(data)
            check_service(back, host_access)
            return back

        cause = (history.Cause.UNDO, f"back to version {target.version}")
        record, _ = store.change_spec(name, restored, time.time(), cause=cause)
        log.info("service %s: undo to version %d as version %d", name, target.version, record.version)
        return service_view(record, store.service_tasks([name]))

    return JSONResponse(await acknowledged(request, change))
