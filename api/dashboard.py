"""The dashboard at `/ui`: static HTML, JS and CSS (api/ui/) that poll the /v1 API from the browser.

The files hold no cluster data, so they are served without a token (api/auth.py); the page sends
the token the user types in with every /v1 request.
"""

from __future__ import annotations

from pathlib import Path

from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

UI_DIR = Path(__file__).resolve().parent / "ui"

MOUNT = Mount("/ui", app=StaticFiles(directory=UI_DIR, html=True), name="ui")
