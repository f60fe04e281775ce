"""`GET /v1/openapi.json`: the API described from the same pydantic models it validates with.

Request bodies are the config models themselves (ServiceSpec, Config, ScaleRequest) in pydantic's
validation mode; responses are pydantic models too: the service spec in serialization mode plus
the small response models below, written only for views that had none (api/views.py builds dicts).
Response objects allow extra properties, so a field added to a view is not a breaking change.
The document is built once per process, at the first request.
"""

from __future__ import annotations

import copy
import re
from typing import Any, Literal

from pydantic import BaseModel, Field
from pydantic.json_schema import models_json_schema
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Mount, Route

from api.services import ScaleRequest
from shared.config import Config, ServiceSpec
from shared.records import PublishedPort

REF = "#/components/schemas/{model}"


# -- response models (only what api/views.py returns as plain dicts) ----------------------------


class ServiceStatus(BaseModel):
    desired_replicas: int | None = Field(description="null when the stored record cannot be read")
    running_replicas: int
    pending_replicas: int
    failed_replicas: int
    health: str = Field(description="healthy, degraded, unhealthy, or failed: the scheduler cannot handle it")
    reason: str | None = Field(description="why it failed (its record cannot be read, or scheduling it raised)")
    last_updated: str | None


class ServiceState(BaseModel):
    """What a service view adds to its spec (whose fields are null when its record cannot be read)."""

    version: int | None
    created_at: str | None
    updated_at: str | None
    deleting: bool
    status: ServiceStatus


class NodeResources(BaseModel):
    cpu_millicores: int
    memory_bytes: int


class NodeView(BaseModel):
    id: str
    address: str
    status: str = Field(description="ready, draining or down")
    availability: str = Field(description="active or drain")
    capacity: NodeResources
    allocated: NodeResources
    usage: dict[str, Any]
    labels: dict[str, str]
    last_heartbeat: str | None
    tasks: int


class TaskView(BaseModel):
    id: str
    service: str
    slot: int
    node: str | None
    container_id: str | None
    state: str = Field(description="pending, assigned, starting, running, failed, stopped or shutdown")
    reason: str | None
    ports: list[PublishedPort]
    started_at: str | None
    restarts: int
    exit_code: int | None
    gen: int


class EventView(BaseModel):
    id: str
    type: str
    time: str | None
    message: str
    data: dict[str, Any]


class Health(BaseModel):
    status: Literal["ok"]
    cluster: str
    redis: str


class HealthUnavailable(BaseModel):
    status: Literal["unavailable"]
    reason: str


class ApplyResult(BaseModel):
    created: list[str]
    updated: list[str]
    deleted: list[str]


class Problem(BaseModel):
    """Every error: a machine-readable `error` and a message or reason (422: every `errors` line)."""

    error: str
    message: str | None = None
    reason: str | None = None
    errors: list[str] | None = None


# -- the document -------------------------------------------------------------------------------

MODELS: list[tuple[type[BaseModel], Literal["validation", "serialization"]]] = [
    (ServiceSpec, "validation"),
    (ServiceSpec, "serialization"),
    (Config, "validation"),
    (ScaleRequest, "validation"),
    (ServiceState, "serialization"),
    (NodeView, "serialization"),
    (TaskView, "serialization"),
    (EventView, "serialization"),
    (Health, "serialization"),
    (HealthUnavailable, "serialization"),
    (ApplyResult, "serialization"),
    (Problem, "serialization"),
]

ERRORS = {
    400: "malformed body: not JSON/YAML, not UTF-8, or not a mapping",
    401: "no bearer token, or an unknown one (when tokens are configured)",
    403: "the read-only token on a change; or, with no token configured, a client that is not loopback",
    404: "no such service, node or task",
    409: "conflicts with the current state (exists already, not running, no container)",
    413: "body over 1 MiB",
    422: "invalid input: every field path and rule",
    503: "Redis (or a node's engine) unavailable",
}


def _name(ref: dict[str, Any]) -> str:
    return str(ref["$ref"]).rsplit("/", 1)[1]


def _reachable(defs: dict[str, Any], roots: list[str]) -> set[str]:
    """Every schema name the roots refer to, directly or through others."""
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in seen or name not in defs:
            continue
        seen.add(name)
        todo.extend(_refs(defs[name]))
    return seen


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [str(node["$ref"]).rsplit("/", 1)[1]] if "$ref" in node else []
        return found + [name for value in node.values() for name in _refs(value)]
    if isinstance(node, list):
        return [name for value in node for name in _refs(value)]
    return []


def _ref(name: str) -> dict[str, str]:
    return {"$ref": REF.format(model=name)}


def _open(schema: dict[str, Any]) -> dict[str, Any]:
    """A response schema that tolerates properties added later (extra fields are not breaking)."""
    result = copy.deepcopy(schema)
    result.pop("additionalProperties", None)
    return result


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    return {str(code): _json(_ref("Problem"), ERRORS[code]) for code in codes}


def _body(schema_name: str, description: str) -> dict[str, Any]:
    return {
        "required": True,
        "description": description,
        "content": {
            "application/json": {"schema": _ref(schema_name)},
            "application/yaml": {"schema": _ref(schema_name)},
        },
    }


def _path_param(name: str, description: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "description": description, "schema": {"type": "string"}}


def _query(name: str, description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": schema or {"type": "string"}}


AUTH = (401, 403, 503)
WRITE = (400, 401, 403, 409, 413, 422, 503)


def build() -> dict[str, Any]:
    names, top = models_json_schema(MODELS, ref_template=REF)
    defs: dict[str, Any] = top.get("$defs", {})
    spec_in = _name(names[(ServiceSpec, "validation")])
    spec_out = _name(names[(ServiceSpec, "serialization")])
    config_in = _name(names[(Config, "validation")])
    scale_in = _name(names[(ScaleRequest, "validation")])
    # Request bodies are checked strictly by the API, so what they reach keeps
    # `additionalProperties: false`; response-only objects are opened.
    strict = _reachable(defs, [spec_in, config_in, scale_in])
    schemas = {name: schema if name in strict else _open(schema) for name, schema in defs.items()}
    # A service as returned: its spec's fields plus version, status and the rest, in one object.
    spec_schema, state_schema = schemas[spec_out], schemas["ServiceState"]
    schemas["Service"] = {
        "title": "Service",
        "type": "object",
        "properties": {**spec_schema.get("properties", {}), **state_schema.get("properties", {})},
        "required": sorted({*spec_schema.get("required", []), *state_schema.get("required", [])}),
    }
    service = _ref("Service")
    name_param = _path_param("name", "the service name")
    node_param = _path_param("id", "the node id")
    task_param = _path_param("id", "the task id, e.g. web.1")
    paths: dict[str, Any] = {
        "/v1/health": {"get": {
            "summary": "Liveness and Redis reachability (no token needed)", "operationId": "health",
            "security": [],
            "responses": {"200": _json(_ref("Health"), "Redis answers"),
                          "503": _json(_ref("HealthUnavailable"), "Redis does not answer")},
        }},
        "/v1/services": {
            "get": {"summary": "Every service with its status", "operationId": "listServices",
                    "responses": {"200": _json({"type": "array", "items": service}, "the services"),
                                  **_errors(*AUTH)}},
            "post": {"summary": "Create one service", "operationId": "createService",
                     "requestBody": _body(spec_in, "one service (JSON, or YAML)"),
                     "responses": {"201": _json(service, "created"), **_errors(*WRITE)}},
        },
        "/v1/services/{name}": {
            "parameters": [name_param],
            "get": {"summary": "One service with its status", "operationId": "getService",
                    "responses": {"200": _json(service, "the service"), **_errors(404, *AUTH)}},
            "put": {"summary": "Replace a service's spec", "operationId": "replaceService",
                    "requestBody": _body(spec_in, "the whole spec; service_name may be omitted"),
                    "responses": {"200": _json(service, "replaced"), **_errors(404, *WRITE)}},
            "delete": {"summary": "Delete a service (its replicas stop, then it goes)", "operationId": "deleteService",
                       "responses": {"202": _json(service, "marked for deletion"), **_errors(404, 409, *AUTH)}},
        },
        "/v1/services/{name}/scale": {
            "parameters": [name_param],
            "post": {"summary": "Set the desired replicas", "operationId": "scaleService",
                     "requestBody": _body(scale_in, '{"replicas": N}'),
                     "responses": {"200": _json(service, "scaled"), **_errors(404, *WRITE)}},
        },
        "/v1/apply": {"post": {
            "summary": "Make the services match a config", "operationId": "apply",
            "parameters": [_query("prune", "also remove the services the config does not name",
                                  {"type": "string", "enum": ["true", "false"]})],
            "requestBody": _body(config_in, "a whole config, or one service document"),
            "responses": {"200": _json(_ref("ApplyResult"), "what changed"), **_errors(*WRITE)},
        }},
        "/v1/nodes": {"get": {
            "summary": "Every node", "operationId": "listNodes",
            "responses": {"200": _json({"type": "array", "items": _ref("NodeView")}, "the nodes"), **_errors(*AUTH)},
        }},
        "/v1/nodes/{id}": {"parameters": [node_param], "get": {
            "summary": "One node", "operationId": "getNode",
            "responses": {"200": _json(_ref("NodeView"), "the node"), **_errors(404, *AUTH)},
        }},
        "/v1/tasks": {"get": {
            "summary": "Every replica", "operationId": "listTasks",
            "parameters": [_query("service", "only this service's"), _query("node", "only those on this node")],
            "responses": {"200": _json({"type": "array", "items": _ref("TaskView")}, "the tasks"), **_errors(*AUTH)},
        }},
        "/v1/tasks/{id}": {"parameters": [task_param], "get": {
            "summary": "One replica", "operationId": "getTask",
            "responses": {"200": _json(_ref("TaskView"), "the task"), **_errors(404, *AUTH)},
        }},
        "/v1/tasks/{id}/stop": {"parameters": [task_param], "post": {
            "summary": "Stop a replica's container (kept; the task is stopped)", "operationId": "stopTask",
            "responses": {"202": _json(_ref("TaskView"), "stop requested"), **_errors(404, 409, *AUTH)},
        }},
        "/v1/tasks/{id}/logs": {"parameters": [task_param], "get": {
            "summary": "A replica's container output (stdout and stderr), streamed", "operationId": "taskLogs",
            "parameters": [
                _query("tail", "'all' (default) or the last N lines",
                       {"type": "string", "pattern": "^(all|[0-9]{1,7})$"}),
                _query("follow", "keep streaming until the container stops or the client leaves",
                       {"type": "string", "enum": ["true", "false"]}),
            ],
            "responses": {
                "200": {"description": "the output", "content": {"text/plain": {"schema": {"type": "string"}}}},
                **_errors(404, 409, 422, *AUTH),
            },
        }},
        "/v1/events": {"get": {
            "summary": "What happened, newest last", "operationId": "listEvents",
            "parameters": [
                _query("since", "unix seconds or ISO 8601"),
                _query("service", "only events about this service"),
                _query("limit", "at most this many (1-10000, default 500)"),
            ],
            "responses": {"200": _json({"type": "array", "items": _ref("EventView")}, "the events"),
                          **_errors(422, *AUTH)},
        }},
        "/v1/openapi.json": {"get": {
            "summary": "This document (no token needed)", "operationId": "openapi", "security": [],
            "responses": {"200": _json({"type": "object"}, "the OpenAPI document")},
        }},
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "gorchester",
            "version": "1",
            "description": "A container orchestrator's REST API. Changes need the admin token, reads the admin "
            "or the read-only token; with no token configured the API serves loopback clients only.",
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


def v1_routes(routes: list[BaseRoute]) -> list[tuple[str, str]]:
    """(path, lower-case method) of every route under /v1, as the app serves them."""
    found = []
    for route in routes:
        if isinstance(route, Mount) and route.path == "/v1":
            for inner in route.routes:
                if isinstance(inner, Route):
                    found += [(f"/v1{inner.path}", method.lower()) for method in sorted(inner.methods or ()) if
                              method != "HEAD"]
    return found


def complete(doc: dict[str, Any], routes: list[tuple[str, str]]) -> dict[str, Any]:
    """Add a minimal entry for any /v1 route this module does not describe yet, so none is missing."""
    for path, method in routes:
        entry = doc["paths"].setdefault(path, {})
        if method in entry:
            continue
        params = re.findall(r"{(\w+)}", path)
        if params and "parameters" not in entry:
            entry["parameters"] = [_path_param(name, name) for name in params]
        errors = (404, *AUTH) if method == "get" else (404, *WRITE)
        entry[method] = {
            "summary": f"{method.upper()} {path} (not described in detail yet)",
            "operationId": f"{method}_{re.sub(r'[^A-Za-z0-9]+', '_', path).strip('_')}",
            "responses": {"200": _json({}, "success"), "201": _json({}, "created"), "202": _json({}, "accepted"),
                          **_errors(*errors)},
        }
    return doc


_cache: dict[str, Any] = {}


def document(routes: list[BaseRoute]) -> dict[str, Any]:
    if "doc" not in _cache:
        _cache["doc"] = complete(build(), v1_routes(routes))
    return _cache["doc"]


async def openapi(request: Request) -> JSONResponse:
    return JSONResponse(document(request.app.routes))
