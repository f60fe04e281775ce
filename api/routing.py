"""One route per path, with every method it serves, and its parameters checked before any endpoint.

`Resource("/services/{name}", get=..., put=..., delete=...)`: OPTIONS answers 204 with `Allow`
listing the path's methods, a method the path does not serve is 405 with the same `Allow`, and the
path and query parameters are checked against api/params.py (400 naming each one) before the
endpoint runs; endpoints read the checked query values with `query_of(request)`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from api import params

Endpoint = Callable[[Request], Awaitable[Response]]

QUERY_KEY = "gorchester.query"


class Resource(Route):
    def __init__(
        self,
        path: str,
        *,
        query: Mapping[str, params.Rule] | None = None,
        method_query: Mapping[str, Mapping[str, params.Rule]] | None = None,
        **endpoints: Endpoint,
    ) -> None:
        """`query`: the parameters every method takes; `method_query`: those one method takes beside them."""
        self.endpoints = {method.upper(): endpoint for method, endpoint in endpoints.items()}
        if "GET" in self.endpoints:
            self.endpoints.setdefault("HEAD", self.endpoints["GET"])
        self.query = dict(query or {})
        self.method_query = {method.upper(): dict(rules) for method, rules in (method_query or {}).items()}
        self.allow = ", ".join(sorted({*self.endpoints, "OPTIONS"}))
        super().__init__(path, self.dispatch, methods=[*self.endpoints, "OPTIONS"])
        unknown = set(self.param_convertors) - set(params.PATH)
        assert not unknown, f"{path}: no rule in api/params.py for path parameter(s) {sorted(unknown)}"

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] not in (self.methods or ()):
            raise HTTPException(405, f"{scope['method']} is not allowed here; allowed: {self.allow}",
                                headers={"Allow": self.allow})
        await self.app(scope, receive, send)

    async def dispatch(self, request: Request) -> Response:
        params.check_path(request.path_params)
        rules = {**self.query, **self.method_query.get("GET" if request.method == "HEAD" else request.method, {})}
        request.scope[QUERY_KEY] = params.check_query(request.query_params.multi_items(), rules)
        if request.method == "OPTIONS":
            return Response(status_code=204, headers={"Allow": self.allow})
        return await self.endpoints[request.method](request)


def query_of(request: Request) -> dict[str, Any]:
    """The request's query parameters as its Resource checked them (each rule's default when not given)."""
    values: dict[str, Any] = request.scope[QUERY_KEY]
    return values
