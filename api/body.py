"""Request bodies: a size limit and a deadline for every request, and JSON or YAML documents by Content-Type."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import problem
from shared.document import ConfigSyntaxError, load_json, load_yaml

MAX_BODY_BYTES = 1024 * 1024
# The whole body must arrive within this long of the request's start: a client that declares 100
# bytes and sends 6 holds a connection (and, once read, a worker) only this long, then gets 408.
BODY_DEADLINE_SECONDS = 10.0
DOCUMENT_TYPES = ("application/json", "application/yaml", "application/x-yaml", "text/yaml")


class BodyLimit:
    """Bodies of at most `limit` bytes (413), arriving whole within `deadline` seconds (408), with a
    Content-Length that is a number (400) when there is one."""

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY_BYTES, deadline: float = BODY_DEADLINE_SECONDS) -> None:
        self.app = app
        self.limit = limit
        self.deadline = deadline

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and not (declared.isascii() and declared.isdigit()):
            message = "Content-Length: must be the body's size in bytes, a decimal number"
            await problem(400, "malformed", message=message)(scope, receive, send)
            return
        if declared is not None and int(declared) > self.limit:
            await problem(413, "request_entity_too_large", message=self._too_large)(scope, receive, send)
            return
        received = 0
        complete = False
        deadline = time.monotonic() + self.deadline

        async def limited() -> Message:
            nonlocal received, complete
            if complete:  # the body is in; what follows (a disconnect) may come whenever it does
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), max(deadline - time.monotonic(), 0))
            except TimeoutError:
                raise HTTPException(408, f"the request body did not arrive within {self.deadline:g} s") from None
            received += len(message.get("body", b""))
            if received > self.limit:
                raise HTTPException(413, self._too_large)
            complete = message["type"] != "http.request" or not message.get("more_body", False)
            return message

        await self.app(scope, limited, send)

    @property
    def _too_large(self) -> str:
        return f"request body exceeds {self.limit} bytes"


def media_type(request: Request) -> str:
    """The Content-Type without its parameters (`; charset=utf-8`), lower case; empty when there is none."""
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def require_document_type(request: Request) -> str:
    """The body's media type, if it is one the API reads; anything else (text/plain, a form, none) is 415.

    A browser may send text/plain and form bodies to any site without asking first (a "simple"
    request); reading those as YAML let a web page apply a config to a loopback API.
    """
    media = media_type(request)
    if media not in DOCUMENT_TYPES:
        got = f"got {media!r}" if media else "none was given"
        raise HTTPException(415, f"Content-Type: must be one of {', '.join(DOCUMENT_TYPES)} ({got})")
    return media


async def read_document(request: Request) -> Any:
    """The parsed body: JSON when the Content-Type says so, else YAML (which also reads JSON)."""
    media = require_document_type(request)
    raw = await request.body()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigSyntaxError(f"body is not UTF-8: {exc}") from None
    if media != "application/json":
        return load_yaml(text)
    return load_json(text)


async def read_mapping(request: Request, what: str) -> dict[str, Any]:
    """A body that must be one JSON/YAML mapping; anything else is malformed (400)."""
    data = await read_document(request)
    if not isinstance(data, dict):
        got = "an empty body" if data is None else f"a {type(data).__name__}"
        raise ConfigSyntaxError(f"the body must be a mapping ({what}), got {got}")
    return data
