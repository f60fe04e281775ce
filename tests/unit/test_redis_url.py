"""The one Redis URL: a server, or a master that sentinels name."""

from __future__ import annotations

import pytest

from shared.redis_url import RedisUrlError, SentinelTarget, describe, hosts, sentinel_target
from shared.settings import with_password, without_password


def test_a_sentinel_url_names_its_sentinels_master_and_db() -> None:
    url = "rediss+sentinel://gorchester:p%40ss@10.0.0.11:26379,10.0.0.12,[::1]:26380/gorchester/2?ssl_ca_certs=/ca"
    assert sentinel_target(url) == SentinelTarget(
        sentinels=(("10.0.0.11", 26379), ("10.0.0.12", 26379), ("::1", 26380)), master="gorchester", db=2,
        username="gorchester", password="p@ss", tls=True, options=(("ssl_ca_certs", "/ca"),),
    )
    assert sentinel_target(url).connection_kwargs() == {"password": "p@ss", "ssl": True, "ssl_ca_certs": "/ca"}
    assert hosts(url) == ["10.0.0.11", "10.0.0.12", "::1"]
    assert describe(url) == "master 'gorchester' of sentinels 10.0.0.11:26379, 10.0.0.12:26379, ::1:26380"


def test_the_password_file_and_printing_work_on_sentinel_urls() -> None:
    url = with_password("redis+sentinel://127.0.0.1:26379,127.0.0.1:26380/m", "s3cret")
    assert url == "redis+sentinel://:s3cret@127.0.0.1:26379,127.0.0.1:26380/m"
    assert sentinel_target(url).password == "s3cret" and sentinel_target(url).db == 0
    assert without_password(url) == "redis+sentinel://:***@127.0.0.1:26379,127.0.0.1:26380/m"


def test_other_urls_are_one_server() -> None:
    assert sentinel_target("rediss://u:p@10.0.0.11:6379/0") is None
    assert hosts("rediss://u:p@10.0.0.11:6379/0") == ["10.0.0.11"]
    assert describe("redis://h/0") == "redis at h:6379"


@pytest.mark.parametrize("url", ["redis+sentinel:///m", "redis+sentinel://h:1/", "redis+sentinel://h:0/m",
                                 "redis+sentinel://h:1/m/x", "redis+sentinel://h:1/m/0/extra"])
def test_a_sentinel_url_without_sentinels_or_master_is_refused(url: str) -> None:
    with pytest.raises(RedisUrlError):
        sentinel_target(url)
