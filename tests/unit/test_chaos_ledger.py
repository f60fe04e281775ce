"""The chaos soak's ledger of acknowledged writes: which final states the users' answers allow."""

from __future__ import annotations

from bench.chaos.ledger import ABSENT, Ledger


def test_an_acknowledged_write_is_the_only_outcome_allowed() -> None:
    ledger = Ledger({"web": 6})
    assert ledger.record("web", 4, 200) == "acknowledged"
    assert ledger.acceptable("web") == {4}
    assert ledger.mismatches({"web": 4}) == []
    assert ledger.mismatches({"web": 6}) == ["web: 6 (acknowledged or possible: 4)"]


def test_a_refused_write_changes_nothing() -> None:
    ledger = Ledger({"web": 6})
    assert ledger.record("web", 4, 422) == "refused"
    assert ledger.acceptable("web") == {6}


def test_an_unanswered_write_may_or_may_not_have_happened_until_a_later_one_is_acknowledged() -> None:
    ledger = Ledger({"web": 6})
    assert ledger.record("web", 4, None) == "unknown"
    assert ledger.record("web", 5, 503) == "unknown"
    assert ledger.acceptable("web") == {6, 4, 5}
    ledger.record("web", 3, 200)
    assert ledger.acceptable("web") == {3}
    assert ledger.counts == {"acknowledged": 1, "refused": 0, "unknown": 2}


def test_creation_and_deletion_are_counts_and_absence() -> None:
    ledger = Ledger({"web": 6})
    assert ledger.acceptable("extra") == {ABSENT}
    assert ledger.mismatches({"web": 6, "extra": 2}) == ["extra: 2 (acknowledged or possible: absent)"]
    ledger.record("extra", 2, 201)
    assert ledger.mismatches({"web": 6, "extra": 2}) == []
    ledger.record("extra", ABSENT, 202)
    assert ledger.mismatches({"web": 6}) == []
    assert ledger.mismatches({}) == ["web: absent (acknowledged or possible: 6)"]
