"""logstate.derive: the store's state from leaves alone (what expiry and verify trust)."""

from evidence_store import events as ev
from evidence_store import logstate


def _leaves(events: list[ev.Event]) -> tuple[list[tuple[int, dict]], list[str]]:
    """Leaf bodies and hashes as the log would write them (prev links per subject)."""
    from evidence_store.clip import canonical

    heads: dict[str, str | None] = {}
    bodies, hashes = [], []
    for index, event in enumerate(events):
        leaf = ev.leaf_bytes(event, index, heads.get(event.subject), {})
        heads[event.subject] = ev.leaf_hash_hex(leaf)
        bodies.append((index, canonical.loads(leaf, "leaf")))
        hashes.append(heads[event.subject])
    return bodies, hashes


def test_logstate_old_quarantine_expire_found_through_prev_chain():
    """An expire event written before it named the quarantine id still expires that item."""
    t = "2026-11-01T08:00:00.000Z"
    bodies, hashes = _leaves([
        ev.Event(ev.QUARANTINE, t, "q-1", data={"quarantine": "q-1", "objects": [{"sha256": "a" * 64}]}),
        ev.Event(ev.QUARANTINE, t, "q-2", data={"quarantine": "q-2", "objects": [{"sha256": "b" * 64}]}),
        ev.Event(ev.EXPIRE, t, "q-2", data={"objects": ["b" * 64]}),  # the old form: no "quarantine"
    ])
    state = logstate.derive(bodies, lambda i: hashes[i], len(bodies))
    assert state.quarantine["q-2"].expired_index == 2 and state.quarantine["q-1"].expired_index is None
    assert state.live_objects() == {"a" * 64}
    assert set(state.expired_objects) == {"b" * 64}


def test_logstate_release_of_another_clips_hold_ignored():
    t = "2026-11-01T08:00:00.000Z"
    bodies, hashes = _leaves([
        ev.Event(ev.HOLD, t, "c-1", clip="c-1", data={"hold_kind": "evidence"}),
        ev.Event(ev.RELEASE, t, "c-2", clip="c-2", data={"hold_event": 0}),  # names c-1's hold
    ])
    state = logstate.derive(bodies, lambda i: hashes[i], len(bodies))
    assert state.active_holds() == {"c-1": ["evidence"]}


def test_logstate_device_chain_position_from_ingest_events():
    t = "2026-11-01T08:00:00.000Z"
    bodies, hashes = _leaves([
        ev.Event(ev.ENROLL, t, "device:cam-1", device="cam-1", data={"public_key": "k", "profile": {}}),
        ev.Event(ev.INGEST, t, "c-1", clip="c-1", device="cam-1", data={"sequence": 3, "manifest": "m3"}),
        ev.Event(ev.INGEST, t, "c-0", clip="c-0", device="cam-1", data={"sequence": 1, "manifest": "m1"}),
        ev.Event(ev.REVOKE, t, "device:cam-1", device="cam-1"),
    ])
    device = logstate.derive(bodies, lambda i: hashes[i], len(bodies)).devices["cam-1"]
    assert (device.last_sequence, device.last_manifest, device.revoked) == (3, "m3", True)


def test_logstate_dockings_in_order_and_the_one_before_each_index():
    t, d1, d2 = "2026-11-01T08:00:00.000Z", "2026-11-02T18:00:00.000Z", "2026-11-03T18:00:00.000Z"
    bodies, hashes = _leaves([
        ev.Event(ev.ENROLL, t, "device:cam-1", device="cam-1", data={"public_key": "k", "profile": {}}),
        ev.Event(ev.DOCKING, d1, "device:cam-1", device="cam-1", data={"at": d1}),
        ev.Event(ev.INGEST, t, "c-1", clip="c-1", device="cam-1", data={"sequence": 0, "manifest": "m0"}),
        ev.Event(ev.DOCKING, d2, "device:cam-1", device="cam-1", data={"at": d2}),
        ev.Event(ev.DOCKING, d2, "device:cam-2", device="cam-2", data={"at": d2}),  # never enrolled: ignored
    ])
    state = logstate.derive(bodies, lambda i: hashes[i], len(bodies))
    device = state.devices["cam-1"]
    assert device.dockings == [(1, d1), (3, d2)] and device.last_docking == d2
    assert [device.docking_before(i) for i in (0, 1, 2, 3, 4)] == [None, None, d1, d1, d2]
    assert "cam-2" not in state.devices
