"""Job grouping: one RQ job per node, a batch when a node has several decisions, ids from content."""

from __future__ import annotations

from shared.dispatch import BATCH_FUNCTION, JOB_FUNCTIONS, Action, Decision, batch_id, by_node, job_spec
from shared.keys import Keys

KEYS = Keys("c1")


def test_decisions_are_grouped_per_node_in_order_and_once():
    jobs = [
        Decision("n1", Action.START, "web.1", 1, ""),
        Decision("n2", Action.START, "web.2", 1, ""),
        Decision("n1", Action.STOP, "db.1", 3, ""),
        Decision("n1", Action.START, "web.1", 1, ""),  # the same decision twice is one
    ]
    assert by_node(jobs) == {
        "n1": [Decision("n1", Action.START, "web.1", 1, ""), Decision("n1", Action.STOP, "db.1", 3, "")],
        "n2": [Decision("n2", Action.START, "web.2", 1, "")],
    }


def test_a_single_decision_stays_the_job_of_its_action():
    spec = job_spec(KEYS, [Decision("n1", Action.START, "web.1", 2, "a1")])
    assert spec["function"] == JOB_FUNCTIONS[Action.START]
    assert spec["args"] == ("web.1", 2, "a1")
    assert spec["job_id"] == KEYS.job_id("start", "web.1", 2, "a1") == "gorchester_c1_start_web_1_a1_2"


def test_the_same_decision_about_another_record_of_the_slot_is_another_job():
    assert KEYS.job_id("start", "web.1", 1, "a1") != KEYS.job_id("start", "web.1", 1, "b2")
    assert KEYS.job_id("start", "web.1", 1, "") == "gorchester_c1_start_web_1_1"  # a record made before incarnations


def test_a_name_rq_refuses_gives_a_digest_not_an_error():
    job_id = KEYS.job_id("start", "nl\n.1", 1, "a1")
    assert job_id.startswith("gorchester_") and job_id.replace("_", "").isalnum() and job_id.isascii()
    assert job_id != KEYS.job_id("start", "nl\r.1", 1, "a1")


def test_several_decisions_are_one_batch_job_named_by_its_content():
    jobs = [Decision("n1", Action.START, "web.1", 1, "a1"), Decision("n1", Action.STOP, "web.2", 4, "b2")]
    spec = job_spec(KEYS, jobs)
    assert spec["function"] == BATCH_FUNCTION
    assert spec["args"] == ([("start", "web.1", 1, "a1"), ("stop", "web.2", 4, "b2")],)
    assert spec["job_id"] == batch_id(KEYS, list(reversed(jobs)))  # the order does not name it
    assert spec["job_id"] != batch_id(KEYS, [Decision("n1", Action.START, "web.1", 2, "a1"), jobs[1]])  # a new gen does
    assert spec["job_id"] != batch_id(KEYS, [Decision("n1", Action.START, "web.1", 1, "c3"), jobs[1]])  # another record
    assert spec["job_id"].startswith("gorchester_c1_batch_")
    assert spec["timeout"] > job_spec(KEYS, jobs[:1])["timeout"]
