"""What a process says at start about the Redis its settings name, against real redis-servers: one
TLS-only with an ACL user, one plain. Problems of access are named with their fix; a Redis that does
not answer is not one (the process starts and waits for it)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from shared.keys import Keys
from shared.records import Health, TaskRecord, TaskState
from shared.redis_access import access_problem, check_access
from shared.settings import SettingError
from shared.storage import Store, schema
from shared.storage.connection import connect
from tests.conftest import RedisServer
from tests.support.procs import ROOT, VENV_BIN, free_port, wait_for


def openssl(*argv: str, cwd: Path) -> None:
    subprocess.run(["openssl", *argv], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, int, Path]]:
    """(TLS port, plain port, the CA that signed the TLS server's certificate)."""
    tls = tmp_path_factory.mktemp("redis-tls")
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test CA", "-keyout",
            "ca.key", "-out", "ca.crt", cwd=tls)
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=redis", "-keyout", "redis.key", "-out", "redis.csr",
            cwd=tls)
    (tls / "san.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", "redis.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2",
            "-extfile", "san.cnf", "-out", "redis.crt", cwd=tls)
    tls_port, plain_port = free_port(), free_port()
    (tls / "redis.conf").write_text(
        f"bind 127.0.0.1\nport 0\ntls-port {tls_port}\ntls-cert-file {tls}/redis.crt\ntls-key-file {tls}/redis.key\n"
        f"tls-ca-cert-file {tls}/ca.crt\ntls-auth-clients no\nsave \"\"\nappendonly no\n"
        "user default off\nuser gorchester on >s3cret ~* &* +@all\n"
    )
    procs = [
        subprocess.Popen(["redis-server", str(tls / "redis.conf")], cwd=tls, stdout=subprocess.DEVNULL),
        subprocess.Popen(["redis-server", "--port", str(plain_port), "--bind", "127.0.0.1", "--save", "",
                          "--requirepass", "plain-pw"], cwd=tls, stdout=subprocess.DEVNULL),
    ]
    try:
        good = f"rediss://gorchester:s3cret@127.0.0.1:{tls_port}/0?ssl_ca_certs={tls}/ca.crt"
        wait_for(lambda: redis.Redis.from_url(good).ping(), timeout=10, what="the TLS redis-server")
        wait_for(lambda: redis.Redis(port=plain_port, password="plain-pw").ping(), timeout=10, what="the plain one")
        yield tls_port, plain_port, tls / "ca.crt"
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def problem(url: str) -> str | None:
    try:
        redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5).ping()
    except redis.RedisError as exc:
        return access_problem(url, exc)
    return "answered"


def test_each_problem_of_access_is_named_with_its_fix(servers: tuple[int, int, Path]) -> None:
    tls, plain, ca = servers
    cases = {
        f"rediss://gorchester:s3cret@127.0.0.1:{tls}/0?ssl_ca_certs={ca}": "answered",
        f"rediss://gorchester:wrong@127.0.0.1:{tls}/0?ssl_ca_certs={ca}": "refused user 'gorchester' with a password",
        f"rediss://127.0.0.1:{tls}/0?ssl_ca_certs={ca}": "refused the default user with no password",
        f"redis://gorchester:s3cret@127.0.0.1:{tls}/0": "serves TLS on that port (tls-port); use rediss://",
        f"rediss://gorchester:s3cret@127.0.0.1:{tls}/0": "its TLS certificate is not trusted",
        f"rediss://:plain-pw@127.0.0.1:{plain}/0": "gave no TLS handshake within 5s: it serves plain Redis",
        f"redis://:wrong@127.0.0.1:{plain}/0": "refused the default user with a password",
    }
    for url, expected in cases.items():
        found = problem(url)
        assert found is not None and expected in found, (url, found)


def test_a_redis_that_does_not_answer_is_waited_for_not_refused(servers: tuple[int, int, Path]) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    assert problem(url) is None
    check_access(url, "c", "test")  # logs, does not raise
    with pytest.raises(SettingError, match="^scheduler: GORCHESTER_REDIS_URL: redis at 127.0.0.1"):
        check_access(f"redis://:wrong@127.0.0.1:{servers[1]}/0", "c", "scheduler")


def test_a_cluster_is_marked_with_its_layout_version_and_another_version_refused(
    redis_server: RedisServer, cluster: str
) -> None:
    """A cluster's first process marks its data with the layout version (shared/storage/schema.py); processes of
    the same version start; data of another version (a newer gorchester's, or not gorchester's) stops
    every process at start, naming both versions."""
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    keys = Keys(cluster)
    try:
        check_access(redis_server.url, cluster, "api")
        assert client.get(keys.schema) == str(schema.VERSION)
        check_access(redis_server.url, cluster, "scheduler")  # the same version: starts
        client.set(keys.schema, schema.VERSION + 1)
        with pytest.raises(SettingError, match=rf"^scheduler: cluster '{cluster}' keeps its data in Redis layout "
                                               rf"version '{schema.VERSION + 1}'.*upgrade gorchester"):
            check_access(redis_server.url, cluster, "scheduler")
        client.set(keys.schema, "x" * 100)
        with pytest.raises(SettingError, match="not written by gorchester"):
            check_access(redis_server.url, cluster, "node agent")
    finally:
        client.delete(keys.schema)
        client.close()


def test_a_scheduler_on_data_of_another_layout_exits_saying_so(
    redis_server: RedisServer, cluster: str, tmp_path: Path
) -> None:
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    keys = Keys(cluster)
    client.set(keys.schema, schema.VERSION + 1)
    try:
        env = {**os.environ, "GORCHESTER_REDIS_URL": redis_server.url, "GORCHESTER_CLUSTER": cluster}
        done = subprocess.run([str(VENV_BIN / "python"), "-m", "scheduler"], env=env, capture_output=True, text=True,
                              timeout=60, cwd=ROOT)
        assert done.returncode != 0
        assert f"layout version '{schema.VERSION + 1}'" in done.stderr, done.stderr[-2000:]
    finally:
        client.delete(keys.schema)
        client.close()


@pytest.mark.parametrize("marked", [False, True])
def test_data_of_layout_version_1_is_migrated_as_a_process_starts(
    redis_server: RedisServer, cluster: str, marked: bool
) -> None:
    """Version 1 kept each task as one record in `tasks` (and, before versions were kept, no `schema`):
    the first process of version 2 splits each into the scheduler's assignment and its agent's status,
    in one transaction; the tasks read as they did, and a record that could not be read moves as it is."""
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    keys = Keys(cluster)
    running = TaskRecord(id="web.1", service="web", slot=1, gen=2, rev=5, node="n1", state=TaskState.RUNNING,
                         container_id="c1", incarnation="a1", restarts=1, health=Health.HEALTHY)
    pending = TaskRecord(id="web.2", service="web", slot=2, gen=1, state=TaskState.PENDING, reason="no room")
    client.hset(keys.legacy_tasks, mapping={task.id: task.model_dump_json() for task in (running, pending)}
                | {"web.3": "{broken"})
    if marked:
        client.set(keys.schema, 1)
    try:
        check_access(redis_server.url, cluster, "scheduler")
        assert client.get(keys.schema) == str(schema.VERSION) and not client.exists(keys.legacy_tasks)
        store = Store(connect(redis_server.url), cluster)
        read = store.read_tasks()
        assert read.good["web.1"] == running.model_copy(update={"updated_at": read.good["web.1"].updated_at})
        assert (read.good["web.2"].state, read.good["web.2"].reason) == (TaskState.PENDING, "no room")
        assert list(read.unreadable) == ["web.3"]
        assert set(store.node_tasks("n1").good) == {"web.1"}  # indexed under its node
        check_access(redis_server.url, cluster, "api")  # the same version now: nothing more to do
    finally:
        client.delete(keys.schema, keys.legacy_tasks, keys.assignments, keys.statuses, keys.node_tasks("n1"),
                      keys.changelog)
        client.close()


def test_data_of_layout_version_2_is_migrated_to_the_change_log(redis_server: RedisServer, cluster: str) -> None:
    """Version 2 kept a revision token; the first process of version 3 drops it and starts the change log
    with an entry that says `all`, so a copy made before reads everything once."""
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    keys = Keys(cluster)
    client.set(keys.schema, 2)
    client.set(keys.legacy_revision, "a-token")
    try:
        check_access(redis_server.url, cluster, "api")
        assert client.get(keys.schema) == str(schema.VERSION) and not client.exists(keys.legacy_revision)
        assert [fields for _, fields in client.xrange(keys.changelog)] == [{"all": "1"}]
        check_access(redis_server.url, cluster, "scheduler")  # the same version now: nothing more to do
        assert client.xlen(keys.changelog) == 1
    finally:
        client.delete(keys.schema, keys.changelog)
        client.close()
