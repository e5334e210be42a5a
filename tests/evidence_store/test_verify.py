"""verify: one flipped byte anywhere (object, leaf, stored hash, checkpoint) is found and named."""

import pytest

from evidence_store import merkle
from evidence_store import verify as v
from evidence_store.errors import IntegrityError, UsageError
from evidence_store.verify import verify_store
from tests.evidence_store.conftest import local_objects, on_s3, remove_object, tamper_object


@pytest.fixture(autouse=True, params=["one process", "worker processes"])
def scan_mode(request, monkeypatch):
    """Every check runs both ways: a large log is scanned by one worker per core over contiguous
    ranges (chains stitched across them), a small one in-process; both must find the same faults
    (with objects on S3 only in-process: see conftest.pytest_collection_modifyitems)."""
    pools = []
    if request.param == "worker processes":
        monkeypatch.setattr(v, "PARALLEL_MIN_ENTRIES", 0)
        monkeypatch.setattr(v.os, "cpu_count", lambda: 3)  # odd, so ranges split mid-clip
        real_pool = v.ProcessPoolExecutor
        monkeypatch.setattr(v, "ProcessPoolExecutor", lambda *a, **k: pools.append(a) or real_pool(*a, **k))
    yield request.param
    if request.param == "worker processes" and v.threading.active_count() == 1:
        assert pools, "the scan did not use worker processes"


@pytest.fixture
def filled(store, add_clip):
    clips = [add_clip() for _ in range(3)]
    store.log_access("view", clips[0].clip_id, reason="review")
    store.hold(clips[0].clip_id, case="A-1", reason="evidence")
    assert verify_store(store) == []
    return clips


def flip(data: bytes, at: int) -> bytes:
    data = bytearray(data)
    data[at] ^= 0x01
    return bytes(data)


def beyond_lock(store, faults, clip_id):
    """The faults other than the lock's: on S3, a hold row added to the index also leaves the
    clip's objects without the legal hold it claims, and verify rightly names each of them too."""
    if not on_s3(store):
        return faults
    unlocked = [f for f in faults if f.kind == v.OBJECT_UNLOCKED]
    assert unlocked and all(f.where == f"clip {clip_id}" and "legal hold is off" in f.message for f in unlocked)
    return [f for f in faults if f.kind != v.OBJECT_UNLOCKED]


def kinds(faults):
    return {f.kind for f in faults}


def test_verify_sound_store_no_faults(store, filled):
    assert verify_store(store) == []


@pytest.mark.parametrize("which", ["segment", "manifest", "journal"])
def test_verify_flipped_byte_in_object_named(store, filled, which):
    info = store.clip(filled[1].clip_id)
    sha = {"segment": store.segments(info.clip_id)[0]["sha256"], "manifest": info.manifest_sha256,
           "journal": info.journal_sha256}[which]
    tamper_object(store, sha, flip(store.objects.read(sha), 100))
    faults = verify_store(store)
    assert [(f.kind, f.where) for f in faults if f.kind == v.OBJECT_ALTERED] == [(v.OBJECT_ALTERED, f"clip {info.clip_id}")]
    assert sha in faults[0].message
    assert ("list-object-versions" if on_s3(store) else "restore objects/") in faults[0].hint


def test_verify_missing_object_named(store, filled):
    sha = store.segments(filled[2].clip_id)[0]["sha256"]
    remove_object(store, sha)
    (fault,) = verify_store(store)
    assert fault.kind == v.OBJECT_MISSING and filled[2].clip_id in fault.where


@pytest.mark.parametrize("index", [0, 2, 4])
def test_verify_flipped_byte_in_leaf_named(store, filled, index):
    leaf = store.log.leaf(index)
    store.conn.execute("UPDATE events SET leaf = ? WHERE idx = ?", (flip(leaf, 30), index))
    faults = verify_store(store)
    leaf_faults = [f for f in faults if f.kind == v.LEAF_ALTERED]
    assert [f.where for f in leaf_faults] == [f"log index {index}"]
    assert v.LOG_REWRITTEN in kinds(faults)  # the signed checkpoints no longer match


@pytest.mark.parametrize("storage_index", [0, 2, 5, 6])
def test_verify_flipped_byte_in_stored_hash_named(store, filled, storage_index):
    (h,) = store.conn.execute("SELECT hash FROM hashes WHERE id = ?", (storage_index,)).fetchone()
    store.conn.execute("UPDATE hashes SET hash = ? WHERE id = ?", (flip(h, 7), storage_index))
    faults = verify_store(store)
    level, n = merkle.split_stored_hash_index(storage_index)
    wheres = {f.where for f in faults}
    assert (f"log index {n}" if level == 0 else f"storage index {storage_index}") in wheres
    assert v.LOG_REWRITTEN not in kinds(faults)  # the leaves still match the checkpoints


def test_verify_flipped_byte_in_highest_stored_hash_named(store, filled):
    # The hash over the most entries: with worker processes it spans two ranges, so no worker
    # can recompute it and the parent checks it against its children.
    size = store.log.size()
    level = size.bit_length() - 1
    j = merkle.stored_hash_index(level, 0)
    (h,) = store.conn.execute("SELECT hash FROM hashes WHERE id = ?", (j,)).fetchone()
    store.conn.execute("UPDATE hashes SET hash = ? WHERE id = ?", (flip(h, 3), j))
    faults = verify_store(store)
    assert [f.kind for f in faults] == [v.STORED_HASH_ALTERED] and faults[0].where == f"storage index {j}"


def test_verify_missing_last_stored_hash_found(store, filled):
    store.conn.execute("DELETE FROM hashes WHERE id = (SELECT MAX(id) FROM hashes)")
    assert v.STORED_HASH_MISSING in kinds(verify_store(store))


def test_verify_flipped_byte_in_checkpoint_named(store, filled):
    size, note = store.log.checkpoints()[3]
    store.conn.execute("UPDATE checkpoints SET note = ? WHERE size = ?", (flip(note, 5), size))
    (fault,) = verify_store(store)
    assert fault.kind == v.CHECKPOINT_INVALID and fault.where == f"checkpoint {size}"


def test_verify_truncated_log_found(store, filled):
    size = store.log.size()
    store.conn.execute("DELETE FROM events WHERE idx = ?", (size - 1,))
    faults = verify_store(store)
    assert v.LOG_TRUNCATED in kinds(faults)


def test_verify_removed_middle_event_found(store, filled):
    store.conn.execute("DELETE FROM events WHERE idx = 3")
    assert v.LOG_ENTRY_MISSING in kinds(verify_store(store))


def test_verify_rewritten_log_with_recomputed_hashes_caught_by_checkpoints(store, filled):
    # An attacker who rewrites a leaf AND recomputes every stored hash still meets the signatures.
    leaf = store.log.leaf(2).replace(b'"kind":"ingest"', b'"kind":"ingest" ')
    store.conn.execute("UPDATE events SET leaf = ? WHERE idx = 2", (leaf,))
    leaves = [merkle.leaf_hash(store.log.leaf(i)) for i in range(store.log.size())]
    _, hashes = merkle.stored_hashes_for_appends(0, leaves)
    store.conn.executemany("UPDATE hashes SET hash = ? WHERE id = ?", [(h, i) for i, h in enumerate(hashes)])
    faults = verify_store(store)
    assert v.LOG_REWRITTEN in kinds(faults)


def test_verify_altered_personal_text_found(store, filled):
    store.conn.execute("UPDATE texts SET text = 'someone else' WHERE text = 'review'")
    (fault,) = verify_store(store)
    assert fault.kind == v.TEXT_ALTERED


def test_verify_text_bytes_moved_into_salt_found(store, filled):
    """SHA-256(salt || text) is the same when the text's first byte moves to the salt's end: the
    text the index shows changes ('eview') under the same digest. The salt's fixed length is what
    tells them apart, in verify and wherever a decision reads a text (texts_of)."""
    ((text_id, salt, text, idx),) = store.conn.execute(
        "SELECT t.text_id, t.salt, t.text, et.idx FROM texts t JOIN event_texts et USING (text_id) "
        "WHERE t.text = 'review'").fetchall()
    store.conn.execute("UPDATE texts SET salt = ?, text = ? WHERE text_id = ?",
                       (bytes(salt) + text[:1].encode(), text[1:], text_id))
    (fault,) = verify_store(store)
    assert fault.kind == v.TEXT_ALTERED and fault.where == f"log index {idx}" and "salted hash" in fault.message
    with pytest.raises(IntegrityError, match=f"event {idx}: the stored reason"):
        store.log.texts_of(idx)


def test_verify_two_links_to_one_text_found(store, filled):
    """Verify counts texts against links when every link names a distinct text; a link moved to
    another entry's text breaks that count's premise, so the texts are looked at one by one: the
    moved link's entry and the text it no longer names are both reported."""
    rows = store.conn.execute("SELECT idx, text_id FROM event_texts WHERE field = 'actor' ORDER BY idx").fetchall()
    (_, first_text), (second_idx, second_text) = rows[0], rows[1]
    store.conn.execute("UPDATE event_texts SET text_id = ? WHERE idx = ? AND field = 'actor'", (first_text, second_idx))
    faults = verify_store(store)
    assert {(f.kind, f.where) for f in faults} >= {(v.TEXT_ALTERED, f"log index {second_idx}"),
                                                  (v.TEXT_ALTERED, f"text {second_text}")}


def test_verify_index_row_disagreeing_with_manifest_found(store, filled):
    store.conn.execute("UPDATE segments SET plaintext_sha256 = ? WHERE clip_id = ?", ("0" * 64, filled[1].clip_id))
    (fault,) = verify_store(store)
    assert fault.kind == v.INDEX_MISMATCH and filled[1].clip_id in fault.where


def test_verify_selected_clip_only_checks_its_objects(store, filled):
    sha = store.segments(filled[2].clip_id)[0]["sha256"]
    remove_object(store, sha)
    assert verify_store(store, [filled[0].clip_id]) == []
    assert len(verify_store(store, [filled[2].clip_id])) == 1


def test_verify_unknown_clip_raises_usage_error(store, filled):
    with pytest.raises(UsageError, match="unknown clip"):
        verify_store(store, ["0190c3f2-0000-7000-8000-000000000000"])


def test_verify_interrupted_expiry_leftover_object_found(store, add_clip, clock):
    from datetime import timedelta

    clip = add_clip(age=timedelta(days=15))
    sha = store.segments(clip.clip_id)[0]["sha256"]
    data = store.objects.read(sha)
    store.expire()
    store.objects.put_bytes(data)  # as if the process died between commit and unlink
    (fault,) = verify_store(store)
    assert fault.kind == v.OBJECT_NOT_DELETED and "expire" in fault.hint
    store.expire()
    assert verify_store(store) == []


def test_verify_altered_clip_started_at_found_names_clip_and_log_index(store, filled):
    clip_id = filled[1].clip_id
    # Moving the start a year ahead would keep the clip a year: the ingest leaf says otherwise.
    store.conn.execute("UPDATE clips SET started_at = '2027-11-01T08:00:00.000Z' WHERE clip_id = ?", (clip_id,))
    (fault,) = verify_store(store)
    (ingest,) = [e for e in store.events(clip_id=clip_id) if e["kind"] == "ingest"]
    assert fault.kind == v.INDEX_MISMATCH and "started_at" in fault.message
    assert fault.where == f"clip {clip_id} (log index {ingest['index']})"


@pytest.mark.parametrize("column, value", [("kind", "justify"), ("time", "2020-01-01T00:00:00.000Z"),
                                           ("clip_id", "0190c3f2-0000-7000-8000-000000000000")])
def test_verify_altered_event_row_column_found(store, filled, column, value):
    (idx,) = [e["index"] for e in store.events() if e["kind"] == "view"]
    store.conn.execute(f"UPDATE events SET {column} = ? WHERE idx = ?", (value, idx))
    faults = [f for f in verify_store(store) if f.kind == v.EVENT_ROW_MISMATCH]
    assert [f.where.split(" (")[0] for f in faults] == [f"log index {idx}"]
    assert {"clip_id": "clip"}.get(column, column) in faults[0].message


def test_verify_deleted_hold_row_found(store, filled):
    store.conn.execute("DELETE FROM holds")  # the clip would now expire on time, silently
    (fault,) = verify_store(store)
    assert fault.kind == v.HOLD_MISMATCH and filled[0].clip_id in fault.where and "no row" in fault.message


def test_verify_inserted_hold_row_found(store, filled):
    row = store.conn.execute("SELECT case_text, reason_text, actor_text, created_at FROM holds").fetchone()
    store.conn.execute("INSERT INTO holds (clip_id, kind, case_text, reason_text, actor_text, created_at, "
                       "event_index, after_view) VALUES (?, 'evidence', ?, ?, ?, ?, 999, 1)", (filled[2].clip_id, *row))
    (fault,) = beyond_lock(store, verify_store(store), filled[2].clip_id)
    assert fault.kind == v.HOLD_MISMATCH and fault.where == f"clip {filled[2].clip_id}" and "999" in fault.message


def test_verify_hold_row_released_without_release_event_found(store, filled):
    store.conn.execute("UPDATE holds SET released_at = '2026-11-01T09:00:00.000Z'")
    (fault,) = verify_store(store)
    assert fault.kind == v.HOLD_MISMATCH and "no release event" in fault.message


def test_verify_released_hold_reactivated_in_table_found(store, filled):
    store.release(filled[0].clip_id, case="A-1", reason="closed")
    assert verify_store(store) == []
    store.conn.execute("UPDATE holds SET released_at = NULL, release_event = NULL")
    (fault,) = beyond_lock(store, verify_store(store), filled[0].clip_id)
    assert fault.kind == v.HOLD_MISMATCH and "released this hold" in fault.message


def test_verify_expired_row_without_expire_event_found(store, filled):
    clip_id = filled[2].clip_id
    for sha in [s["sha256"] for s in store.segments(clip_id)]:
        remove_object(store, sha)  # deleted without a trace in the log
    store.conn.execute("UPDATE clips SET state = 'expired', expired_at = '2026-11-01T09:00:00.000Z' "
                       "WHERE clip_id = ?", (clip_id,))
    faults = verify_store(store)
    assert (v.EXPIRE_MISSING, f"clip {clip_id}") in [(f.kind, f.where) for f in faults]
    # and the expiry time no expire event gave it
    assert any(f.kind == v.ROW_MISMATCH and "expired_at" in f.message for f in faults)


@local_objects
def test_verify_unreferenced_object_is_a_note_not_a_fault(store, filled):
    import io

    ref = store.put_object(io.BytesIO(b"copied, then the dock died"), 100)
    (store.root / "tmp" / "put-1-abc").write_bytes(b"partial")
    notes = []
    assert verify_store(store, notes=notes) == []
    assert [(n.kind, n.where) for n in notes] == [(v.ORPHAN_OBJECT, f"object {ref.sha256}"), (v.TMP_LEFTOVER, "tmp/")]
    assert "expire" in notes[0].hint
