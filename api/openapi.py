"""`GET /v1/openapi.json`: the API described from the same pydantic models it validates with.

Request bodies are the models the API validates with (ServiceSpec, Config, ScaleRequest, ExecBody) in pydantic's
validation mode; responses are pydantic models too: the service spec in serialization mode plus
the small response models below, written only for views that had none (api/views.py builds dicts).
Response objects allow extra properties, so a field added to a view is not a breaking change.
Paths, methods and parameters come from the app's route table (api/app.py) and the parameter rules
(api/params.py) the API checks with; each operation lists every status it can answer, OPTIONS too.
The document is built once per process, at the first request.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, Field
from pydantic.json_schema import models_json_schema
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Mount

from api import params
from api.routing import Resource
from api.services import ScaleRequest
from api.task_exec import ExecBody, ExecResult
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
    status: str = Field(description="ready, not_ready (its engine does not answer), draining or down")
    reason: str | None = Field(description="why it is not ready or down: no heartbeat, or its engine does not answer")
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


class RedisReplication(BaseModel):
    master: str = Field(description="HOST:PORT of the Redis master this API writes to now")
    replicas_in_sync: int | None = Field(
        description="replicas online and at most 1 s behind; null when the Redis user may not run INFO")


class Health(BaseModel):
    status: Literal["ok"]
    cluster: str
    redis: RedisReplication


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
    (ExecBody, "validation"),
    (ExecResult, "serialization"),
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
    400: "a query or path parameter breaks its rule (each named), or a malformed body or Content-Length",
    401: "no bearer token, or an unknown one (when tokens are configured)",
    403: "the read-only token on a change; a cross-site Origin or Sec-Fetch-Site; with no token configured, "
    "a client that is not loopback or a Host that is neither loopback nor the server's address",
    404: "no such service, node or task",
    408: "the body did not arrive whole within 10 s",
    409: "conflicts with the current state (exists already, not running, no container, the replica moved)",
    413: "body over 1 MiB",
    415: "Content-Type is not application/json, application/yaml, application/x-yaml or text/yaml",
    422: "invalid input: every field path and rule",
    503: "Redis unavailable or not answering within 2 s; or (logs, exec) the replica's node is down, its agent "
    "does not answer within 5 s, or it serves too many requests already",
}
BODY_TYPES = ("application/json", "application/yaml", "application/x-yaml", "text/yaml")


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
    return {str(code): _json(_ref("Problem"), ERRORS[code]) for code in sorted(set(codes))}


def _body(schema_name: str, description: str) -> dict[str, Any]:
    return {
        "required": True,
        "description": description,
        "content": {media: {"schema": _ref(schema_name)} for media in BODY_TYPES},
    }


def _parameter(name: str, where: str, rule: params.Rule) -> dict[str, Any]:
    return {"name": name, "in": where, "required": where == "path", "description": rule.description,
            "schema": rule.schema}


@dataclass(frozen=True)
class Operation:
    """What an operation does and answers on success, and the errors it adds to those every endpoint
    can give (400, 401, 403, 503: added from the route where the document is built)."""

    doc: dict[str, Any]
    errors: tuple[int, ...] = ()


def _operation(summary: str, operation_id: str, responses: dict[str, Any], *, body: dict[str, Any] | None = None,
               errors: tuple[int, ...] = (), open_: bool = False) -> Operation:
    doc: dict[str, Any] = {"summary": summary, "operationId": operation_id, "responses": responses}
    if body is not None:
        doc["requestBody"] = body
    if open_:
        doc["security"] = []
    return Operation(doc, errors)


BODY_ERRORS = (408, 413, 415, 422)


def operations(
    spec_in: str, replacement: str, config_in: str, scale_in: str, exec_in: str
) -> dict[tuple[str, str], Operation]:
    """What each (path, method) does and answers on success; errors beyond the common ones."""
    service = _ref("Service")
    return {
        ("/v1/health", "get"): _operation(
            "Liveness and Redis reachability (no token needed)", "health",
            {"200": _json(_ref("Health"), "Redis answers"),
             "503": _json(_ref("HealthUnavailable"), "Redis does not answer within 1 s")}, open_=True),
        ("/v1/openapi.json", "get"): _operation(
            "This document (no token needed)", "openapi",
            {"200": _json({"type": "object"}, "the OpenAPI document")}, open_=True),
        ("/v1/services", "get"): _operation(
            "Every service with its status (env values hidden from the read-only token)", "listServices",
            {"200": _json({"type": "array", "items": service}, "the services")}),
        ("/v1/services", "post"): _operation(
            "Create one service", "createService", {"201": _json(service, "created")},
            body=_body(spec_in, "one service (JSON, or YAML)"), errors=(409, *BODY_ERRORS)),
        ("/v1/services/{name}", "get"): _operation(
            "One service with its status (env values hidden from the read-only token)", "getService",
            {"200": _json(service, "the service")}),
        ("/v1/services/{name}", "put"): _operation(
            "Replace a service's spec", "replaceService", {"200": _json(service, "replaced")},
            body=_body(replacement, "the whole spec; service_name may be omitted"), errors=(409, *BODY_ERRORS)),
        ("/v1/services/{name}", "delete"): _operation(
            "Delete a service (its replicas stop, then it goes)", "deleteService",
            {"202": _json(service, "marked for deletion")}, errors=(409,)),
        ("/v1/services/{name}/scale", "post"): _operation(
            "Set the desired replicas", "scaleService", {"200": _json(service, "scaled")},
            body=_body(scale_in, '{"replicas": N}'), errors=(409, *BODY_ERRORS)),
        ("/v1/services/{name}/metrics", "get"): _operation(
            "A service's usage: each replica's latest sample and their average", "serviceMetrics",
            {"200": _json({"type": "object"}, "the usage")}),
        ("/v1/services/{name}/endpoints", "get"): _operation(
            "Where a service's ready replicas answer", "serviceEndpoints",
            {"200": _json({"type": "array", "items": {"type": "object"}}, "the endpoints")}),
        ("/v1/apply", "post"): _operation(
            "Make the services match a config", "apply", {"200": _json(_ref("ApplyResult"), "what changed")},
            body=_body(config_in, "a whole config, or one service document"), errors=(409, *BODY_ERRORS)),
        ("/v1/nodes", "get"): _operation(
            "Every node", "listNodes", {"200": _json({"type": "array", "items": _ref("NodeView")}, "the nodes")}),
        ("/v1/nodes/{node}", "get"): _operation(
            "One node", "getNode", {"200": _json(_ref("NodeView"), "the node")}),
        ("/v1/nodes/{node}/drain", "post"): _operation(
            "Move a node's tasks elsewhere and place none there", "drainNode",
            {"200": _json(_ref("NodeView"), "the node")}),
        ("/v1/nodes/{node}/activate", "post"): _operation(
            "Let a node take tasks again", "activateNode", {"200": _json(_ref("NodeView"), "the node")}),
        ("/v1/tasks", "get"): _operation(
            "Every replica", "listTasks", {"200": _json({"type": "array", "items": _ref("TaskView")}, "the tasks")}),
        ("/v1/tasks/{task}", "get"): _operation(
            "One replica", "getTask", {"200": _json(_ref("TaskView"), "the task")}),
        ("/v1/tasks/{task}/stop", "post"): _operation(
            "Stop a replica's container (kept; the task is stopped)", "stopTask",
            {"202": _json(_ref("TaskView"), "stop requested")}, errors=(409,)),
        ("/v1/tasks/{task}/logs", "get"): _operation(
            "A replica's container output (stdout and stderr), streamed from its node's agent", "taskLogs",
            {"200": {"description": "the output", "content": {"text/plain": {"schema": {"type": "string"}}}}},
            errors=(409,)),
        ("/v1/tasks/{task}/exec", "post"): _operation(
            "Run a command in a replica's running container (through its node's agent)", "execInTask",
            {"200": _json(_ref("ExecResult"), "the command's exit code and output")},
            body=_body(exec_in, '{"command": [...], "timeout": N}'), errors=(409, *BODY_ERRORS)),
        ("/v1/events", "get"): _operation(
            "What happened, newest last", "listEvents",
            {"200": _json({"type": "array", "items": _ref("EventView")}, "the events")}),
    }


def build(routes: list[BaseRoute]) -> dict[str, Any]:
    names, top = models_json_schema(MODELS, ref_template=REF)
    defs: dict[str, Any] = top.get("$defs", {})
    spec_in = _name(names[(ServiceSpec, "validation")])
    spec_out = _name(names[(ServiceSpec, "serialization")])
    config_in = _name(names[(Config, "validation")])
    scale_in = _name(names[(ScaleRequest, "validation")])
    exec_in = _name(names[(ExecBody, "validation")])
    # Request bodies are checked strictly by the API, so what they reach keeps
    # `additionalProperties: false`; response-only objects are opened.
    strict = _reachable(defs, [spec_in, config_in, scale_in, exec_in])
    schemas = {name: schema if name in strict else _open(schema) for name, schema in defs.items()}
    # A service as returned: its spec's fields plus version, status and the rest, in one object.
    spec_schema, state_schema = schemas[spec_out], schemas["ServiceState"]
    schemas["Service"] = {
        "title": "Service",
        "type": "object",
        "properties": {**spec_schema.get("properties", {}), **state_schema.get("properties", {})},
        "required": sorted({*spec_schema.get("required", []), *state_schema.get("required", [])}),
    }
    # PUT takes the service's name from the URL when the body leaves it out.
    replacement = "ServiceReplacement"
    schemas[replacement] = {
        **schemas[spec_in],
        "title": replacement,
        "required": [name for name in schemas[spec_in].get("required", []) if name != "service_name"],
    }
    described = operations(spec_in, replacement, config_in, scale_in, exec_in)
    paths = {path: describe(path, resource, described) for path, resource in v1_resources(routes)}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "gorchester",
            "version": "1",
            "description": "A container orchestrator's REST API. Changes need the admin token, reads the admin "
            "or the read-only token (which sees env keys, not their values); with no token configured the API "
            "serves loopback clients only. Unknown or repeated query parameters are refused (400).",
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


def describe(path: str, resource: Resource, described: dict[tuple[str, str], Operation]) -> dict[str, Any]:
    """A path's entry: its parameters from api/params.py, each method's operation with every answer it
    can give, and OPTIONS."""
    path_names = re.findall(r"{(\w+)}", path)
    entry: dict[str, Any] = {}
    parameters = [_parameter(name, "path", params.PATH[name]) for name in path_names]
    parameters += [_parameter(name, "query", rule) for name, rule in resource.query.items()]
    if parameters:  # every method of a path (OPTIONS too) checks them alike
        entry["parameters"] = parameters
    methods = sorted(method.lower() for method in resource.endpoints if method != "HEAD")
    open_ = False
    for method in methods:
        found = described.get((path, method)) or _undescribed(path, method)
        operation = copy.deepcopy(found.doc)
        open_ = operation.get("security") == []
        common = (400, 403) if open_ else (400, 401, 403, 503)
        operation["responses"] = {**operation["responses"],
                                  **_errors(*common, *found.errors, *((404,) if path_names else ()))}
        entry[method] = operation
    entry["options"] = {
        "summary": "The methods this path serves", "operationId": "options" + _identifier(path),
        "responses": {"204": {"description": "the methods, in Allow",
                              "headers": {"Allow": {"schema": {"type": "string"}, "description": resource.allow}}},
                      **_errors(400, 403, *(() if open_ else (401,)), *((404,) if path_names else ()))},
    }
    if open_:  # as open as the path's other methods
        entry["options"]["security"] = []
    return entry


def _undescribed(path: str, method: str) -> Operation:
    """A minimal entry for a route this module does not describe yet, so none is missing."""
    return _operation(f"{method.upper()} {path}", method + _identifier(path),
                      {"200": _json({}, "success"), "201": _json({}, "created"), "202": _json({}, "accepted")},
                      errors=(409, *BODY_ERRORS) if method != "get" else ())


def _identifier(path: str) -> str:
    return "".join(part.capitalize() for part in re.split(r"[^A-Za-z0-9]+", path) if part)


def v1_resources(routes: list[BaseRoute]) -> list[tuple[str, Resource]]:
    """(path, route) of every route under /v1, as the app serves them."""
    return [
        (f"/v1{inner.path}", inner)
        for route in routes if isinstance(route, Mount) and route.path == "/v1"
        for inner in route.routes if isinstance(inner, Resource)
    ]


def v1_routes(routes: list[BaseRoute]) -> list[tuple[str, str]]:
    """(path, lower-case method) of every route under /v1, as the app serves them."""
    return [(path, method.lower()) for path, resource in v1_resources(routes)
            for method in sorted(resource.endpoints) if method != "HEAD"]


_cache: dict[str, Any] = {}


def document(routes: list[BaseRoute]) -> dict[str, Any]:
    if "doc" not in _cache:
        _cache["doc"] = build(routes)
    return _cache["doc"]


async def openapi(request: Request) -> JSONResponse:
    return JSONResponse(document(request.app.routes))
