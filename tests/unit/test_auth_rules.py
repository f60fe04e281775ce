"""Token loading and the authentication rules, without Redis: a tiny app behind the Auth middleware."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from api.auth import Auth, Role, TokenError, Tokens, bearer, is_loopback, is_open

ADMIN, READ = "admin-secret-1", "read-secret-2"


def tiny_app(tokens: Tokens) -> Starlette:
    async def ok(_: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[dict]:
        yield {"tokens": tokens}

    routes = [Route(path, ok, methods=["GET", "POST", "DELETE"]) for path in ("/v1/services", "/v1/health")]
    return Starlette(routes=routes, middleware=[Middleware(Auth)], lifespan=lifespan)


def client(tokens: Tokens, host: str = "testclient") -> TestClient:
    return TestClient(tiny_app(tokens), client=(host, 50000))


def test_tokens_from_env_and_files(tmp_path: Path) -> None:
    path = tmp_path / "read"
    path.write_text(f"{READ}\nignored second line\n")
    tokens = Tokens.from_env({"GORCHESTER_ADMIN_TOKEN": ADMIN, "GORCHESTER_READ_TOKEN_FILE": str(path)})
    assert (tokens.admin, tokens.read) == (ADMIN, READ)
    assert ADMIN not in repr(tokens) and READ not in repr(tokens)
    assert ADMIN not in tokens.describe()
    assert not Tokens.from_env({}).enabled


@pytest.mark.parametrize(
    "env, message",
    [
        ({"GORCHESTER_ADMIN_TOKEN": "a", "GORCHESTER_ADMIN_TOKEN_FILE": "/x"}, "both set"),
        ({"GORCHESTER_READ_TOKEN_FILE": "/nonexistent/token"}, "cannot read"),
    ],
)
def test_unusable_token_settings_refuse_to_start(env: dict[str, str], message: str) -> None:
    with pytest.raises(TokenError, match=message):
        Tokens.from_env(env)


def test_empty_token_file_refuses_to_start(tmp_path: Path) -> None:
    (tmp_path / "t").write_text("\n")
    with pytest.raises(TokenError, match="empty"):
        Tokens.from_env({"GORCHESTER_ADMIN_TOKEN_FILE": str(tmp_path / "t")})


def test_roles() -> None:
    tokens = Tokens(admin=ADMIN, read=READ)
    assert tokens.role_of(ADMIN) is Role.ADMIN
    assert tokens.role_of(READ) is Role.READ
    assert tokens.role_of("nope") is None
    assert tokens.role_of("") is None
    assert Tokens(read=READ).role_of(ADMIN) is None


def test_helpers() -> None:
    assert bearer("Bearer abc") == "abc"
    assert bearer("bearer  abc ") == "abc"
    assert bearer("Basic abc") is None
    assert bearer("Bearer ") is None
    assert all(is_loopback(host) for host in ("127.0.0.1", "127.5.0.2", "::1", "testclient", None))
    assert not any(is_loopback(host) for host in ("10.0.0.5", "192.168.1.1", "example.com"))
    assert is_open("/v1/health") and is_open("/ui/") and is_open("/ui/app.js") and is_open("/v1/openapi.json")
    assert not is_open("/v1/services") and not is_open("/uix")


def test_tokens_required_when_configured() -> None:
    with client(Tokens(admin=ADMIN, read=READ)) as api:
        missing = api.get("/v1/services")
        assert missing.status_code == 401
        assert missing.headers["www-authenticate"].startswith("Bearer")
        assert missing.json()["error"] == "unauthorized"
        assert api.get("/v1/services", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert api.get("/v1/services", headers={"Authorization": f"Basic {ADMIN}"}).status_code == 401
        read = {"Authorization": f"Bearer {READ}"}
        admin = {"Authorization": f"Bearer {ADMIN}"}
        assert api.get("/v1/services", headers=read).status_code == 200
        assert api.get("/v1/services", headers=admin).status_code == 200
        refused = api.post("/v1/services", headers=read)
        assert refused.status_code == 403
        assert "read-only" in refused.json()["message"]
        assert api.delete("/v1/services", headers=read).status_code == 403
        assert api.post("/v1/services", headers=admin).status_code == 200
        assert api.get("/v1/health").status_code == 200


def test_without_tokens_only_loopback_is_served() -> None:
    with client(Tokens(), host="127.0.0.1") as local:
        assert local.post("/v1/services").status_code == 200
    with client(Tokens(), host="10.1.2.3") as remote:
        refused = remote.get("/v1/services")
        assert refused.status_code == 403
        assert "loopback" in refused.json()["message"]
        assert remote.get("/v1/health").status_code == 200


def test_tokens_apply_to_remote_and_loopback_alike() -> None:
    with client(Tokens(admin=ADMIN), host="10.1.2.3") as remote:
        assert remote.get("/v1/services").status_code == 401
        assert remote.get("/v1/services", headers={"Authorization": f"Bearer {ADMIN}"}).status_code == 200
    with client(Tokens(admin=ADMIN), host="127.0.0.1") as local:
        assert local.get("/v1/services").status_code == 401
