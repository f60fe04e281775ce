"""When an agent redoes the pod network's upkeep (worker/pod_network.py): as soon as the subnets change,
so a joining engine is routed within a look, and every heartbeat whatever, so a host is mended."""

from __future__ import annotations

import math

from worker.pod_network import upkeep_due

SUBNETS = {"engine-a": "10.244.0.0/24"}


def test_the_first_look_does_the_upkeep():
    assert upkeep_due(None, {}, -math.inf, 0.0, every=2.0)


def test_unchanged_subnets_wait_for_the_heartbeat():
    assert not upkeep_due(SUBNETS, dict(SUBNETS), mended_at=10.0, now=11.9, every=2.0)
    assert upkeep_due(SUBNETS, dict(SUBNETS), mended_at=10.0, now=12.0, every=2.0)


def test_a_joining_engine_is_routed_at_the_next_look():
    joined = {**SUBNETS, "engine-b": "10.244.1.0/24"}
    assert upkeep_due(SUBNETS, joined, mended_at=10.0, now=10.5, every=2.0)


def test_a_leaving_engine_is_unrouted_at_the_next_look():
    assert upkeep_due(SUBNETS, {}, mended_at=10.0, now=10.5, every=2.0)
