"""The event log: leaves, salted personal fields, per-clip chains, checkpoints, proofs, concurrency."""

import json
import multiprocessing

from evidence_store import checkpoint as cpmod
from evidence_store import events as ev
from evidence_store import merkle
from evidence_store.store import Store
from evidence_store.verify import verify_store


def test_log_leaf_holds_salted_hashes_not_personal_texts(store, add_clip):
    clip = add_clip()
    store.hold(clip.clip_id, case="StA-2026-123", reason="assault on officer")
    leaf = store.log.leaf(store.log.size() - 1)
    body = json.loads(leaf)
    assert b"StA-2026-123" not in leaf and b"assault" not in leaf and b"officer-a" not in leaf
    salt, text = store.conn.execute(
        "SELECT salt, text FROM texts WHERE text = 'StA-2026-123'").fetchone()
    assert body["case"] == ev.salted_digest(salt, text)


def test_log_events_chain_per_clip_through_prev(store, add_clip):
    clip = add_clip()
    store.log_access("view", clip.clip_id, reason="review")
    store.hold(clip.clip_id, case="A", reason="r")
    leaves = [store.log.leaf(e["index"]) for e in store.events(clip_id=clip.clip_id)]
    assert json.loads(leaves[0])["prev"] is None
    for before, after in zip(leaves, leaves[1:]):
        assert json.loads(after)["prev"] == merkle.leaf_hash(before).hex()


def test_log_every_appending_command_signs_a_checkpoint(store, add_clip):
    before = len(store.log.checkpoints())
    clip = add_clip()
    store.log_access("view", clip.clip_id, reason="x")
    sizes = [s for s, _ in store.log.checkpoints()]
    assert len(sizes) == before + 2 and sizes[-1] == store.log.size()


def test_log_checkpoint_is_c2sp_and_root_matches(store, add_clip):
    add_clip()
    note = store.log.latest_checkpoint()
    cp = cpmod.open_checkpoint(note, store.verifier, store.origin)
    assert cp.size == store.log.size() and cp.root == store.log.root()
    assert note.decode().splitlines()[0] == store.origin


def test_log_inclusion_and_consistency_proofs_verify(store, add_clip):
    for _ in range(5):
        add_clip()
    size = store.log.size()
    root = store.log.root()
    for i in range(size):
        proof = store.log.inclusion_proof(i, size)
        merkle.verify_inclusion(i, size, merkle.leaf_hash(store.log.leaf(i)), proof, root)
    for old in range(1, size):
        merkle.verify_consistency(old, size, store.log.root(old), root, store.log.consistency_proof(old, size))


def test_log_tlog_proof_verifies_with_checkpoint_module(store, add_clip):
    add_clip()
    note = store.log.latest_checkpoint()
    proof = store.log.tlog_proof(1, note)
    assert cpmod.verify_tlog_proof(proof, store.log.leaf(1), store.verifier, store.origin).size == store.log.size()


def test_log_append_many_matches_single_appends(tmp_path, store):
    times = "2026-11-01T08:00:00.000Z"
    batch = [ev.Event("gap", times, "device:x", device="x", data={"sequence": i}) for i in range(37)]
    with store._command() as tx:
        tx.append_many(batch)
    assert merkle.tree_hash(store.log.size(), store.log.read_hash) == merkle.root_from_leaf_hashes(
        [merkle.leaf_hash(store.log.leaf(i)) for i in range(store.log.size())])
    assert verify_store(store) == []


def _appender(root: str, worker: int, count: int) -> None:
    store = Store.open(root, actor=f"worker-{worker}")
    for i in range(count):
        with store._command() as tx:
            tx.append(ev.Event("gap", tx.time, f"device:w{worker}", device=f"w{worker}", data={"sequence": i}))
    store.close()


def test_log_two_processes_appending_at_once_stay_consistent(store):
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_appender, args=(str(store.root), w, 40)) for w in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    assert store.log.size() == 81  # and init's config event
    per_worker = {}
    for e in store.events()[1:]:  # after init's config event
        per_worker.setdefault(e["device"], []).append(e["sequence"])
    assert per_worker == {"w0": list(range(40)), "w1": list(range(40))}
    assert verify_store(store) == []
