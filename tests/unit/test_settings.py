"""Settings from the environment: host access and the Redis password (URL or file)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import redis

from shared.hostaccess import HostAccess
from shared.settings import Settings, redis_url_from_env, with_password, without_password


def test_nothing_of_the_host_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GORCHESTER_ALLOWED_HOST_PATHS", raising=False)
    monkeypatch.delenv("GORCHESTER_ALLOW_HOST_NETWORK", raising=False)
    assert Settings.from_env().host_access == HostAccess(allowed_paths=(), host_network=False)


def test_allowed_host_paths_are_normalised(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GORCHESTER_ALLOWED_HOST_PATHS", " /srv/data/ , //opt/./x,,/")
    monkeypatch.setenv("GORCHESTER_ALLOW_HOST_NETWORK", "TRUE")
    assert Settings.from_env().host_access == HostAccess(allowed_paths=("/srv/data", "/opt/x", "/"), host_network=True)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("GORCHESTER_ALLOWED_HOST_PATHS", "srv/data", "GORCHESTER_ALLOWED_HOST_PATHS: 'srv/data' must be an absolute"),
        ("GORCHESTER_ALLOWED_HOST_PATHS", "/srv/../etc", "GORCHESTER_ALLOWED_HOST_PATHS: '/srv/../etc' must be an"),
        ("GORCHESTER_ALLOW_HOST_NETWORK", "maybe", "GORCHESTER_ALLOW_HOST_NETWORK: must be true or false"),
    ],
)
def test_bad_host_access_settings_stop_the_process_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as stopped:
        Settings.from_env()
    assert str(stopped.value).startswith(message)


def test_the_password_file_puts_its_first_line_into_the_url(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text("p@ss:w/rd\nignored\n")
    monkeypatch.setenv("GORCHESTER_REDIS_URL", "redis://:old@127.0.0.1:6380/2")
    monkeypatch.setenv("GORCHESTER_REDIS_PASSWORD_FILE", str(secret))
    url = Settings.from_env().redis_url
    assert redis.connection.parse_url(url) == {"password": "p@ss:w/rd", "host": "127.0.0.1", "port": 6380, "db": 2}
    assert "p@ss" not in repr(Settings.from_env())


def test_without_a_password_file_the_url_is_used_as_given() -> None:
    assert redis_url_from_env({"GORCHESTER_REDIS_URL": "redis://:pw@h:1/0"}) == "redis://:pw@h:1/0"
    assert redis_url_from_env({}) == "redis://127.0.0.1:6379/0"


@pytest.mark.parametrize("content", [None, "", "\n  \n"])
def test_an_unreadable_or_empty_password_file_stops_the_process(tmp_path: Path, content: str | None) -> None:
    secret = tmp_path / "password"
    if content is not None:
        secret.write_text(content)
    with pytest.raises(SystemExit) as stopped:
        redis_url_from_env({"GORCHESTER_REDIS_PASSWORD_FILE": str(secret)})
    expected = "cannot read" if content is None else f"{secret} is empty"
    assert str(stopped.value).startswith(f"GORCHESTER_REDIS_PASSWORD_FILE: {expected}")


def test_urls_with_and_without_passwords() -> None:
    assert with_password("redis://127.0.0.1:6379/0", "a b/c") == "redis://:a%20b%2Fc@127.0.0.1:6379/0"
    assert with_password("redis://user:old@[::1]:7/1", "x") == "redis://user:x@[::1]:7/1"
    assert without_password("redis://user:secret@h:1/0") == "redis://user:***@h:1/0"
    assert without_password("redis://h:1/0") == "redis://h:1/0"


def test_a_tls_url_keeps_its_user_and_ca_beside_the_password_file(tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text("s3cret\n")
    url = redis_url_from_env({"GORCHESTER_REDIS_URL": "rediss://gorchester@10.0.0.11:6379/0?ssl_ca_certs=/ca.crt",
                              "GORCHESTER_REDIS_PASSWORD_FILE": str(secret)})
    assert url == "rediss://gorchester:s3cret@10.0.0.11:6379/0?ssl_ca_certs=/ca.crt"
    assert redis.connection.parse_url(url)["ssl_ca_certs"] == "/ca.crt"


@pytest.mark.parametrize(
    ("url", "message"),
    [("http://10.0.0.11:6379/0", "must start redis://, rediss:// (TLS), redis+sentinel://, rediss+sentinel:// or "
      "unix://, got 'http'"),
     ("redis://10.0.0.11:6379/0?ssl_ca_certs=/ca.crt", "ssl_ca_certs are TLS options: use rediss://"),
     ("redis+sentinel://10.0.0.11:26379/", "a sentinel URL ends /MASTER or /MASTER/DB"),
     ("redis+sentinel://10.0.0.11:port/gorchester", "'10.0.0.11:port' is not HOST:PORT of a sentinel")],
)
def test_a_url_that_cannot_work_stops_the_process(url: str, message: str) -> None:
    with pytest.raises(SystemExit, match=re.escape(f"GORCHESTER_REDIS_URL: {message}")):
        redis_url_from_env({"GORCHESTER_REDIS_URL": url})
