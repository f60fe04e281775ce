"""A task as the scheduler's assignment and its agent's status: how the two join, what the scheduler
writes of a task, and the one table of what an agent may report."""

from __future__ import annotations

import pytest

from shared.records import Health, TaskRecord, TaskState
from shared.task_parts import (
    TRANSITIONS,
    Assignment,
    StopRequest,
    TaskReader,
    TaskStatus,
    assignment_json,
    join,
    status_of,
)


def assigned(**fields: object) -> Assignment:
    base: dict[str, object] = {
        "id": "web.1", "service": "web", "slot": 1, "gen": 3, "incarnation": "a1", "node": "n1",
        "state": TaskState.ASSIGNED, "health": Health.STARTING, "updated_at": 10.0,
    }
    return Assignment.model_validate({**base, **fields})


def reported(**fields: object) -> TaskStatus:
    base: dict[str, object] = {
        "id": "web.1", "node": "n1", "gen": 3, "incarnation": "a1", "state": TaskState.RUNNING,
        "container_id": "c" * 64, "health": Health.HEALTHY, "updated_at": 12.0,
    }
    return TaskStatus.model_validate({**base, **fields})


def stored(task: TaskRecord) -> Assignment:
    """The assignment as the scheduler stores it, read back."""
    return Assignment.model_validate_json(assignment_json(task))


def test_the_status_of_the_assignments_decision_says_how_it_runs():
    task = join(assigned(), reported(), None)
    assert (task.state, task.container_id, task.health, task.updated_at) == (
        TaskState.RUNNING, "c" * 64, Health.HEALTHY, 12.0
    )


@pytest.mark.parametrize("other", [{"gen": 2}, {"incarnation": "b2"}, {"node": "n2"}])
def test_a_status_of_another_decision_is_ignored(other: dict[str, object]):
    task = join(assigned(), reported(**other), None)
    assert (task.state, task.container_id, task.health) == (TaskState.ASSIGNED, None, Health.STARTING)


def test_a_shut_down_slot_is_what_the_scheduler_says_and_removed_once_its_agent_says_so():
    shutdown = assigned(state=TaskState.SHUTDOWN, gen=4)
    assert join(shutdown, reported(), None).state is TaskState.SHUTDOWN
    gone = join(shutdown, reported(gen=4, state=TaskState.STOPPED, removed=True), None)
    assert (gone.state, gone.removed) == (TaskState.SHUTDOWN, True)


def test_a_stop_request_counts_for_its_decision_only():
    assert join(assigned(), reported(), StopRequest(id="web.1", gen=3, incarnation="a1", at=1.0)).stop_requested
    assert not join(assigned(), reported(), StopRequest(id="web.1", gen=2, incarnation="a1", at=1.0)).stop_requested


def test_the_scheduler_writes_a_reported_state_as_assigned_and_its_own_as_they_are():
    running = join(assigned(), reported(), None)
    assert stored(running).state is TaskState.ASSIGNED
    replaced = TaskRecord(id="web.1", service="web", slot=1, state=TaskState.FAILED, reason="unreadable")
    assert stored(replaced).state is TaskState.FAILED  # no node: the scheduler's own
    pending = TaskRecord(id="web.1", service="web", slot=1, state=TaskState.PENDING, reason="no room")
    assert (stored(pending).state, stored(pending).reason) == (TaskState.PENDING, "no room")


def test_what_an_agent_reports_round_trips_through_the_join():
    task = join(assigned(), reported(), None)
    assert join(stored(task), status_of(task), None) == task


def test_records_of_the_wrong_kind_of_state_are_unreadable():
    with pytest.raises(ValueError, match="not one the scheduler decides"):
        assigned(state=TaskState.RUNNING)
    with pytest.raises(ValueError, match="not one an agent reports"):
        reported(state=TaskState.PENDING)


def test_the_table_allows_no_way_back_from_a_final_report():
    assert not TRANSITIONS[TaskState.FAILED] and not TRANSITIONS[TaskState.STOPPED]
    assert TaskState.RUNNING not in TRANSITIONS[TaskState.FAILED]  # the sweep adopts no failed task
    assert TRANSITIONS[TaskState.SHUTDOWN] == {TaskState.STOPPED}


def test_a_join_is_redone_only_when_a_part_changed():
    reader = TaskReader()
    parts = ({"web.1": assigned().model_dump_json()}, {"web.1": reported().model_dump_json()}, {})
    first = reader.join(*parts, whole=True)
    again = reader.join(*parts, whole=True)
    assert again.good["web.1"] is first.good["web.1"]
    changed = reader.join(parts[0], {"web.1": reported(health=Health.UNHEALTHY).model_dump_json()}, {}, whole=True)
    assert changed.good["web.1"].health is Health.UNHEALTHY
    broken = reader.join({"web.1": "{not json"}, {}, {}, whole=True)
    assert list(broken.unreadable) == ["web.1"] and not broken.good
