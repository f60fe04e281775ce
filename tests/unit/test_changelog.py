"""The change log's entries and how a reader follows them (shared/storage/changelog.py)."""

from __future__ import annotations

from shared.storage import changelog
from shared.storage.changelog import Changes, since


def test_an_entry_names_what_a_write_changed_or_says_all_when_it_is_too_many() -> None:
    assert changelog.entry(["web.1", "web.2"]) == {"tasks": "web.1\nweb.2"}
    assert changelog.entry(services=["web"]) == {"services": "web"}
    assert changelog.entry([], []) == {}
    assert changelog.entry([f"web.{i}" for i in range(changelog.MAX_IDS + 1)]) == {"all": "1"}


def test_a_reader_follows_the_entries_after_its_revision() -> None:
    entries = [("5-0", {"tasks": "web.1"}), ("6-0", {"tasks": "web.2\nweb.3"}), ("7-0", {"services": "web"}),
               ("8-0", {"tasks": "web.2", "services": "db"})]
    assert since("5-0", entries) == Changes("8-0", frozenset({"web.2", "web.3"}), frozenset({"web", "db"}))
    assert since("8-0", entries[3:]) == Changes("8-0")  # nothing after it
    assert since("8-0", entries[3:]).none


def test_a_reader_that_cannot_tell_what_changed_reads_everything() -> None:
    entries = [("5-0", {"tasks": "web.1"}), ("6-0", {"tasks": "web.2"})]
    assert since("4-0", entries) == Changes("6-0", complete=False)  # its revision was trimmed away or lost
    assert since("5-0", [*entries, ("7-0", {"all": "1"})]) == Changes("7-0", complete=False)
    behind = [(f"{i}-0", {"tasks": "web.1"}) for i in range(changelog.MAX_FOLLOW + 1)]
    assert since("0-0", behind) == Changes(behind[-1][0], complete=False)
    many = [("1-0", {}), ("2-0", {"tasks": "\n".join(f"web.{i}" for i in range(changelog.MAX_PATCH + 1))})]
    assert not since("1-0", many).complete  # type: ignore[union-attr]
    assert since("5-0", []) is None  # no log at all: nothing to key a copy on
