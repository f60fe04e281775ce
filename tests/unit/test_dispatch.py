"""Job grouping: one RQ job per node, a batch when a node has several decisions, ids from content."""

from __future__ import annotations

from shared.dispatch import BATCH_FUNCTION, JOB_FUNCTIONS, Action, Job, batch_id, by_node, job_spec
from shared.keys import Keys

KEYS = Keys("c1")


def test_decisions_are_grouped_per_node_in_order_and_once():
    jobs = [
        Job("n1", Action.START, "web.1", 1),
        Job("n2", Action.START, "web.2", 1),
        Job("n1", Action.STOP, "db.1", 3),
        Job("n1", Action.START, "web.1", 1),  # the same decision twice is one
    ]
    assert by_node(jobs) == {
        "n1": [Job("n1", Action.START, "web.1", 1), Job("n1", Action.STOP, "db.1", 3)],
        "n2": [Job("n2", Action.START, "web.2", 1)],
    }


def test_a_single_decision_stays_the_job_of_its_action():
    spec = job_spec(KEYS, [Job("n1", Action.START, "web.1", 2)])
    assert spec["function"] == JOB_FUNCTIONS[Action.START]
    assert spec["args"] == ("web.1", 2)
    assert spec["job_id"] == KEYS.job_id("start", "web.1", 2)


def test_several_decisions_are_one_batch_job_named_by_its_content():
    jobs = [Job("n1", Action.START, "web.1", 1), Job("n1", Action.STOP, "web.2", 4)]
    spec = job_spec(KEYS, jobs)
    assert spec["function"] == BATCH_FUNCTION
    assert spec["args"] == ([("start", "web.1", 1), ("stop", "web.2", 4)],)
    assert spec["job_id"] == batch_id(KEYS, list(reversed(jobs)))  # the order does not name it
    assert spec["job_id"] != batch_id(KEYS, [Job("n1", Action.START, "web.1", 2), jobs[1]])  # a new gen does
    assert spec["job_id"].startswith("gorchester_c1_batch_")
    assert spec["timeout"] > job_spec(KEYS, jobs[:1])["timeout"]
