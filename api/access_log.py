"""The API's access log: one line per HTTP request, in the processes' format (shared/process_logs.py).

The app writes it rather than uvicorn (whose `uvicorn.access` logger is silenced by `configure`): uvicorn's
line has no duration, its values are positional rather than fields, and it carries the query string, which
is no place for secrets but may still hold one a client put there. This line names the path alone, never a
header (so never the Authorization one).
"""

from __future__ import annotations

import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.process_logs import fields

log = logging.getLogger("gorchester.api.access")


class AccessLog:
    """ASGI middleware: a `request` line with method, path, status, duration_ms and client as fields."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = {"code": 500}  # what the client gets when the app raises before answering

        async def record_status(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record_status)
        finally:
            client = scope.get("client")
            log.info(
                "request",
                extra=fields(
                    method=scope["method"], path=scope["path"], status=status["code"],
                    duration_ms=round((time.perf_counter() - started) * 1000, 1),
                    client=client[0] if client else None,
                ),
            )
