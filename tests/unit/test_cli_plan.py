"""How `gorchester plan` prints a plan (cli/plan.py): pure, from the API's answer."""

from __future__ import annotations

from cli.plan import _change, describe


def test_a_change_shows_list_items_removed_and_added_and_texts_from_where_they_differ():
    assert _change(["A=1"], ["A=1", "B=2"]) == '+"B=2"'
    assert _change(["A=1", "B=2"], ["B=2", "A=1"]) == "reordered"
    assert _change(["sh", "-c", "x" * 40 + " & wait"], ["sh", "-c", "x" * 40 + " & wait 2"]) == (
        '"...xxxxxxxxx & wait" => "...xxxxxxxxx & wait 2"'
    )
    assert _change(None, {"parallelism": 2}) == '(absent) => {"parallelism": 2}'
    assert _change("img:1", "img:2") == '"img:1" => "img:2"'


def test_a_plan_reads_per_service_then_says_how_to_apply_exactly_it():
    result = {
        "check_index": "0123456789abcdef",
        "services": [
            {"service": "web", "outcome": "updated", "version_before": 3, "version": 4, "replicas_before": 2,
             "replicas": 2, "changes": [{"field": "image", "before": "a:1", "after": "a:2"}], "update": "rolling",
             "rollout": {"parallelism": 1, "delay": 5, "failure_action": "pause", "monitor": 0, "order": "start-first",
                         "replaced": ["web.1", "web.2"]},
             "placements": [{"task": "web.1", "node": "n2", "why": "updated", "start_first": True,
                             "from_node": "n1"}],
             "stops": [], "pending": [], "moves": []},
            {"service": "big", "outcome": "created", "version_before": None, "version": 1, "replicas_before": None,
             "replicas": 1, "changes": [], "update": "none", "rollout": None, "placements": [], "stops": [],
             "pending": [{"task": "big.1", "reason": "...", "nodes_total": 3, "nodes_fitting": 0, "nodes": [
                 {"node": "n1", "fits": False, "reason": "not enough cpu (needs 6000m, 4000m free)"}]}], "moves": []},
            {"service": "old", "outcome": "deleted", "version_before": 2, "version": None, "replicas_before": 1,
             "replicas": None, "changes": [], "update": "none", "rollout": None, "placements": [],
             "stops": ["old.1"], "pending": [], "moves": []},
        ],
    }
    assert describe(result, "c.yaml", prune=True).splitlines() == [
        "~ web: updated (version 3 -> 4)",
        '    image: "a:1" => "a:2"',
        "    rolling update of 2 replica(s), 1 at a time, 5s apart, start-first, pause on failure; its first batch:",
        "    web.1 updated from n1 to n2, beside the old one until it is ready",
        "",
        "+ big: created (version 1)",
        "    big.1 would wait: 0 of 3 nodes would take it after this plan's placements",
        "        n1: not enough cpu (needs 6000m, 4000m free)",
        "        (2 more nodes not listed)",
        "",
        "- old: deleted",
        "    old.1 stopped",
        "",
        "check index: 0123456789abcdef",
        "apply exactly this with: gorchester apply -f c.yaml --prune --check-index 0123456789abcdef "
        "(refused if a service changed since)",
    ]
