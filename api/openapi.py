"""`GET /v1/openapi.json`: the API described from the same types it validates with and answers with.

Request bodies are the pydantic models the API validates with (ServiceSpec, Config, ScaleRequest,
ExecBody), in pydantic's validation mode. Responses are the types the views build (api/responses.py,
and ExecResult), in serialization mode: every object closed (`additionalProperties: false`), and every
property the view always sets required. A service as answered is its spec's schema merged with
ServiceState's, one object. Paths, methods and parameters come from the app's route table
(api/app.py) and the parameter rules (api/params.py) the API checks with; every /v1 route has an
operation below (building the document fails otherwise); each lists every status it can answer,
OPTIONS too. The document is built once per process, at the first request.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, TypeAdapter
from pydantic.json_schema import GenerateJsonSchema
from pydantic_core import core_schema
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Mount

from api import params, responses
from api.routing import Resource
from api.services import ScaleRequest
from api.task_exec import ExecBody, ExecResult
from shared.config import Config, ServiceSpec

REF = "#/components/schemas/{model}"

REQUESTS: dict[str, type[BaseModel]] = {
    "spec": ServiceSpec, "config": Config, "scale": ScaleRequest, "exec": ExecBody,
}
ANSWERS: list[Any] = [
    ServiceSpec, responses.ServiceState, responses.UnreadableService, responses.Autoscaled,
    responses.ServiceUsage, responses.EndpointView, responses.ApplyResult, responses.NodeView, responses.NodeRemoved,
    responses.HistoryView, responses.PlanResult, responses.TaskView, responses.PlacementView, responses.EventView,
    responses.HealthOk, responses.HealthUnavailable, responses.Problem, ExecResult,
]


class AnswerSchema(GenerateJsonSchema):
    """Answers are dumped whole (`model_dump()`), so a model field with a default is always present,
    hence required; a TypedDict's keys are required unless it says otherwise."""

    def field_is_required(
        self, field: core_schema.ModelField | core_schema.DataclassField | core_schema.TypedDictField, total: bool
    ) -> bool:
        if self.mode == "serialization" and field["type"] != "typed-dict-field":
            return field.get("serialization_exclude_if") is None
        return super().field_is_required(field, total)


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


def _closed(node: Any) -> Any:
    """An answer's schema with every object closed: a property it does not name is an error. Maps
    (`additionalProperties` set to a schema) stay maps."""
    if isinstance(node, list):
        return [_closed(value) for value in node]
    if not isinstance(node, dict):
        return node
    closed = {key: _closed(value) for key, value in node.items()}
    if "properties" in closed:
        closed.setdefault("additionalProperties", False)
    return closed


def _merged(title: str, *parts: dict[str, Any]) -> dict[str, Any]:
    """One object with the properties of each part (a service view: its spec's fields, then the rest)."""
    return {
        "title": title,
        "type": "object",
        "properties": {name: schema for part in parts for name, schema in part["properties"].items()},
        "required": sorted({name for part in parts for name in part.get("required", [])}),
        "additionalProperties": False,
    }


def _any(*names: str) -> dict[str, Any]:
    return {"anyOf": [_ref(name) for name in names]}


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


def operations(bodies: dict[str, str]) -> dict[tuple[str, str], Operation]:
    """What each (path, method) does and answers on success; errors beyond the common ones. `bodies`:
    the schema name of each request body (REQUESTS' keys, and `replacement`)."""
    service = _ref("Service")
    # A service whose stored record cannot be read is listed, shown and deleted as what is known of it.
    any_service = _any("Service", "UnreadableService")
    return {
        ("/v1/health", "get"): _operation(
            "Liveness and Redis reachability (no token needed)", "health",
            {"200": _json(_ref("HealthOk"), "Redis answers"),
             "503": _json(_ref("HealthUnavailable"), "Redis does not answer within 1 s")}, open_=True),
        ("/v1/openapi.json", "get"): _operation(
            "This document (no token needed)", "openapi",
            {"200": _json({"type": "object"}, "the OpenAPI document")}, open_=True),
        ("/v1/version", "get"): _operation(
            "This server's build version", "version",
            {"200": _json({"type": "object", "required": ["version"], "additionalProperties": False,
                           "properties": {"version": {"type": "string"}}}, "the version")}),
        ("/v1/services", "get"): _operation(
            "Every service with its status (env values hidden from the read-only token)", "listServices",
            {"200": _json({"type": "array", "items": any_service}, "the services")}),
        ("/v1/services", "post"): _operation(
            "Create one service", "createService", {"201": _json(service, "created")},
            body=_body(bodies["spec"], "one service (JSON, or YAML)"), errors=(409, *BODY_ERRORS)),
        ("/v1/services/{name}", "get"): _operation(
            "One service with its status and autoscaler (env values hidden from the read-only token)", "getService",
            {"200": _json(_any("ServiceWithAutoscale", "UnreadableServiceWithAutoscale"), "the service")}),
        ("/v1/services/{name}", "put"): _operation(
            "Replace a service's spec", "replaceService", {"200": _json(any_service, "replaced")},
            body=_body(bodies["replacement"], "the whole spec; service_name may be omitted"),
            errors=(409, *BODY_ERRORS)),
        ("/v1/services/{name}", "delete"): _operation(
            "Delete a service (its replicas stop, then it goes)", "deleteService",
            {"202": _json(any_service, "marked for deletion")}, errors=(409,)),
        ("/v1/services/{name}/scale", "post"): _operation(
            "Set the desired replicas", "scaleService", {"200": _json(any_service, "scaled")},
            body=_body(bodies["scale"], '{"replicas": N}'), errors=(409, *BODY_ERRORS)),
        ("/v1/services/{name}/metrics", "get"): _operation(
            "A service's usage: each replica's latest sample, their average, and the autoscaler", "serviceMetrics",
            {"200": _json(_ref("ServiceUsage"), "the usage")}),
        ("/v1/services/{name}/endpoints", "get"): _operation(
            "Where a service's ready replicas answer", "serviceEndpoints",
            {"200": _json({"type": "array", "items": _ref("EndpointView")}, "the endpoints")}),
        ("/v1/services/{name}/history", "get"): _operation(
            "A service's rollout history: the versions of its template kept, newest first", "serviceHistory",
            {"200": _json(_ref("HistoryView"), "the history")}, errors=(409,)),
        ("/v1/services/{name}/pause", "post"): _operation(
            "Pause the rolling update under way (no more replicas are replaced)", "pauseRollout",
            {"200": _json(service, "paused")}, errors=(409,)),
        ("/v1/services/{name}/resume", "post"): _operation(
            "Resume a paused rolling update (a replica of it that failed is replaced again)", "resumeRollout",
            {"200": _json(service, "resumed")}, errors=(409,)),
        ("/v1/services/{name}/undo", "post"): _operation(
            "Roll an earlier version's template out again, as a new version (replicas and controls stay)",
            "undoRollout", {"200": _json(service, "the rolling update back started")}, errors=(409, 422)),
        ("/v1/services/{name}/rebalance", "post"): _operation(
            "Spread a service's replicas evenly over its nodes, one start-first move at a time (dry_run: the plan)",
            "rebalanceService",
            {"200": _json(_any("Service", "PlanResult"), "the service, its rebalance asked for (dry_run: the plan)")},
            errors=(409, 422)),
        ("/v1/apply", "post"): _operation(
            "Make the services match a config (dry_run: answer the plan, write nothing)", "apply",
            {"200": _json(_any("ApplyResult", "PlanResult"), "what changed (dry_run: the plan)")},
            body=_body(bodies["config"], "a whole config, or one service document"), errors=(409, *BODY_ERRORS)),
        ("/v1/nodes", "get"): _operation(
            "Every node", "listNodes", {"200": _json({"type": "array", "items": _ref("NodeView")}, "the nodes")}),
        ("/v1/nodes/{node}", "get"): _operation(
            "One node", "getNode", {"200": _json(_ref("NodeView"), "the node")}),
        ("/v1/nodes/{node}", "delete"): _operation(
            "Forget a node that is down (any node with force): its record, index and beats", "removeNode",
            {"200": _json(_ref("NodeRemoved"), "removed")}, errors=(409,)),
        ("/v1/nodes/{node}/drain", "post"): _operation(
            "Move a node's tasks elsewhere and place none there", "drainNode",
            {"200": _json(_ref("NodeView"), "the node")}),
        ("/v1/nodes/{node}/activate", "post"): _operation(
            "Let a node take tasks again", "activateNode", {"200": _json(_ref("NodeView"), "the node")}),
        ("/v1/tasks", "get"): _operation(
            "Every replica", "listTasks", {"200": _json({"type": "array", "items": _ref("TaskView")}, "the tasks")}),
        ("/v1/tasks/{task}", "get"): _operation(
            "One replica", "getTask", {"200": _json(_ref("TaskView"), "the task")}),
        ("/v1/tasks/{task}/placement", "get"): _operation(
            "Why a replica is pending: each node's verdict on it as the nodes stand now, those that take it first",
            "taskPlacement", {"200": _json(_ref("PlacementView"), "the verdicts (none unless the task is pending)")},
            errors=(409,)),
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
            body=_body(bodies["exec"], '{"command": [...], "timeout": N}'), errors=(409, *BODY_ERRORS)),
        ("/v1/events", "get"): _operation(
            "What happened, newest last", "listEvents",
            {"200": _json({"type": "array", "items": _ref("EventView")}, "the events")}),
    }


def components() -> tuple[dict[str, Any], dict[str, str]]:
    """Every schema the document refers to, and the name of each request body's schema."""
    inputs: list[tuple[tuple[Any, str], Literal["validation", "serialization"], TypeAdapter[Any]]] = [
        ((model, "validation"), "validation", TypeAdapter(model)) for model in REQUESTS.values()
    ]
    inputs += [((kind, "serialization"), "serialization", TypeAdapter(kind)) for kind in ANSWERS]
    refs, top = TypeAdapter.json_schemas(inputs, ref_template=REF, schema_generator=AnswerSchema)
    defs: dict[str, Any] = top["$defs"]
    bodies = {key: _name(refs[((model, "validation"), "validation")]) for key, model in REQUESTS.items()}
    answers = _reachable(defs, [_name(refs[((kind, "serialization"), "serialization")]) for kind in ANSWERS])
    schemas = {name: _closed(schema) if name in answers else schema for name, schema in defs.items()}
    # A service as answered: its spec's fields, then ServiceState's (and GET's autoscale), in one object.
    spec_out = schemas.pop(_name(refs[((ServiceSpec, "serialization"), "serialization")]))
    state, autoscaled = schemas.pop("ServiceState"), schemas.pop("Autoscaled")
    schemas["Service"] = _merged("Service", spec_out, state)
    schemas["ServiceWithAutoscale"] = _merged("ServiceWithAutoscale", spec_out, state, autoscaled)
    schemas["UnreadableServiceWithAutoscale"] = _merged(
        "UnreadableServiceWithAutoscale", schemas["UnreadableService"], autoscaled
    )
    # PUT takes the service's name from the URL when the body leaves it out.
    bodies["replacement"] = "ServiceReplacement"
    schemas["ServiceReplacement"] = {
        **schemas[bodies["spec"]],
        "title": "ServiceReplacement",
        "required": [name for name in schemas[bodies["spec"]].get("required", []) if name != "service_name"],
    }
    return schemas, bodies


def build(routes: list[BaseRoute]) -> dict[str, Any]:
    schemas, bodies = components()
    described = operations(bodies)
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
        found = described.get((path, method))
        if found is None:
            raise LookupError(f"{method.upper()} {path} has no operation in api/openapi.py")
        operation = copy.deepcopy(found.doc)
        own = resource.method_query.get(method.upper(), {})
        if own:
            operation["parameters"] = [_parameter(name, "query", rule) for name, rule in own.items()]
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
