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

from api.auth import Auth, Role, Tokens, bearer, is_loopback, is_open, role_of
from api.origins import OriginPolicy, host_name, normal_origin
from shared.settings import SettingError

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
    with pytest.raises(SettingError, match=message):
        Tokens.from_env(env)


def test_empty_token_file_refuses_to_start(tmp_path: Path) -> None:
    (tmp_path / "t").write_text("\n")
    with pytest.raises(SettingError, match="empty"):
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


def policy_client(tokens: Tokens, policy: OriginPolicy, host: str = "127.0.0.1") -> TestClient:
    async def whoami(request: Request) -> JSONResponse:
        return JSONResponse({"role": role_of(request)})

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[dict]:
        yield {"tokens": tokens, "origins": policy}

    routes = [Route(path, whoami, methods=["GET", "POST"]) for path in ("/v1/services", "/v1/health")]
    app = Starlette(routes=routes, middleware=[Middleware(Auth)], lifespan=lifespan)
    return TestClient(app, base_url="http://127.0.0.1:8080", client=(host, 50000))


def test_role_is_recorded_for_the_endpoints() -> None:
    with policy_client(Tokens(admin=ADMIN, read=READ), OriginPolicy()) as api:
        assert api.get("/v1/services", headers={"Authorization": f"Bearer {READ}"}).json() == {"role": "read"}
        assert api.get("/v1/services", headers={"Authorization": f"Bearer {ADMIN}"}).json() == {"role": "admin"}
    with policy_client(Tokens(), OriginPolicy()) as loopback:
        assert loopback.get("/v1/services").json() == {"role": "admin"}


def test_cross_site_requests_are_refused_naming_the_header() -> None:
    with policy_client(Tokens(), OriginPolicy()) as api:
        assert api.post("/v1/services", headers={"Origin": "http://127.0.0.1:8080"}).status_code == 200
        assert api.post("/v1/services", headers={"Origin": "HTTP://127.0.0.1:8080/"}).status_code == 200
        for origin in ("http://evil.example", "null", "http://127.0.0.1:9090", "https://127.0.0.1:8080"):
            refused = api.post("/v1/services", headers={"Origin": origin})
            assert refused.status_code == 403, origin
            assert refused.json()["message"].startswith("Origin: "), origin
        assert api.get("/v1/health", headers={"Origin": "http://evil.example"}).status_code == 403
        cross = api.post("/v1/services", headers={"Sec-Fetch-Site": "cross-site"})
        assert cross.status_code == 403
        assert cross.json()["message"].startswith("Sec-Fetch-Site: ")
        navigation = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document"}
        assert api.get("/v1/services", headers=navigation).status_code == 200  # a link followed, unreadable
        assert api.post("/v1/services", headers=navigation).status_code == 403
        assert api.get("/v1/services", headers={"Sec-Fetch-Site": "same-origin"}).status_code == 200
    allowed = OriginPolicy.from_env({"GORCHESTER_API_ALLOWED_ORIGINS": "https://ops.example.com:443/, http://x:81"})
    with policy_client(Tokens(), allowed) as api:
        assert api.post("/v1/services", headers={"Origin": "https://ops.example.com"}).status_code == 200
        assert api.post("/v1/services", headers={"Origin": "http://x:81"}).status_code == 200
        assert api.post("/v1/services", headers={"Origin": "http://x"}).status_code == 403


def test_loopback_only_mode_refuses_a_host_that_is_not_loopback_or_the_servers() -> None:
    with policy_client(Tokens(), OriginPolicy()) as api:
        for host in ("localhost:8080", "127.0.0.1:8080", "127.9.9.9", "[::1]:8080", "LOCALHOST"):
            assert api.get("/v1/services", headers={"Host": host}).status_code == 200, host
        for host in ("evil.example", "evil.example:8080", "localhost.evil.example", "10.0.0.1", "testserver", ""):
            refused = api.get("/v1/services", headers={"Host": host})
            assert refused.status_code == 403, host
            assert refused.json()["message"].startswith("Host: "), host
    with policy_client(Tokens(), OriginPolicy.from_env({"GORCHESTER_API_ALLOWED_HOSTS": "gorch.internal"})) as api:
        assert api.get("/v1/services", headers={"Host": "gorch.internal:8080"}).status_code == 200
    with policy_client(Tokens(admin=ADMIN), OriginPolicy()) as api:  # tokens protect; any name may be used
        assert api.get("/v1/health", headers={"Host": "gorch.example.com"}).status_code == 200


def test_the_in_process_test_server_name_is_its_own_listen_address() -> None:
    # Starlette's TestClient calls with Host and server "testserver": accepted as the listen address,
    # which a real server (uvicorn) only ever reports as an IP address.
    with client(Tokens(), host="127.0.0.1") as api:
        assert api.post("/v1/services").status_code == 200
    assert normal_origin("HTTP://Example.COM:80/") == "http://example.com"
    assert normal_origin("https://[::1]:443") == "https://[::1]"
    assert host_name("[::1]:8080") == "::1" and host_name("a.b:1") == "a.b" and host_name("::1") == "::1"
