"""The cluster DNS a node agent serves to its cluster's containers, over UDP and TCP.

A question for a name of the cluster (shared/discovery.py: `<service>` or `<service>.<network>`,
scoped to the asking container's network) is answered from a DiscoveryView of the cluster's
records (worker/discovery_view.py): type A with the addresses of the service's ready replicas, in
a new order per query, with a TTL of DEFAULT_DNS_TTL; any other type has no record (NOERROR, no
answer: the name exists, so an upstream's NXDOMAIN must not be relayed for it). Every other
question is forwarded to the node's own resolvers (tried in turn, each given a share of the bound
before the next is asked too) and answered SERVFAIL when none has answered within
DEFAULT_DNS_UPSTREAM_TIMEOUT.

Whatever a client sends is only that query's problem: a packet that does not parse is answered
FORMERR when it has a query's header, else dropped; a response is never answered. Bounds: at most
MAX_FORWARDS questions forwarded at once (SERVFAIL at once beyond that), MAX_TCP_CLIENTS
connections (closed at once beyond that), each closed after TCP_IDLE_SECONDS without a query or
without reading its answer; answers over UDP fit the client's EDNS size, at most UDP_SIZE_MAX, and
are cut short with TC set beyond it. All of it runs on one event loop in one thread.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import cast

import dns.asyncquery
import dns.entropy
import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from shared import defaults
from shared.storage import AgentStore
from worker.discovery_view import DiscoveryView
from worker.loops import spawn

log = logging.getLogger("rq.worker.gorchester")

Upstream = tuple[str, int]  # a resolver's address and port

MAX_FORWARDS = 256
MAX_TCP_CLIENTS = 64
TCP_IDLE_SECONDS = 10.0
UDP_SIZE_MAX = 1232  # bytes; larger answers risk IP fragments (DNS Flag Day 2020)
TCP_SIZE_MAX = 65535  # bytes: what the length prefix of a message over TCP can say
A_RECORD_BYTES = 16  # an A record after the question: name pointer, type, class, TTL, length, address
BIND_RETRY_SECONDS = 3.0  # the address may be another agent's (sharing this engine) until it dies
STOP_POLL_SECONDS = 0.1
RESOLV_CONF = "/etc/resolv.conf"
OPCODE_BITS = 0x7800  # of a header's flags
RETRY_ELSEWHERE = frozenset({dns.rcode.SERVFAIL, dns.rcode.REFUSED, dns.rcode.NOTIMP})

# What to do with a packet received: send these bytes, forward this query, or nothing (None).
Outcome = bytes | dns.message.Message | None


def resolv_conf_upstreams(text: str, own: Upstream) -> list[Upstream]:
    """The resolvers a resolv.conf names (`nameserver` lines; port 53), without `own`: the server
    never forwards to itself. An address with an IPv6 zone or that is no address is skipped."""
    itself = (_normal(own[0]), own[1])
    result: list[Upstream] = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 2 or fields[0] != "nameserver":
            continue
        upstream = (_normal(fields[1]), 53)
        if upstream[0] and upstream != itself and upstream not in result:
            result.append(upstream)
    return result


def node_upstreams(own: Upstream, path: str = RESOLV_CONF) -> list[Upstream]:
    """The node's own resolvers (from its resolv.conf) but `own`; none when it cannot be read."""
    try:
        text = Path(path).read_text(errors="replace")
    except OSError as exc:
        log.warning("cluster DNS: cannot read %s (%s): names that are not the cluster's go unanswered", path, exc)
        return []
    return resolv_conf_upstreams(text, own)


def _normal(address: str) -> str:
    """An address as ipaddress writes it; "" for one that is not, or has an IPv6 zone (`%eth0`),
    which dnspython cannot send to."""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return ""
    return "" if getattr(parsed, "scope_id", None) else str(parsed)


class ClusterDns:
    """The DNS server of a node agent: `run(stop)` blocks, serving `address`:`port` until `stop` is
    set. When the address cannot be bound (another agent sharing the engine serves it, or the
    network is not there yet) it tries again every BIND_RETRY_SECONDS, so that one takes over when
    the other dies. `serving` is set while it is bound."""

    def __init__(
        self,
        address: str,
        store: AgentStore,
        upstreams: Sequence[Upstream],
        port: int = defaults.DEFAULT_DNS_PORT,
        *,
        upstream_timeout: float = defaults.DEFAULT_DNS_UPSTREAM_TIMEOUT,
        ttl: int = defaults.DEFAULT_DNS_TTL,
    ) -> None:
        self.address, self.port = address, port
        self.view = DiscoveryView(store)
        self.upstreams = list(upstreams)
        self.upstream_timeout = upstream_timeout
        self.ttl = ttl
        self.serving = threading.Event()
        self._rng = random.Random()
        self._forwarding = 0  # questions with an upstream now (the event loop's thread only)
        self._tcp_clients: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()  # forwards of UDP queries, kept from the collector

    def run(self, stop: threading.Event) -> None:
        spawn("cluster-dns-view", lambda: self.view.run(stop))
        while not stop.is_set():
            try:
                asyncio.run(self._serve(stop))
            except Exception:  # noqa: BLE001 - the node's DNS must outlive any one failure
                log.warning("cluster DNS failed; starting again in %.0fs", BIND_RETRY_SECONDS, exc_info=True)
                stop.wait(BIND_RETRY_SECONDS)

    # -- sockets --------------------------------------------------------------------------------

    async def _serve(self, stop: threading.Event) -> None:
        loop = asyncio.get_running_loop()
        told = False
        while not stop.is_set():
            try:
                datagrams, _ = await loop.create_datagram_endpoint(
                    lambda: _Datagrams(self), local_addr=(self.address, self.port)
                )
            except OSError as exc:
                if not told:
                    log.info("cluster DNS: cannot bind %s:%d yet (%s); trying every %.0fs",
                             self.address, self.port, exc, BIND_RETRY_SECONDS)
                    told = True
                await _until(stop, BIND_RETRY_SECONDS)
                continue
            try:
                server = await asyncio.start_server(self._serve_connection, self.address, self.port)
            except OSError:
                datagrams.close()
                await _until(stop, BIND_RETRY_SECONDS)
                continue
            log.info("cluster DNS: serving %s:%d (UDP and TCP)", self.address, self.port)
            self.serving.set()
            try:
                await _until(stop, None)
            finally:
                self.serving.clear()
                datagrams.close()
                server.close()
                for writer in list(self._tcp_clients):
                    writer.close()

    def receive_datagram(self, wire: bytes, client: tuple[str, int], send: Callable[[bytes], None]) -> None:
        outcome = self._outcome(wire, client[0], tcp=False)
        if isinstance(outcome, dns.message.Message):
            if not self._take_forward():
                send(_error(outcome, dns.rcode.SERVFAIL))
                return
            task = asyncio.get_running_loop().create_task(self._forward_datagram(outcome, send))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        elif outcome is not None:
            send(outcome)

    async def _forward_datagram(self, query: dns.message.Message, send: Callable[[bytes], None]) -> None:
        send(await self._forward(query, tcp=False))

    async def _serve_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self._tcp_clients) >= MAX_TCP_CLIENTS:
            writer.close()
            return
        self._tcp_clients.add(writer)
        peer = writer.get_extra_info("peername")
        asker = peer[0] if isinstance(peer, tuple) else None
        try:
            while True:
                size = int.from_bytes(await asyncio.wait_for(reader.readexactly(2), TCP_IDLE_SECONDS), "big")
                wire = await asyncio.wait_for(reader.readexactly(size), TCP_IDLE_SECONDS)
                outcome = self._outcome(wire, asker, tcp=True)
                if isinstance(outcome, dns.message.Message):
                    reply = await self._forward(outcome, tcp=True) if self._take_forward() \
                        else _error(outcome, dns.rcode.SERVFAIL)
                elif outcome is None:
                    break  # nothing to answer: the stream cannot be trusted to be in step
                else:
                    reply = outcome
                writer.write(len(reply).to_bytes(2, "big") + reply)
                await asyncio.wait_for(writer.drain(), TCP_IDLE_SECONDS)
        except (asyncio.IncompleteReadError, TimeoutError, OSError):
            pass  # the client left, stalled, or sent a length it did not follow with
        except Exception:  # noqa: BLE001 - whatever a client sends is only its connection's problem
            log.warning("cluster DNS: dropped a TCP client", exc_info=True)
        finally:
            self._tcp_clients.discard(writer)
            writer.close()

    # -- answers --------------------------------------------------------------------------------

    def _outcome(self, wire: bytes, asker: str | None, tcp: bool) -> Outcome:
        try:
            query = dns.message.from_wire(wire)
        except Exception:  # noqa: BLE001 - dnspython's errors for bad input are not all DNSException
            return _format_error(wire)
        if query.flags & dns.flags.QR:
            return None  # a response: answering it could set two servers answering each other
        if query.opcode() != dns.opcode.QUERY:
            return _error(query, dns.rcode.NOTIMP)
        if len(query.question) != 1:
            return _error(query, dns.rcode.FORMERR)
        question = query.question[0]
        if question.rdclass == dns.rdataclass.IN:
            name = question.name.to_text(omit_final_dot=True)
            addresses = self.view.directory.answer(name, asker, self._rng)
            if addresses is not None:
                return self._answer(query, addresses if question.rdtype == dns.rdatatype.A else [], tcp)
        return query

    def _answer(self, query: dns.message.Message, addresses: list[str], tcp: bool) -> bytes:
        """An authoritative answer with as many of `addresses` (in their order) as fit the message;
        over UDP, TC is set when some did not (the client may ask again over TCP)."""
        response = dns.message.make_response(query, recursion_available=True)
        response.flags |= dns.flags.AA
        limit = TCP_SIZE_MAX if tcp else _udp_limit(query)
        room = max(0, (limit - len(response.to_wire())) // A_RECORD_BYTES)
        if len(addresses) > room:
            addresses = addresses[:room]
            if not tcp:
                response.flags |= dns.flags.TC
        if addresses:
            name = query.question[0].name
            response.answer.append(
                dns.rrset.from_text_list(name, self.ttl, dns.rdataclass.IN, dns.rdatatype.A, addresses)
            )
        return response.to_wire(max_size=limit)

    # -- forwarding -----------------------------------------------------------------------------

    def _take_forward(self) -> bool:
        if self._forwarding >= MAX_FORWARDS:
            return False
        self._forwarding += 1
        return True

    async def _forward(self, query: dns.message.Message, tcp: bool) -> bytes:
        """The upstreams' answer to `query` (a slot taken by _take_forward, given back here)."""
        try:
            client_id = query.id
            query.id = dns.entropy.random_16()  # upstreams see ids of ours, not ones a client chose
            response = await self._ask_upstreams(query, tcp)
            query.id = client_id
            if response is None:
                return _error(query, dns.rcode.SERVFAIL)
            response.id = client_id
            return response.to_wire(max_size=TCP_SIZE_MAX if tcp else _udp_limit(query), prefer_truncation=True)
        finally:
            self._forwarding -= 1

    async def _ask_upstreams(self, query: dns.message.Message, tcp: bool) -> dns.message.Message | None:
        """The first useful answer of the upstreams within the bound. The first is asked at once and
        each next one when the previous has failed or had its share of the bound, the earlier ones
        still awaited; a SERVFAIL or REFUSED is kept only in case nothing better comes."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.upstream_timeout
        share = self.upstream_timeout / max(1, len(self.upstreams))
        waiting = list(self.upstreams)
        asking: set[asyncio.Task[dns.message.Message | None]] = set()
        fallback = None
        try:
            while waiting or asking:
                if waiting:
                    asking.add(loop.create_task(self._ask(query, waiting.pop(0), deadline, tcp)))
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                done, asking = await asyncio.wait(
                    asking, timeout=min(share, remaining) if waiting else remaining,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                for task in done:
                    response = task.result()
                    if response is not None and response.rcode() not in RETRY_ELSEWHERE:
                        return response
                    fallback = response or fallback
        finally:
            for task in asking:
                task.cancel()
        return fallback

    async def _ask(
        self, query: dns.message.Message, upstream: Upstream, deadline: float, tcp: bool
    ) -> dns.message.Message | None:
        address, port = upstream
        timeout = max(0.0, deadline - asyncio.get_running_loop().time())
        try:
            if tcp:
                return await dns.asyncquery.tcp(query, address, timeout=timeout, port=port)
            return await dns.asyncquery.udp(query, address, timeout=timeout, port=port, ignore_unexpected=True)
        except Exception as exc:  # noqa: BLE001 - an upstream's failure is only its own: the next is asked
            log.debug("cluster DNS: upstream %s:%d did not answer: %s", address, port, exc)
            return None


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self, server: ClusterDns) -> None:
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        transport = self.transport
        if transport is None:
            return
        try:
            self.server.receive_datagram(data, addr, lambda reply: transport.sendto(reply, addr))
        except Exception:  # noqa: BLE001 - whatever a client sends is only that query's problem
            log.warning("cluster DNS: dropped a query from %s", addr[0], exc_info=True)

    def error_received(self, exc: Exception) -> None:
        pass  # an ICMP error about a client that left: nothing to do


def _udp_limit(query: dns.message.Message) -> int:
    """How large an answer over UDP may be: what the client's EDNS offers, at least 512 (the size
    without EDNS), at most UDP_SIZE_MAX."""
    offered = query.payload if query.edns >= 0 else 512
    return min(max(512, offered), UDP_SIZE_MAX)


def _error(query: dns.message.Message, rcode: dns.rcode.Rcode) -> bytes:
    response = dns.message.make_response(query, recursion_available=True)
    response.set_rcode(rcode)
    return response.to_wire()


def _format_error(wire: bytes) -> bytes | None:
    """FORMERR for a packet with the header of a query whose rest cannot be read; else nothing."""
    if len(wire) < 12 or wire[2] & 0x80:  # shorter than a header, or a response (QR)
        return None
    response = dns.message.Message(id=int.from_bytes(wire[:2], "big"))
    echoed = OPCODE_BITS | dns.flags.RD  # a response says the query's opcode and RD again
    response.flags = dns.flags.QR | dns.flags.RA | (int.from_bytes(wire[2:4], "big") & echoed)
    response.set_rcode(dns.rcode.FORMERR)
    return response.to_wire()


async def _until(stop: threading.Event, seconds: float | None) -> None:
    """Wait until `stop` is set, or `seconds` have passed (None: no limit)."""
    deadline = None if seconds is None else time.monotonic() + seconds
    while not stop.is_set() and (deadline is None or time.monotonic() < deadline):
        await asyncio.sleep(STOP_POLL_SECONDS)
