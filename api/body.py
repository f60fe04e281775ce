"""Request bodies: a size limit for every request, and JSON or YAML documents by Content-Type."""

from __future__ import annotations

from typing import Any

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import problem
from shared.document import ConfigSyntaxError, load_json, load_yaml

MAX_BODY_BYTES = 1024 * 1024


class BodyLimit:
    """Refuses bodies over `limit` bytes with 413, by Content-Length up front or while streaming."""

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > self.limit:
            await problem(413, "request_entity_too_large", message=self._message)(scope, receive, send)
            return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.limit:
                raise HTTPException(413, self._message)
            return message

        await self.app(scope, limited, send)

    @property
    def _message(self) -> str:
        return f"request body exceeds {self.limit} bytes"


def is_json(request: Request) -> bool:
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


async def read_document(request: Request) -> Any:
    """The parsed body: JSON when the Content-Type says so, else YAML (which also reads JSON)."""
    raw = await request.body()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigSyntaxError(f"body is not UTF-8: {exc}") from None
    if not is_json(request):
        return load_yaml(text)
    return load_json(text)


async def read_mapping(request: Request, what: str) -> dict[str, Any]:
    """A body that must be one JSON/YAML mapping; anything else is malformed (400)."""
    data = await read_document(request)
    if not isinstance(data, dict):
        got = "an empty body" if data is None else f"a {type(data).__name__}"
        raise ConfigSyntaxError(f"the body must be a mapping ({what}), got {got}")
    return data
