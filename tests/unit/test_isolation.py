"""Reconciliation that one service cannot stop: the service whose reconciliation raises is named and
left out; every other service is reconciled in the same pass."""

from __future__ import annotations

from scheduler.backoff import Backoff
from scheduler.isolation import reconcile_isolated
from scheduler.plan import Policy
from shared.config import Resources, ServiceSpec
from shared.records import NodeRecord, ServiceRecord, TaskRecord, TaskState

NOW = 1000.0
POLICY = Policy(backoff=Backoff(base=1.0, cap=8.0, reset_after=60.0), assigned_timeout=30.0, heartbeat_misses=3)
GIB = 1024**3


def service(name: str, replicas: int = 2) -> ServiceRecord:
    spec = ServiceSpec.model_validate({"service_name": name, "image": "img", "replicas": replicas})
    return ServiceRecord(spec=spec, created_at=0.0, updated_at=0.0)


def huge(name: str) -> ServiceRecord:
    """A record as an older version (or a hand) may have stored it: memory no float can hold, which
    makes placement raise OverflowError. Built without validation, as a record read before bounds."""
    resources = Resources.model_construct(cpu_millicores=100, memory_bytes=10**400)
    return service(name, replicas=1).model_copy(
        update={"spec": service(name).spec.model_copy(update={"resources": resources, "replicas": 1})}
    )


NODES = [NodeRecord(id="n1", address="127.0.0.2", cpu_millicores=4000, memory_bytes=4 * GIB, last_heartbeat=NOW)]


def placed(plan) -> list[str]:  # type: ignore[no-untyped-def]
    return sorted(write.task for write in plan.writes)


def test_nothing_failing_is_one_pass_with_no_failures():
    plan, failures = reconcile_isolated({"a": service("a")}, [], NODES, NOW, POLICY)
    assert placed(plan) == ["a.1", "a.2"] and failures == {}


def test_the_service_that_raises_is_named_and_the_others_are_reconciled():
    services = {name: service(name) for name in ("a", "b", "d", "e", "f")} | {"c": huge("c")}
    plan, failures = reconcile_isolated(services, [], NODES, NOW, POLICY)
    assert list(failures) == ["c"] and isinstance(failures["c"], OverflowError)
    assert placed(plan) == [f"{name}.{slot}" for name in "abdef" for slot in (1, 2)]


def test_several_services_that_raise_are_each_named():
    services = {"a": huge("a"), "b": service("b"), "c": huge("c")}
    plan, failures = reconcile_isolated(services, [], NODES, NOW, POLICY)
    assert sorted(failures) == ["a", "c"] and placed(plan) == ["b.1", "b.2"]


def test_a_failing_service_keeps_its_replicas_as_they_are():
    broken = huge("c")
    running = TaskRecord(id="c.2", service="c", slot=2, gen=1, rev=1, node="n1", state=TaskState.RUNNING)
    plan, failures = reconcile_isolated({"c": broken}, [running], NODES, NOW, POLICY)
    assert list(failures) == ["c"] and plan.writes == []  # slot 2 is beyond its replicas, yet not stopped


def test_frozen_services_are_not_tried():
    plan, failures = reconcile_isolated({"c": huge("c")}, [], NODES, NOW, POLICY, frozen={"c"})
    assert failures == {} and plan.writes == []
