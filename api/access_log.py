"""The API's access log: one line per HTTP request, in the processes' format (shared/process_logs.py).

The app writes it rather than uvicorn (whose `uvicorn.access` logger is silenced by `configure`): uvicorn's
line has no duration, its values are positional rather than fields, and it carries the query string, which
is no place for secrets but may still hold one a client put there. This line names the path alone, never a
header (so never the Authorization one).
"""

from __future__ import annotations

import logging

from starlette.types import Scope

from api.observed import ObservedRequests
from shared.process_logs import fields

log = logging.getLogger("gorchester.api.access")


class AccessLog(ObservedRequests):
    """A `request` line with method, path, status, duration_ms and client as fields."""

    def observe(self, scope: Scope, status: int, seconds: float) -> None:
        client = scope.get("client")
        log.info(
            "request",
            extra=fields(
                method=scope["method"], path=scope["path"], status=status, duration_ms=round(seconds * 1000, 1),
                client=client[0] if client else None,
            ),
        )
