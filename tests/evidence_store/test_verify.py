"""verify: one flipped byte anywhere (object, leaf, stored hash, checkpoint) is found and named."""

import os

import pytest

from evidence_store import merkle
from evidence_store import verify as v
from evidence_store.errors import UsageError
from evidence_store.verify import verify_store


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


def kinds(faults):
    return {f.kind for f in faults}


def test_verify_sound_store_no_faults(store, filled):
    assert verify_store(store) == []


@pytest.mark.parametrize("which", ["segment", "manifest", "journal"])
def test_verify_flipped_byte_in_object_named(store, filled, which):
    info = store.clip(filled[1].clip_id)
    sha = {"segment": store.segments(info.clip_id)[0]["sha256"], "manifest": info.manifest_sha256,
           "journal": info.journal_sha256}[which]
    path = store.objects.path(sha)
    os.chmod(path, 0o644)
    path.write_bytes(flip(path.read_bytes(), 100))
    faults = verify_store(store)
    assert [(f.kind, f.where) for f in faults if f.kind == v.OBJECT_ALTERED] == [(v.OBJECT_ALTERED, f"clip {info.clip_id}")]
    assert sha in faults[0].message and "restore objects/" in faults[0].hint


def test_verify_missing_object_named(store, filled):
    sha = store.segments(filled[2].clip_id)[0]["sha256"]
    store.objects.path(sha).unlink()
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


def test_verify_index_row_disagreeing_with_manifest_found(store, filled):
    store.conn.execute("UPDATE segments SET plaintext_sha256 = ? WHERE clip_id = ?", ("0" * 64, filled[1].clip_id))
    (fault,) = verify_store(store)
    assert fault.kind == v.INDEX_MISMATCH and filled[1].clip_id in fault.where


def test_verify_selected_clip_only_checks_its_objects(store, filled):
    sha = store.segments(filled[2].clip_id)[0]["sha256"]
    store.objects.path(sha).unlink()
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
    path = store.objects.path(sha)
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(data)  # as if the process died between commit and unlink
    (fault,) = verify_store(store)
    assert fault.kind == v.OBJECT_NOT_DELETED and "expire" in fault.hint
    store.expire()
    assert verify_store(store) == []
