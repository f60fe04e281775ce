"""Heartbeats across a Redis outage, with the real scheduler, API and agents and a redis-server of the
test's own. Killed (SIGKILL) for longer than the heartbeat window and started again on the same port
and data, Redis heard no beat meanwhile: no node is taken for down, by the scheduler or (once the
scheduler is back) the API. A node that really goes (its agent SIGKILLed) still is, within the window
and an interval."""

from __future__ import annotations

import time

import httpx

from shared.storage import Store
from shared.storage.connection import connect
from tests.conftest import RedisServer
from tests.integration.test_self_healing import NODES, node_status, own_redis, start_agent  # noqa: F401
from tests.support.procs import FAST_SETTINGS, Processes, free_port, wait_for

INTERVAL = float(FAST_SETTINGS["GORCHESTER_HEARTBEAT_INTERVAL"])
WINDOW = INTERVAL * float(FAST_SETTINGS["GORCHESTER_HEARTBEAT_MISSES"])
OUTAGE = 2.5  # seconds Redis is away: longer than the window
SLACK = 2.0  # a loaded machine's scheduling, for the one bound asserted


def node_downs(store: Store) -> list[tuple[str, float]]:
    return [(e["data"]["node"], e["time"]) for e in store.events() if e["type"] == "node_down"]


def statuses_until(api: str, deadline: float) -> list[str]:
    """Every node status the API gives until `deadline` (a refused request, Redis still away, gives none)."""
    seen = []
    while time.monotonic() < deadline:
        try:
            response = httpx.get(f"{api}/v1/nodes", timeout=2)
        except httpx.HTTPError:
            response = None
        if response is not None and response.status_code == 200:
            seen += [node["status"] for node in response.json()]
        time.sleep(0.05)
    return seen


def test_a_redis_restart_downs_no_node_and_a_lost_node_is_still_down_in_the_window(
    own_redis: tuple[RedisServer, Processes],  # noqa: F811 - the fixture, imported
):
    server, procs = own_redis
    store = Store(connect(server.url), procs.env["GORCHESTER_CLUSTER"])
    api = procs.api(free_port())
    procs.scheduler()
    for node in NODES:
        start_agent(procs, node)
    wait_for(lambda: node_status(api) == dict.fromkeys(NODES, "ready"), what="two ready nodes")
    wait_for(lambda: store._client.exists(store._keys.heard_since), what="the leader's first pass")

    server.kill()
    time.sleep(OUTAGE)
    back = time.time()  # before the start: the scheduler may be back before start() returns
    server.start()  # the same port and data directory (its append-only file)
    # The scheduler saw the outage and hears the nodes again from its next pass on.
    wait_for(lambda: store.heard_since() > back, what="the scheduler's heard_since after the outage")
    assert "redis unavailable" in procs.log("scheduler")
    seen = statuses_until(api, time.monotonic() + 2 * WINDOW)
    assert seen and "down" not in seen, seen  # the API judges nodes as the scheduler does
    wait_for(lambda: all(store.node(node).last_heartbeat > back for node in NODES), what="both nodes beating")
    assert node_downs(store) == []

    procs.kill("node-2")
    killed = time.time()
    [(node, at)] = wait_for(lambda: node_downs(store), timeout=10, what="node-2 down")
    assert node == "node-2"
    assert at - killed <= WINDOW + INTERVAL + SLACK
    assert node_status(api) == {"node-1": "ready", "node-2": "down"}
