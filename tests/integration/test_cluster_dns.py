"""The cluster DNS for real (worker/dns.py): bound to a loopback address, answering from records
written through the store to a real redis-server, forwarding to a resolver the test runs, queried
with dnspython from the loopback addresses the test's replicas are given."""

from __future__ import annotations

import contextlib
import socket
import socketserver
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import dns.rrset
import httpx
import pytest

from shared.config import ServiceSpec
from shared.records import Health, ServiceRecord, TaskRecord, TaskState
from shared.storage import Store
from shared.storage.connection import connect
from tests.conftest import RedisServer
from tests.support.procs import Processes, free_port, wait_for
from tests.support.tasks import seed
from worker import discovery_view
from worker import dns as cluster_dns
from worker.dns import ClusterDns, Upstream

HOST = "127.0.53.1"  # where the DNS listens
ASKER = "127.0.53.2"  # an address no replica has: the host, say
EXAMPLE = "example.test."  # the only name the test's upstream resolver has
EXAMPLE_ADDRESS = "192.0.2.1"
BOUND = 2.0  # DEFAULT_DNS_UPSTREAM_TIMEOUT, and how soon names follow replicas
CHECK = {"http_path": "/health", "port": 80, "interval": 1}


class StubUpstream:
    """A resolver of the test's own on UDP and TCP: EXAMPLE has an A record, every other name is
    NXDOMAIN. `asked` lists the names it was asked, in order."""

    def __init__(self, host: str = "127.0.53.3") -> None:
        self.asked: list[str] = []
        answer = self._answer

        class Datagram(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                data, sock = self.request
                sock.sendto(answer(data), self.client_address)

        class Stream(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                size = int.from_bytes(self.rfile.read(2), "big")
                reply = answer(self.rfile.read(size))
                self.wfile.write(len(reply).to_bytes(2, "big") + reply)

        # One port for both: the UDP one the kernel picks may be taken for TCP (a socket of an earlier
        # test in TIME_WAIT, once a CI failure), so another is tried then.
        for _ in range(20):
            self.udp = socketserver.ThreadingUDPServer((host, 0), Datagram)
            try:
                self.tcp = socketserver.ThreadingTCPServer((host, self.udp.server_address[1]), Stream)
                break
            except OSError:
                self.udp.server_close()
        else:
            raise AssertionError(f"no port on {host} free for both UDP and TCP")
        self.address: Upstream = (host, self.udp.server_address[1])
        for server in (self.udp, self.tcp):
            server.daemon_threads = True
            threading.Thread(target=server.serve_forever, daemon=True).start()

    def _answer(self, wire: bytes) -> bytes:
        query = dns.message.from_wire(wire)
        question = query.question[0]
        self.asked.append(question.name.to_text())
        response = dns.message.make_response(query)
        if question.name.to_text().lower() == EXAMPLE and question.rdtype == dns.rdatatype.A:
            response.answer.append(dns.rrset.from_text(question.name, 60, "IN", "A", EXAMPLE_ADDRESS))
        else:
            response.set_rcode(dns.rcode.NXDOMAIN)
        return response.to_wire()

    def close(self) -> None:
        for server in (self.udp, self.tcp):
            server.shutdown()
            server.server_close()


class SilentUpstream:
    """A resolver that never answers: a bound UDP socket never read, a TCP port never accepted on.
    `received()` counts the queries that reached it."""

    def __init__(self, host: str = "127.0.53.4") -> None:
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind((host, 0))
        self.tcp = socket.socket()
        self.tcp.bind((host, self.udp.getsockname()[1]))
        self.tcp.listen(8)
        self.address: Upstream = (host, self.udp.getsockname()[1])

    def received(self) -> int:
        self.udp.setblocking(False)
        count = 0
        while True:
            try:
                self.udp.recv(4096)
            except BlockingIOError:
                return count
            count += 1

    def close(self) -> None:
        self.udp.close()
        self.tcp.close()


@pytest.fixture
def upstream() -> Iterator[StubUpstream]:
    stub = StubUpstream()
    yield stub
    stub.close()


@pytest.fixture
def silent() -> Iterator[SilentUpstream]:
    quiet = SilentUpstream()
    yield quiet
    quiet.close()


class Servers:
    """ClusterDns servers on HOST, each run by a thread of its own; all are stopped after the test."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.running: dict[int, tuple[threading.Event, threading.Thread]] = {}

    def start(self, upstreams: list[Upstream], port: int | None = None, on: Store | None = None,
              wait: bool = True) -> ClusterDns:
        server = ClusterDns(HOST, on or self.store, upstreams, port or free_port(HOST))
        stop = threading.Event()
        thread = threading.Thread(target=server.run, args=(stop,), daemon=True)
        thread.start()
        self.running[id(server)] = (stop, thread)
        wait_for(server.view.loaded.is_set, timeout=10, what="the DNS to read the records")
        if wait:
            wait_for(server.serving.is_set, timeout=10, what="the DNS to bind")
        return server

    def stop(self, server: ClusterDns) -> None:
        stop, thread = self.running.pop(id(server))
        stop.set()
        thread.join(timeout=10)
        assert not thread.is_alive()

    def close(self) -> None:
        for stop, _ in self.running.values():
            stop.set()
        for _, thread in self.running.values():
            thread.join(timeout=10)


@pytest.fixture
def servers(store: Store) -> Iterator[Servers]:
    started = Servers(store)
    yield started
    started.close()


# -- records ------------------------------------------------------------------------------------


def put_service(store: Store, name: str, network: str | None = "backend", **fields: Any) -> ServiceRecord:
    spec = ServiceSpec.model_validate(
        {"service_name": name, "image": "img", "replicas": 3, **({"network": network} if network else {}), **fields}
    )
    record, _ = store.update_service(spec, time.time(), create=True)
    return record


def put_task(store: Store, record: ServiceRecord, slot: int, address: str | None,
             state: TaskState = TaskState.RUNNING, health: Health = Health.NONE) -> None:
    task_id = f"{record.name}.{slot}"
    task = TaskRecord(id=task_id, service=record.name, slot=slot, state=state, health=health, node="node-1",
                      template=record.template_hash(), address=address)
    seed(store, [task])


def sample_cluster(store: Store) -> dict[str, ServiceRecord]:
    """web (3 replicas, 2 ready) and client on `backend`, other on `frontend`."""
    web, client = put_service(store, "web"), put_service(store, "client")
    other = put_service(store, "other", "frontend")
    put_task(store, web, 1, "127.0.54.11")
    put_task(store, web, 2, "127.0.54.12")
    put_task(store, web, 3, "127.0.54.13", state=TaskState.STARTING)
    put_task(store, client, 1, "127.0.54.21")
    put_task(store, other, 1, "127.0.54.31")
    return {"web": web, "client": client, "other": other}


# -- queries ------------------------------------------------------------------------------------


def ask(server: ClusterDns, name: str, rdtype: str = "A", source: str = ASKER, tcp: bool = False,
        **options: Any) -> dns.message.Message:
    query = dns.message.make_query(name, rdtype, **options)
    how = dns.query.tcp if tcp else dns.query.udp
    response = how(query, server.address, timeout=5, port=server.port, source=source)
    assert response.id == query.id
    return response


def addresses(response: dns.message.Message) -> set[str]:
    return {rdata.address for rrset in response.answer for rdata in rrset}


def served(server: ClusterDns, name: str, source: str = ASKER) -> set[str] | None:
    """The addresses answered for a name, None when the answer was not the cluster's own."""
    response = ask(server, name, source=source)
    return addresses(response) if response.flags & dns.flags.AA else None


# -- tests --------------------------------------------------------------------------------------


def test_cluster_names_are_answered_by_the_askers_network(store: Store, servers: Servers, upstream: StubUpstream):
    sample_cluster(store)
    server = servers.start([upstream.address])
    response = ask(server, "web", source="127.0.54.21")
    assert response.rcode() == dns.rcode.NOERROR and response.flags & dns.flags.AA
    assert addresses(response) == {"127.0.54.11", "127.0.54.12"}
    assert {rrset.ttl for rrset in response.answer} == {1}
    assert served(server, "WEB.backend.", source="127.0.54.21") == {"127.0.54.11", "127.0.54.12"}
    assert served(server, "web.backend") == {"127.0.54.11", "127.0.54.12"}  # any asker: qualified names
    assert served(server, "other.frontend") == {"127.0.54.31"}
    assert upstream.asked == []

    # Not ours for that asker: forwarded (the upstream knows no such name).
    for name, source in [("web", ASKER), ("other", "127.0.54.21"), ("other.frontend", "127.0.54.21"),
                         ("web.frontend", ASKER), ("nope.backend", ASKER)]:
        response = ask(server, name, source=source)
        assert response.rcode() == dns.rcode.NXDOMAIN and not response.flags & dns.flags.AA, (name, source)
    assert len(upstream.asked) == 5


def test_other_types_of_cluster_names_have_no_record(store: Store, servers: Servers, upstream: StubUpstream):
    sample_cluster(store)
    server = servers.start([upstream.address])
    for rdtype in ("AAAA", "MX", "TXT"):
        response = ask(server, "web.backend", rdtype)
        assert response.rcode() == dns.rcode.NOERROR and response.answer == [], rdtype
        assert response.flags & dns.flags.AA
    assert upstream.asked == []
    put_service(store, "idle")  # a service of ours with no ready replica: no address, not NXDOMAIN
    wait_for(lambda: served(server, "idle.backend") == set(), timeout=BOUND, what="idle to be answered")
    upstream.asked.clear()  # it was forwarded until the view had it
    response = ask(server, "idle.backend")
    assert response.rcode() == dns.rcode.NOERROR and response.answer == [] and upstream.asked == []


def test_other_names_are_forwarded_over_udp_and_tcp(store: Store, servers: Servers, upstream: StubUpstream):
    server = servers.start([upstream.address])
    for tcp in (False, True):
        response = ask(server, EXAMPLE, tcp=tcp)
        assert response.rcode() == dns.rcode.NOERROR and addresses(response) == {EXAMPLE_ADDRESS}
        assert ask(server, "missing.test", tcp=tcp).rcode() == dns.rcode.NXDOMAIN
    assert ask(server, EXAMPLE, use_edns=0, payload=4096).rcode() == dns.rcode.NOERROR
    assert upstream.asked == [EXAMPLE, "missing.test.", EXAMPLE, "missing.test.", EXAMPLE]


def test_without_an_answering_upstream_the_answer_is_servfail_within_the_bound(
    store: Store, servers: Servers, upstream: StubUpstream, silent: SilentUpstream
):
    closed = (HOST, free_port(HOST))  # nothing listens there
    for upstreams in ([silent.address], [closed], [closed, silent.address], []):
        server = servers.start(upstreams)
        for tcp in (False, True):
            started = time.monotonic()
            assert ask(server, EXAMPLE, tcp=tcp).rcode() == dns.rcode.SERVFAIL, (upstreams, tcp)
            assert time.monotonic() - started < BOUND + 1.0
    # A silent first upstream: the next one is asked too, and its answer comes within the bound.
    server = servers.start([silent.address, upstream.address])
    started = time.monotonic()
    assert addresses(ask(server, EXAMPLE)) == {EXAMPLE_ADDRESS}
    assert time.monotonic() - started < BOUND


def test_malformed_packets_are_never_a_crash(store: Store, servers: Servers, upstream: StubUpstream):
    sample_cluster(store)
    server = servers.start([upstream.address])
    query = dns.message.make_query("web.backend", "A").to_wire()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((ASKER, 0))
    sock.settimeout(1.0)
    try:
        # A query's header with a question cut short: FORMERR, with the query's id.
        sock.sendto(query[:15], (HOST, server.port))
        reply = dns.message.from_wire(sock.recv(4096))
        assert reply.rcode() == dns.rcode.FORMERR and reply.id == int.from_bytes(query[:2], "big")
        # Trailing junk, two questions, an opcode other than QUERY (STATUS): answered with an error.
        two = dns.message.make_query("web.backend", "A")
        two.question.append(dns.message.make_query("web", "A").question[0])
        for packet, rcode in [(query + b"junk", dns.rcode.FORMERR), (two.to_wire(), dns.rcode.FORMERR),
                              (query[:2] + bytes([query[2] | 0x10]) + query[3:], dns.rcode.NOTIMP)]:
            sock.sendto(packet, (HOST, server.port))
            assert dns.message.from_wire(sock.recv(4096)).rcode() == rcode
        # Too short for a header, or a response: no answer at all.
        for packet in (b"", b"\x01", b"\xff" * 11, query[:2] + bytes([query[2] | 0x80]) + query[3:]):
            sock.sendto(packet, (HOST, server.port))
        with pytest.raises(TimeoutError):
            sock.recv(4096)
    finally:
        sock.close()
    # A TCP client sending a length and then less, or garbage: the server carries on.
    for garbage in (b"\x00\x40abc", b"\x00\x03abc", b"\xff"):
        with socket.create_connection((HOST, server.port), timeout=5) as conn:
            conn.sendall(garbage)
            conn.shutdown(socket.SHUT_WR)
            conn.recv(4096)
    assert served(server, "web.backend") == {"127.0.54.11", "127.0.54.12"}
    assert ask(server, "web.backend", tcp=True).answer
    assert server.serving.is_set()


def test_answers_too_large_for_udp_are_cut_short_and_whole_over_tcp(
    store: Store, servers: Servers, upstream: StubUpstream
):
    many = put_service(store, "many", replicas=60)
    everyone = {f"127.0.55.{slot}" for slot in range(1, 61)}
    for slot in range(1, 61):
        put_task(store, many, slot, f"127.0.55.{slot}")
    server = servers.start([upstream.address])
    wait_for(lambda: len(addresses(ask(server, "many.backend", tcp=True))) == 60, timeout=BOUND, what="60 replicas")
    cut = ask(server, "many.backend")
    assert cut.flags & dns.flags.TC and 0 < len(addresses(cut)) < 60 and addresses(cut) <= everyone
    assert addresses(ask(server, "many.backend", tcp=True)) == everyone
    bigger = ask(server, "many.backend", use_edns=0, payload=4096)  # EDNS: up to 1232 bytes, enough for 60
    assert not bigger.flags & dns.flags.TC and addresses(bigger) == everyone


def test_names_follow_replicas_within_two_seconds(store: Store, servers: Servers, upstream: StubUpstream):
    records = sample_cluster(store)
    server = servers.start([upstream.address])
    web = records["web"]

    def within_bound(change: Callable[[], None], expected: set[str]) -> None:
        started = time.monotonic()
        change()
        wait_for(lambda: served(server, "web.backend") == expected, timeout=BOUND, interval=0.02,
                 what=f"web.backend to be {expected}")
        assert time.monotonic() - started < BOUND

    within_bound(lambda: put_task(store, web, 3, "127.0.54.13"), {"127.0.54.11", "127.0.54.12", "127.0.54.13"})
    within_bound(lambda: put_task(store, web, 1, "127.0.54.11", state=TaskState.STOPPED),
                 {"127.0.54.12", "127.0.54.13"})
    within_bound(lambda: put_task(store, web, 1, "127.0.54.14"), {"127.0.54.12", "127.0.54.13", "127.0.54.14"})


def test_the_order_of_addresses_varies(store: Store, servers: Servers, upstream: StubUpstream):
    many = put_service(store, "many")
    for slot in range(1, 9):
        put_task(store, many, slot, f"127.0.55.{slot}")
    server = servers.start([upstream.address])
    firsts = set()
    for _ in range(40):
        [rrset] = ask(server, "many.backend").answer
        firsts.add(next(iter(rrset)).address)
    assert len(firsts) > 1


def test_endpoints_of_the_api_and_the_dns_agree(
    store: Store, servers: Servers, upstream: StubUpstream, procs: Processes
):
    api = procs.api(free_port())
    web = put_service(store, "web", health_check=CHECK)
    server = servers.start([upstream.address])

    def agree() -> set[str]:
        listed = httpx.get(f"{api}/v1/services/web/endpoints", timeout=5).json()
        from_api = {endpoint["address"] for endpoint in listed if endpoint["network"] == "backend"}
        return from_api if served(server, "web.backend") == from_api else {"disagree"}

    steps: list[tuple[Callable[[], object], set[str]]] = [
        (lambda: None, set()),
        (lambda: put_task(store, web, 1, "127.0.54.11", health=Health.HEALTHY), {"127.0.54.11"}),
        (lambda: put_task(store, web, 2, "127.0.54.12", health=Health.STARTING), {"127.0.54.11"}),
        (lambda: put_task(store, web, 2, "127.0.54.12", health=Health.HEALTHY), {"127.0.54.11", "127.0.54.12"}),
        (lambda: put_task(store, web, 1, "127.0.54.11", health=Health.UNHEALTHY), {"127.0.54.12"}),
        (lambda: store._client.hset(store._keys.assignments, "web.3", "{not a task"), {"127.0.54.12"}),
        (lambda: put_task(store, web, 1, "127.0.54.15", health=Health.HEALTHY), {"127.0.54.12", "127.0.54.15"}),
        (lambda: put_task(store, web, 2, "127.0.54.12", state=TaskState.STOPPED), {"127.0.54.15"}),
        (lambda: store.delete_service("web", time.time()), {"127.0.54.15"}),
    ]
    for change, expected in steps:
        change()
        wait_for(lambda wanted=expected: agree() == wanted, timeout=BOUND + 1,  # type: ignore[misc]
                 what=f"the API and the DNS to agree on {expected}")


def test_answers_outlive_a_redis_restart(tmp_path: Path, cluster: str, servers: Servers, upstream: StubUpstream):
    redis_server = RedisServer(tmp_path)
    redis_server.start()
    try:
        own = Store(connect(redis_server.url), cluster)
        web = put_service(own, "web")
        put_task(own, web, 1, "127.0.54.11")
        server = servers.start([upstream.address], on=own)
        assert served(server, "web.backend") == {"127.0.54.11"}
        redis_server.kill()
        for _ in range(10):  # while Redis is gone: the last view
            assert served(server, "web.backend") == {"127.0.54.11"}
            time.sleep(0.1)
        redis_server.start()
        web = put_service(own, "web")
        put_task(own, web, 1, "127.0.54.12")
        wait_for(lambda: served(server, "web.backend") == {"127.0.54.12"}, timeout=BOUND + discovery_view.MAX_BACKOFF,
                 what="the answer to follow the records again")
    finally:
        redis_server.kill()


def test_a_second_server_on_the_address_takes_over_when_the_first_stops(
    store: Store, servers: Servers, upstream: StubUpstream
):
    sample_cluster(store)
    port = free_port(HOST)
    first = servers.start([upstream.address], port=port)
    second = servers.start([upstream.address], port=port, wait=False)
    assert not second.serving.is_set()  # the address is taken: it tries again every few seconds
    assert served(first, "web.backend") == {"127.0.54.11", "127.0.54.12"}
    servers.stop(first)
    wait_for(second.serving.is_set, timeout=cluster_dns.BIND_RETRY_SECONDS + 2, what="the second server to bind")
    assert served(second, "web.backend") == {"127.0.54.11", "127.0.54.12"}
    assert ask(second, "web.backend", tcp=True).answer


def test_a_flood_is_bounded(store: Store, servers: Servers, silent: SilentUpstream):
    """More queries for names to forward than MAX_FORWARDS at once: the rest are SERVFAIL at once, and
    no thread is started for any."""
    server = servers.start([silent.address])
    threads = threading.active_count()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((ASKER, 0))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    sock.settimeout(BOUND + 2)
    flood = 2 * cluster_dns.MAX_FORWARDS
    rcodes = []
    try:
        started = time.monotonic()
        for i in range(flood):
            sock.sendto(dns.message.make_query(f"flood{i}.test", "A").to_wire(), (HOST, server.port))
            if i % 32 == 31:
                time.sleep(0.01)  # in bursts the server's socket buffer holds (the kernel drops beyond it)
        sent_in = time.monotonic() - started
        assert threading.active_count() == threads
        with contextlib.suppress(TimeoutError):
            while len(rcodes) < flood:
                rcodes.append(dns.message.from_wire(sock.recv(4096)).rcode())
    finally:
        sock.close()
    assert sent_in < BOUND  # so no forward had ended when the last query came: all were at once
    assert len(rcodes) > cluster_dns.MAX_FORWARDS and set(rcodes) == {dns.rcode.SERVFAIL}
    assert silent.received() <= cluster_dns.MAX_FORWARDS
    assert threading.active_count() == threads
