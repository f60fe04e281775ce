"""A service's rollout history (shared/storage/history.py, api/views.py `history_view`) and the field
diff it names changes with (shared/spec_diff.py): pure."""

from __future__ import annotations

import pytest

from api.views import history_view
from shared.config import ServiceSpec
from shared.errors import Conflict, NotFound
from shared.records import ServiceRecord, UpdateState
from shared.spec_diff import Change, diff
from shared.storage.history import Cause, Revision, parse, revision, undo_target


def spec(**fields) -> ServiceSpec:
    return ServiceSpec.model_validate({"service_name": "web", "image": "img:1", "replicas": 2, **fields})


def test_diff_names_each_changed_field_by_its_dotted_path():
    before = spec(resources={"cpu_millicores": 100, "memory_bytes": 16777216}, env=["A=1"])
    after = spec(image="img:2", resources={"cpu_millicores": 200, "memory_bytes": 16777216}, env=["A=1", "B=2"])
    assert diff(before, after) == [
        Change("image", "img:1", "img:2"), Change("env", ["A=1"], ["A=1", "B=2"]),
        Change("resources.cpu_millicores", 100, 200),
    ]
    assert diff(after, after) == []
    assert Change("command", ["sh"], None) in diff(spec(command=["sh"]), spec())


def test_an_entry_is_made_for_a_new_service_and_a_new_template_only():
    created = ServiceRecord(spec=spec(), created_at=1.0, updated_at=1.0)
    first = revision(None, created, 1.0, Cause.CREATED)
    assert first is not None and (first.version, first.cause, first.changed) == (1, Cause.CREATED, [])
    scaled = created.with_spec(spec(replicas=5), 2.0)
    assert revision(created, scaled, 2.0, Cause.UPDATED) is None
    changed = scaled.with_spec(spec(replicas=5, image="img:2"), 3.0)
    entry = revision(scaled, changed, 3.0, Cause.UPDATED)
    assert entry is not None and (entry.version, entry.changed, entry.ended) == (3, ["image"], None)
    again = changed.with_spec(spec(replicas=5, image="img:3"), 4.0)
    later = revision(changed, again, 4.0, Cause.UPDATED)
    assert later is not None and later.ended is not None
    assert (later.ended.version, later.ended.state) == (3, UpdateState.UPDATING)  # superseded while under way


def test_a_rollbacks_entry_records_the_update_it_ended():
    old = ServiceRecord(spec=spec(), created_at=1.0, updated_at=1.0)
    new = old.with_spec(spec(image="img:2"), 2.0)
    assert new.update is not None and new.previous_spec is not None
    failed = new.update.model_copy(update={"state": UpdateState.ROLLED_BACK, "reason": "web.1 failed"})
    back = new.model_copy(update={"spec": new.previous_spec, "version": 3, "update": failed, "updated_at": 5.0})
    entry = revision(new, back, 5.0, Cause.ROLLED_BACK, "web.1 failed")
    assert entry is not None and entry.ended is not None
    assert (entry.version, entry.reason, entry.ended.state, entry.ended.version) == (
        3, "web.1 failed", UpdateState.ROLLED_BACK, 2
    )


def history_of(*changes: tuple[float, dict, Cause]) -> tuple[ServiceRecord, list[Revision]]:
    """A service taken through `changes` (time, spec fields, cause), with the entries they made."""
    record: ServiceRecord | None = None
    entries: list[Revision] = []
    for at, fields, cause in changes:
        new = ServiceRecord(spec=spec(**fields), created_at=at, updated_at=at) if record is None \
            else record.with_spec(spec(**fields), at)
        entry = revision(record, new, at, cause)
        if entry is not None:
            entries.insert(0, entry)
        record = new
    assert record is not None
    return record, entries


def test_each_versions_outcome_is_read_off_the_later_ones_and_the_update():
    record, entries = history_of(
        (1.0, {}, Cause.CREATED), (2.0, {"image": "img:2"}, Cause.UPDATED), (3.0, {"image": "img:3"}, Cause.UPDATED),
    )
    view = history_view(record, entries)
    assert view["kept"] == 10
    assert [(v["version"], v["outcome"]) for v in view["versions"]] == [
        (3, "updating"), (2, "superseded"), (1, "replaced"),
    ]
    assert update_done(record) and [v["outcome"] for v in history_view(update_done(record), entries)["versions"]][0] \
        == "completed"
    assert history_view(ServiceRecord(spec=spec(), created_at=1.0, updated_at=1.0), [])["versions"][0]["outcome"] \
        == "current"


def update_done(record: ServiceRecord) -> ServiceRecord:
    assert record.update is not None
    return record.model_copy(update={"update": record.update.model_copy(update={"state": UpdateState.COMPLETED})})


def test_undo_goes_to_the_newest_other_template_or_the_version_named():
    record, entries = history_of(
        (1.0, {}, Cause.CREATED), (2.0, {"image": "img:2"}, Cause.UPDATED), (3.0, {"image": "img:3"}, Cause.UPDATED),
    )
    assert undo_target(entries, record, None).version == 2
    assert undo_target(entries, record, 1).version == 1
    with pytest.raises(Conflict, match="runs the template of version 3 already"):
        undo_target(entries, record, 3)
    with pytest.raises(NotFound, match=r"version 7 of service 'web' is not in its history \(kept: 3, 2, 1\)"):
        undo_target(entries, record, 7)
    with pytest.raises(Conflict, match="no earlier template"):
        undo_target(entries[:1], record, None)


def test_an_entry_that_cannot_be_read_is_left_out():
    record, entries = history_of((1.0, {}, Cause.CREATED))
    bodies = ['{"version": "x"}', entries[0].model_dump_json(), "not json"]
    assert [entry.version for entry in parse("key", bodies)] == [1]
