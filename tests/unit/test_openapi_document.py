"""The OpenAPI document as built from the route table and the answer types, without a server."""

from __future__ import annotations

import ast
import subprocess
import sys
from typing import Any

import pytest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount

from api.app import ROUTES
from api.openapi import build
from api.routing import Resource


def _walk(node: Any, schemas: dict[str, Any], seen: set[str]) -> list[dict[str, Any]]:
    """Every object schema `node` reaches, through $refs too."""
    if isinstance(node, list):
        return [found for value in node for found in _walk(value, schemas, seen)]
    if not isinstance(node, dict):
        return []
    found = [node] if "properties" in node else []
    ref = node.get("$ref")
    if ref is not None and ref not in seen:
        seen.add(ref)
        found += _walk(schemas[ref.rsplit("/", 1)[1]], schemas, seen)
    return found + [item for key, value in node.items() if key != "$ref" for item in _walk(value, schemas, seen)]


def test_every_answer_object_is_closed_and_names_what_it_always_has() -> None:
    doc = build(ROUTES)
    schemas = doc["components"]["schemas"]
    answers = [answer for entry in doc["paths"].values() for method, operation in entry.items()
               if method != "parameters" for answer in operation["responses"].values()]
    objects = _walk(answers, schemas, set())
    assert len(objects) > 20
    assert all(schema["additionalProperties"] is False for schema in objects), [
        schema.get("title") for schema in objects if schema["additionalProperties"] is not False
    ]
    task = schemas["TaskView"]
    assert set(task["required"]) == set(task["properties"])  # every key a view sets is required
    assert {"healthy_replicas"} <= set(schemas["ServiceStatus"]["required"])
    assert {"health", "address", "previous"} <= set(task["required"])
    assert {"update", "status", "image", "ports"} <= set(schemas["Service"]["required"])
    assert "autoscale" in schemas["ServiceWithAutoscale"]["required"]
    assert schemas["Problem"]["required"] == ["error"]  # message, reason or errors, as the error has


async def _nothing(_: Request) -> Response:
    return Response()


def test_a_v1_route_without_an_operation_fails_the_build() -> None:
    routes = [*ROUTES, Mount("/v1", routes=[Resource("/nowhere", get=_nothing)])]
    with pytest.raises(LookupError, match="GET /v1/nowhere"):
        build(routes)


# The scheduler's pure core, which the API runs for a plan (scheduler/dry_run.py): no Redis, no loop.
PURE_SCHEDULER = {
    "scheduler", "scheduler.backoff", "scheduler.dry_run", "scheduler.global_mode", "scheduler.placement",
    "scheduler.plan", "scheduler.rebalance", "scheduler.reconcile", "scheduler.rollout",
}


def test_the_api_imports_only_the_schedulers_pure_core_and_nothing_of_the_agent() -> None:
    code = "import sys, api.app; print(sorted(m for m in sys.modules if m.split('.')[0] in ('scheduler', 'worker')))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert set(ast.literal_eval(loaded.strip())) <= PURE_SCHEDULER
