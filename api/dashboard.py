"""The dashboard at `/ui`: static HTML, JS and CSS (api/ui/) that poll the /v1 API from the browser.

The files hold no cluster data, so they are served without a token (api/auth.py); the page sends
the token the user types in with every /v1 request. They are read once, when the API starts, and
served from memory on the event loop: no file I/O and no thread per request, so the dashboard
loads even while every worker thread waits on a hanging Redis.
"""

from __future__ import annotations

import hashlib
import mimetypes
from dataclasses import dataclass
from pathlib import Path

from starlette.responses import PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.types import Receive, Scope, Send

UI_DIR = Path(__file__).resolve().parent / "ui"
INDEX = "index.html"
ALLOW = "GET, HEAD, OPTIONS"
# The page loads only its own files and talks only to this API: no inline script or style (app.js sets
# widths through the CSSOM, which this allows), no other origin, no framing.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
       "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


@dataclass(frozen=True)
class StaticFile:
    body: bytes
    media_type: str
    etag: str


def load(directory: Path) -> dict[str, StaticFile]:
    """Every file directly in `directory`, by name."""
    files = {}
    for path in sorted(directory.iterdir()):
        if path.is_file():
            body = path.read_bytes()
            media = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
            if media.startswith("text/") or media in ("application/javascript", "text/javascript"):
                media += "; charset=utf-8"
            files[path.name] = StaticFile(body, media, f'"{hashlib.sha256(body).hexdigest()[:32]}"')
    return files


class Dashboard:
    """An ASGI app serving `files` by name; `/` is the index."""

    def __init__(self, files: dict[str, StaticFile]) -> None:
        self.files = files

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = scope["method"]
        if method == "OPTIONS":
            response: Response = Response(status_code=204, headers={"Allow": ALLOW})
        elif method not in ("GET", "HEAD"):
            response = PlainTextResponse("Method Not Allowed", status_code=405, headers={"Allow": ALLOW})
        else:
            response = self.file(scope)
        await response(scope, receive, send)

    def file(self, scope: Scope) -> Response:
        name = scope["path"][len(scope.get("root_path", "")):].lstrip("/") or INDEX
        return self.serve(scope, name)

    def serve(self, scope: Scope, name: str) -> Response:
        found = self.files.get(name)
        if found is None:
            return PlainTextResponse("Not Found", status_code=404)
        headers = {
            "ETag": found.etag, "Cache-Control": "no-cache", "Content-Security-Policy": CSP,
            "X-Content-Type-Options": "nosniff",
        }
        if found.etag in _if_none_match(scope):
            return Response(status_code=304, headers=headers)
        return Response(found.body, media_type=found.media_type, headers=headers)


def _if_none_match(scope: Scope) -> list[str]:
    for name, value in scope.get("headers", []):
        if name == b"if-none-match":
            return [tag.strip() for tag in value.decode("latin-1").split(",")]
    return []


class Favicon:
    """`/favicon.ico`, which browsers ask for at the root whatever the page says: the dashboard's SVG icon."""

    def __init__(self, dashboard: Dashboard) -> None:
        self.dashboard = dashboard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] in ("GET", "HEAD"):
            response = self.dashboard.serve(scope, FAVICON)
        else:
            response = PlainTextResponse("Method Not Allowed", status_code=405, headers={"Allow": "GET, HEAD"})
        await response(scope, receive, send)


FAVICON = "favicon.svg"
DASHBOARD = Dashboard(load(UI_DIR))
MOUNT = Mount("/ui", app=DASHBOARD, name="ui")
FAVICON_ROUTE = Route("/favicon.ico", Favicon(DASHBOARD), name="favicon")
