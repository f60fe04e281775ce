"""A plan (scheduler/dry_run.py): what an apply would do, by reconcile's own decisions, nothing written."""

from __future__ import annotations

import pytest

from scheduler.dry_run import plan_apply
from shared.config import Config
from shared.errors import Conflict
from shared.parsed import Records
from shared.records import ServiceOutcome, ServiceRecord, TaskRecord
from tests.unit.test_reconcile import NOW, POLICY, node, running, service

NODES = [node("n1", cpu=2000), node("n2", cpu=2000)]
HALF = {"cpu_millicores": 1000, "memory_bytes": 16777216}


def config(*services: dict) -> Config:
    return Config.model_validate({"services": [{"image": "img", **spec} for spec in services]})


def stored(*records: ServiceRecord) -> Records[ServiceRecord]:
    bodies = {r.name: r.model_dump_json() for r in records}
    return Records(good={r.name: r for r in records}, unreadable={}, bodies=bodies)


def planned(wanted: Config, records: Records[ServiceRecord], tasks: list[TaskRecord], **options):
    return {plan.name: plan for plan in plan_apply(wanted, records, tasks, NODES, NOW, POLICY, **options)}


def test_a_new_service_is_placed_node_by_node_and_the_rest_waits_saying_why_per_node():
    plans = planned(config({"service_name": "web", "replicas": 5, "resources": HALF}), stored(), [])
    web = plans["web"]
    assert (web.outcome, web.version, web.replicas) == (ServiceOutcome.CREATED, (None, 1), (None, 5))
    assert not web.rolling
    assert sorted((p.task, p.node) for p in web.placed) == [
        ("web.1", "n1"), ("web.2", "n2"), ("web.3", "n1"), ("web.4", "n2"),
    ]
    [waiting] = web.waiting
    assert waiting.task == "web.5" and "not enough cpu" in waiting.reason
    assert [(v.node, v.rejection is None) for v in waiting.verdicts.listed] == [("n1", False), ("n2", False)]
    reasons = {v.rejection.text for v in waiting.verdicts.listed if v.rejection}
    assert reasons == {"not enough cpu (needs 1000m, 0m free)"}


def test_a_template_change_is_a_rolling_update_whose_first_batch_is_shown():
    old = service(replicas=2)
    tasks = [running(old, 1, "n1"), running(old, 2, "n2")]
    change = config({"service_name": "web", "replicas": 2, "command": ["sleep", "9"],
                     "update_config": {"parallelism": 1}})
    web = planned(change, stored(old), tasks)["web"]
    assert web.outcome is ServiceOutcome.UPDATED and web.rolling and web.replaced == ["web.1", "web.2"]
    assert [c.path for c in web.changes] == ["command", "update_config"]
    assert web.controls is not None and web.controls.order == "start-first"
    [first] = web.placed
    assert first.task == "web.1" and first.why == "updated" and first.start_first


def test_a_replica_count_change_keeps_the_running_replicas_and_places_or_stops_slots():
    old = service(replicas=2)
    tasks = [running(old, 1, "n1"), running(old, 2, "n2")]
    up = planned(config({"service_name": "web", "replicas": 3}), stored(old), tasks)["web"]
    assert not up.rolling and [p.task for p in up.placed] == ["web.3"] and up.stopped == []
    down = planned(config({"service_name": "web", "replicas": 1}), stored(old), tasks)["web"]
    assert down.stopped == ["web.2"] and down.placed == []


def test_prune_shows_the_services_it_would_delete_and_their_stops():
    old, other = service(replicas=1), service("db", replicas=1)
    tasks = [running(old, 1, "n1"), running(other, 1, "n2")]
    plans = planned(config({"service_name": "web", "replicas": 1}), stored(old, other), tasks, prune=True)
    assert plans["web"].outcome is ServiceOutcome.UNCHANGED and plans["web"].placed == []
    assert plans["db"].outcome is ServiceOutcome.DELETED and plans["db"].stopped == ["db.1"]
    assert "db" not in planned(config({"service_name": "web", "replicas": 1}), stored(old, other), tasks)


def test_constraints_that_exclude_every_node_say_which_rule_per_node():
    rule = {"service_name": "web", "replicas": 1, "placement": {"constraints": ["node.labels.zone == z"]}}
    [waiting] = planned(config(rule), stored(), [])["web"].waiting
    assert "constraint node.labels.zone == z not met" in waiting.reason
    assert {v.rejection.text for v in waiting.verdicts.listed if v.rejection} == {
        "constraint node.labels.zone == z not met"
    }


def test_a_plan_refuses_what_the_apply_would_refuse():
    gone = service(replicas=1).model_copy(update={"deleting": True})
    with pytest.raises(Conflict, match="being deleted"):
        planned(config({"service_name": "web", "replicas": 1}), stored(gone), [])
