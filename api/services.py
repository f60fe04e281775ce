"""Service endpoints and `apply`: parse the body, make the change (with its events), return the view."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Sequence

from pydantic import BaseModel, ConfigDict, Field, StrictInt
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from api.auth import Role, role_of
from api.body import read_document, read_mapping
from api.context import acknowledged, blocking, settings_of, store_of
from api.metrics_views import with_autoscale
from api.mirror import Mirror, json_response, mirror_of
from api.responses import AnyService, ApplyResult, EndpointView, PlanResult, ServiceView
from api.routing import query_of
from api.views import (
    endpoints_view,
    listed_service_view,
    plan_view,
    service_view,
    unreadable_service_view,
    without_env_values,
)
from scheduler.dry_run import plan_apply, plan_rebalance
from scheduler.plan import Policy
from shared.config import Config, ConfigError, ServiceSpec, validate_config, validate_service
from shared.defaults import MAX_REPLICAS
from shared.errors import NotFound, Unavailable
from shared.event_kinds import EventKind
from shared.hostaccess import check_config, check_service
from shared.records import NodeRecord, ServiceOutcome, ServiceRecord, Unreadable
from shared.storage import ApiStore
from shared.storage.reads import Snapshot
from shared.storage.requests import services_index

log = logging.getLogger("gorchester.api")

PLAN_REPLICAS = 20_000  # replicas a dry run plans for at most: twice the scale the scheduler is measured at
_planning = threading.Lock()  # one plan computed at a time, off the Redis threads

class ScaleRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    replicas: StrictInt = Field(
        ge=0, le=MAX_REPLICAS, description="checked against the whole spec, so scale_policy bounds apply"
    )


def _log_change(name: str, outcome: ServiceOutcome) -> None:
    if outcome is not ServiceOutcome.UNCHANGED:
        log.info("service %s %s", name, outcome.value)


def _view(store: ApiStore, name: str) -> AnyService:
    """The view of one service, from its record, its own tasks and its fault."""
    stored = store.read_services([name])
    if name not in stored.bodies:
        raise NotFound(f"service {name!r} not found")
    return listed_service_view(name, stored, store.service_tasks([name]), store.faults().get(name))


def _written_view(store: ApiStore, record: ServiceRecord, outcome: ServiceOutcome) -> AnyService:
    """The view of the record a write made (a new record, not yet judged by the scheduler); when the
    write changed nothing, of the record as stored."""
    if outcome is ServiceOutcome.UNCHANGED:
        return _view(store, record.name)
    return service_view(record, store.service_tasks([record.name]))


async def list_services(request: Request) -> Response:
    store = store_of(request)
    role = role_of(request)

    def render(mirror: Mirror) -> bytes:
        return mirror.services_json(redacted=role is Role.READ)

    # Keyed by role too: one role is never served the bytes rendered for the other.
    return json_response(await blocking(lambda: mirror_of(store).view(store, ("services", role), render)))


async def get_service(request: Request) -> JSONResponse:
    store = store_of(request)
    name = request.path_params["name"]
    role = role_of(request)
    view = await blocking(lambda: with_autoscale(store, _view(store, name)))
    return JSONResponse(_for_role(role, view))


def _for_role(role: Role, view: AnyService) -> AnyService:
    """A service view as this role may see it: the read-only token sees env keys, not their values."""
    return without_env_values(view) if role is Role.READ else view


async def create_service(request: Request) -> JSONResponse:
    spec = validate_service(await read_mapping(request, "one service"))
    check_service(spec, settings_of(request).host_access)

    def create(store: ApiStore) -> ServiceView:
        record = store.create_service(spec, time.time())
        _log_change(record.name, ServiceOutcome.CREATED)
        return service_view(record, store.service_tasks([record.name]))

    return JSONResponse(await acknowledged(request, create), status_code=201)


async def replace_service(request: Request) -> JSONResponse:
    """A full spec for an existing service; service_name may be omitted but must not differ."""
    name = request.path_params["name"]
    data = await read_mapping(request, "one service")
    data.setdefault("service_name", name)
    spec = validate_service(data)
    if spec.service_name != name:
        raise ConfigError([f"service_name: must match the URL ({name})"])
    check_service(spec, settings_of(request).host_access)

    def replace(store: ApiStore) -> AnyService:
        record, outcome = store.update_service(spec, time.time())
        _log_change(name, outcome)
        return _written_view(store, record, outcome)

    return JSONResponse(await acknowledged(request, replace))


async def service_endpoints(request: Request) -> JSONResponse:
    """Where a service's ready replicas answer: node address + published ports, container address."""
    name = request.path_params["name"]
    store = store_of(request)

    def endpoints() -> list[EndpointView]:
        record = store.service(name)
        return endpoints_view(record, store.service_tasks([name]), store.nodes())

    return JSONResponse(await blocking(endpoints))


async def delete_service(request: Request) -> JSONResponse:
    name = request.path_params["name"]

    def delete(store: ApiStore) -> AnyService:
        record, marked = store.delete_service(name, time.time())
        if marked:
            _log_change(name, ServiceOutcome.DELETED)
        if isinstance(record, Unreadable):  # dropped at once: its tasks are stopped as those of a service gone
            return {**unreadable_service_view(record, [], record.reason), "deleting": True}
        return service_view(record, store.service_tasks([name]))

    return JSONResponse(await acknowledged(request, delete), status_code=202)


async def scale_service(request: Request) -> JSONResponse:
    name = request.path_params["name"]
    replicas = ScaleRequest.model_validate(await read_mapping(request, '{"replicas": N}')).replicas

    def scale(store: ApiStore) -> AnyService:
        # The new count is put into the spec read inside the write's transaction: a change made
        # meanwhile (a PUT) is kept, never overwritten with the spec as it was before it.
        message = f"service {name} scaled to {replicas} replicas"
        record, outcome = store.change_spec(
            name, lambda spec: _with_replicas(spec, replicas), time.time(),
            events=lambda _record, _outcome: [(EventKind.SERVICE_SCALED, message, {"service": name})],
        )
        if outcome is ServiceOutcome.UPDATED:
            log.info("%s", message)
        return _written_view(store, record, outcome)

    return JSONResponse(await acknowledged(request, scale))


def _with_replicas(spec: ServiceSpec, replicas: int) -> ServiceSpec:
    """The spec at a new replica count, validated whole; every complaint is about `replicas`."""
    data = spec.model_dump(mode="json")
    data["replicas"] = replicas
    try:
        return validate_service(data)
    except ConfigError as exc:
        raise ConfigError([_about_replicas(line) for line in exc.errors]) from None


def _about_replicas(line: str) -> str:
    return line if line.startswith("replicas:") else f"replicas: {line}"


def _flag(request: Request, name: str) -> bool:
    """A true/false query parameter, as api/params.py checked it."""
    return bool(query_of(request)[name])


async def apply(request: Request) -> JSONResponse:
    """Make the cluster's services match a config (or one service document); prune drops the rest.
    A dry run answers the plan instead, writing nothing; a check index applies only if the services
    are still as the plan that gave it saw them."""
    prune = _flag(request, "prune")
    check_index: str | None = query_of(request)["check_index"]
    data = await read_document(request)
    config = validate_config(data)
    settings = settings_of(request)
    check_config(config, settings.host_access)
    cluster = settings.cluster
    if "cluster_name" in data and config.cluster_name != cluster:
        raise ConfigError([f"cluster_name: this API serves cluster {cluster}"])
    if _flag(request, "dry_run"):
        return JSONResponse(await plan(store_of(request), config, prune, Policy.from_settings(settings)))

    def apply_config(store: ApiStore) -> ApplyResult:
        applied = store.apply(config, time.time(), prune=prune, check_index=check_index)
        outcome = applied.outcome
        for what in (ServiceOutcome.CREATED, ServiceOutcome.UPDATED, ServiceOutcome.DELETED):
            for name in outcome[what]:
                _log_change(name, what)
        return {
            "created": outcome[ServiceOutcome.CREATED], "updated": outcome[ServiceOutcome.UPDATED],
            "unchanged": outcome[ServiceOutcome.UNCHANGED], "deleted": outcome[ServiceOutcome.DELETED],
            "versions": applied.versions,
        }

    return JSONResponse(await acknowledged(request, apply_config))


async def plan(store: ApiStore, config: Config, prune: bool, policy: Policy) -> PlanResult:
    """What applying `config` now would do, by the scheduler's own pure code on the cluster as read
    (scheduler/dry_run.py); nothing is written. The cluster is read on a Redis thread, by the request's
    deadline; the plan is computed off them, one at a time (503 while another is), for at most
    PLAN_REPLICAS replicas (422 beyond)."""
    snapshot, nodes, heard_since = await blocking(lambda: _as_read(store))
    _within_bound(snapshot, nodes, config.services, prune)

    def compute() -> PlanResult:
        plans = plan_apply(
            config, snapshot.services, list(snapshot.tasks.good.values()), nodes, time.time(), policy,
            prune=prune, heard_since=heard_since,
        )
        return plan_view(plans, services_index(snapshot.services))

    return await _off_the_redis_threads(compute)


def _within_bound(snapshot: Snapshot, nodes: list[NodeRecord], specs: Sequence[ServiceSpec], prune: bool) -> None:
    """Refuse (422) a plan of more than PLAN_REPLICAS replicas: the services of `specs` as they would be,
    and the others as they are (unless pruned). A global service asks one replica per node at most."""
    names = {spec.service_name for spec in specs}
    others = sum(
        len(nodes) if record.spec.is_global else record.spec.count
        for name, record in snapshot.services.good.items() if name not in names and not prune
    )
    asked = sum(len(nodes) if spec.is_global else spec.count for spec in specs) + others
    if asked > PLAN_REPLICAS:
        raise ConfigError([f"dry_run: a plan covers at most {PLAN_REPLICAS} replicas; the services would have {asked}"])


def _as_read(store: ApiStore) -> tuple[Snapshot, list[NodeRecord], float]:
    """What a plan is computed on: services and tasks at one revision, the nodes, and since when the
    scheduler has heard Redis (to judge the nodes as it does)."""
    return store.snapshot(), sorted(store.nodes(), key=lambda node: node.id), store.heard_since()


async def _off_the_redis_threads(compute: Callable[[], PlanResult]) -> PlanResult:
    """Compute a plan on a thread of its own, one at a time (503 while another is computed)."""

    def one() -> PlanResult:
        if not _planning.acquire(blocking=False):
            raise Unavailable("a plan is being computed already: try again")
        try:
            return compute()
        finally:
            _planning.release()

    return await asyncio.get_running_loop().run_in_executor(None, one)


async def rebalance(request: Request) -> JSONResponse:
    """Ask the scheduler to spread a service's replicas evenly over its nodes (moved one at a time,
    start-first); a dry run answers the plan instead."""
    name = request.path_params["name"]
    if _flag(request, "dry_run"):
        store, policy = store_of(request), Policy.from_settings(settings_of(request))

        snapshot, nodes, heard_since = await blocking(lambda: _as_read(store))
        _within_bound(snapshot, nodes, (), False)

        def compute() -> PlanResult:
            planned = plan_rebalance(name, snapshot.services, list(snapshot.tasks.good.values()), nodes, time.time(),
                                     policy, heard_since=heard_since)
            return plan_view([planned], services_index(snapshot.services))

        return JSONResponse(await _off_the_redis_threads(compute))

    def ask(store: ApiStore) -> ServiceView:
        record = store.request_rebalance(name, time.time())
        log.info("service %s: rebalance asked for", name)
        return service_view(record, store.service_tasks([name]))

    return JSONResponse(await acknowledged(request, ask))
