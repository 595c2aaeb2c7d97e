"""Key layout and records: newest first per owner, owners kept apart."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from functions.common.store import PredictionStore, check_owner, prediction_id, record_key
from inktex.errors import InputError


def test_ids_sort_newest_first_and_are_unguessable():
    t0 = datetime(2025, 1, 1, tzinfo=UTC)
    ids = [prediction_id(t0 + timedelta(milliseconds=i)) for i in range(5)]
    assert sorted(ids) == ids[::-1]
    assert len({prediction_id(t0)[14:] for _ in range(50)}) == 50


@pytest.mark.parametrize("owner", ["../x", "a/b", "", "_anonymous", "x" * 200, "a b"])
def test_owner_ids_cannot_escape_their_prefix(owner):
    with pytest.raises(InputError):
        check_owner(owner)


def test_anonymous_records_live_apart():
    assert record_key(None, "1-2").startswith("predictions/_anonymous/")


def test_listing_reads_only_the_owners_prefix(aws):
    store = PredictionStore(aws.s3, aws.data_bucket)
    now = datetime.now(UTC)
    for owner in ("alice", "alicia", "bob"):
        store.put_record({"id": prediction_id(now), "owner": owner})
    records, cursor = store.list_records("alice")
    assert [r["owner"] for r in records] == ["alice"] and cursor is None
    with pytest.raises(InputError, match="cursor"):
        store.list_records("alice", after="garbage")


def test_a_feedback_note_never_brings_back_a_deleted_record(aws):
    store = PredictionStore(aws.s3, aws.data_bucket)
    pid = prediction_id(datetime.now(UTC))
    store.put_record({"id": pid, "owner": "alice", "latex": "x"})
    note = {"status": "corrected", "latex": "y"}
    assert store.note_feedback("alice", pid, note)
    record = store.get_record("alice", pid)
    earlier = record.pop("previous_versions")  # the version it replaced, for erasure
    assert record == {"id": pid, "owner": "alice", "latex": "x", "feedback": note}
    assert len(earlier) == 1
    aws.s3.delete_object(Bucket=aws.data_bucket, Key=record_key("alice", pid))
    assert not store.note_feedback("alice", pid, note)
    assert not store.exists("alice", pid)


def test_a_deletion_erases_every_version_by_the_ids_the_record_names(aws):
    """Two feedback notes make three versions of a record: all go, with the input, and no
    listing of versions is needed (nor a delete marker left)."""
    store = PredictionStore(aws.s3, aws.data_bucket)
    pid = prediction_id(datetime.now(UTC))
    key, version = store.put_input(f"inputs/alice/{pid}.png", b"png", "image/png")
    store.put_record({"id": pid, "owner": "alice", "input_key": key, "input_version": version})
    store.note_feedback("alice", pid, {"status": "corrected"})
    store.note_feedback("alice", pid, {"status": "held"})
    calls = []
    aws.s3.meta.events.register("before-call.s3", lambda model, **kw: calls.append(model.name))
    store.delete("alice", pid)
    assert "ListObjectVersions" not in calls
    listed = aws.s3.list_object_versions(Bucket=aws.data_bucket)
    assert listed.get("Versions", []) == [] and listed.get("DeleteMarkers", []) == []
