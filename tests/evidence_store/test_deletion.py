"""Early deletion with four eyes through the command line: ``delete`` asks, a different user
``approve``s. The actor is the effective user plus SUDO_USER, so tests vary SUDO_USER."""

import json
from datetime import UTC, datetime, timedelta

import pytest

from evidence_store.cli import main
from evidence_store.store import Store
from tests.clipfactory import DeviceFixture, make_clip
from tests.evidence_store.conftest import PASSPHRASE, put_and_ingest


@pytest.fixture
def cli(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("BODYCAM_SCRYPT_LOG_N", "10")
    monkeypatch.delenv("BODYCAM_STORE", raising=False)
    pw = tmp_path / "pass"
    pw.write_bytes(PASSPHRASE)
    monkeypatch.setenv("BODYCAM_PASSPHRASE_FILE", str(pw))
    root = tmp_path / "store"
    assert main(["--store", str(root), "init"]) == 0
    store = Store.open(root)
    cam = DeviceFixture.new("cam-07")
    store.enroll(cam.device_id, cam.public_key)
    clips = []
    for hours in (3, 2):
        clip = make_clip(tmp_path / "outbox", cam, store.recipients,
                         started_at=datetime.now(UTC) - timedelta(hours=hours))
        put_and_ingest(store, clip)
        clips.append(clip)
    store.close()
    capsys.readouterr()

    def run(*argv, user=None):
        if user:
            monkeypatch.setenv("SUDO_USER", user)
        else:
            monkeypatch.delenv("SUDO_USER", raising=False)
        code = main(["--store", str(root), *map(str, argv)])
        got = capsys.readouterr()
        return code, got.out, got.err

    return root, clips, run


def request(run, clip, user="alice"):
    code, out, err = run("delete", clip.clip_id, "--reason", "core of private life", "--json", user=user)
    assert code == 0, err
    return json.loads(out)["request_id"]


def test_deletion_approved_by_second_user_deletes_objects_log_verifies(cli):
    root, clips, run = cli
    rid = request(run, clips[0])
    code, out, err = run("approve", rid, "--reason", "agreed: § 53 StPO place", user="bob")
    assert code == 0, err
    assert "deleted" in out
    store = Store.open(root)
    try:
        info = store.clip(clips[0].clip_id)
        kinds = [e["kind"] for e in store.events(clip_id=clips[0].clip_id)]
        gone = [s["sha256"] for s in store.segments(clips[0].clip_id)] + [info.manifest_sha256]
        assert info.state == "expired"
        assert not any(store.objects.exists(sha) for sha in gone)
        assert store.clip(clips[1].clip_id).state == "stored"  # the other clip untouched
        approve = next(e for e in store.events(clip_id=clips[0].clip_id) if e["kind"] == "delete-approve")
        assert approve["actor"] == "bob (as root)" and approve["request"] == int(rid)
        leaf = json.loads(store.log.leaf(approve["index"]))
        assert leaf["reason"] != "agreed: § 53 StPO place" and len(leaf["reason"]) == 64  # salted hash
    finally:
        store.close()
    assert kinds[-3:] == ["delete-request", "delete-approve", "expire"]
    code, out, _ = run("verify")
    assert code == 0, out


def test_deletion_self_approval_refused_clip_kept(cli):
    root, clips, run = cli
    rid = request(run, clips[0], user="alice")
    code, _, err = run("approve", rid, "--reason", "me again", user="alice")
    assert code == 2 and "cannot approve" in err and err.count("\n") <= 2
    store = Store.open(root)
    try:
        assert store.clip(clips[0].clip_id).state == "stored"
        assert "delete-approve" not in [e["kind"] for e in store.events(clip_id=clips[0].clip_id)]
    finally:
        store.close()


def test_deletion_held_clip_refused_both_steps(cli):
    root, clips, run = cli
    rid = request(run, clips[0])
    assert run("hold", clips[0].clip_id, "--case", "StA-9", "--reason", "evidence", user="carol")[0] == 0
    code, _, err = run("approve", rid, "--reason", "ok", user="bob")
    assert code == 2 and "held" in err
    code, _, err = run("delete", clips[1].clip_id, "--reason", "x", user="alice")
    assert code == 0
    assert run("hold", clips[1].clip_id, "--case", "StA-9", "--reason", "evidence", user="carol")[0] == 0
    code, _, err = run("delete", clips[1].clip_id, "--reason", "again", user="dave")
    assert code == 2  # already requested, and held
    store = Store.open(root)
    try:
        assert store.clip(clips[0].clip_id).state == "held"
    finally:
        store.close()


def test_deletion_pending_request_named_by_list_and_show(cli):
    root, clips, run = cli
    rid = request(run, clips[1])
    code, out, _ = run("list")
    assert f"pending deletion request {rid}" in out and clips[1].clip_id in out
    code, out, _ = run("list", "--json")
    assert json.loads(out)["pending_deletions"][0]["request_id"] == rid
    code, out, _ = run("show", clips[1].clip_id)
    assert f"requested as {rid}" in out
    run("approve", rid, "--reason", "ok", user="bob")
    code, out, _ = run("list", "--json")
    assert json.loads(out)["pending_deletions"] == []


@pytest.mark.parametrize("argv, words", [
    (["approve", "999", "--reason", "x"], "no deletion request"),
    (["approve", "abc", "--reason", "x"], "not a deletion request id"),
    (["delete", "no-such-clip", "--reason", "x"], "unknown clip"),
    (["delete", "CLIP", ], "reason"),
])
def test_deletion_bad_input_one_line(cli, argv, words):
    root, clips, run = cli
    argv = [clips[0].clip_id if a == "CLIP" else a for a in argv]
    code, _, err = run(*argv, user="bob")
    assert code == 2 and words in err and "Traceback" not in err


def test_deletion_approved_twice_refused(cli):
    root, clips, run = cli
    rid = request(run, clips[0])
    assert run("approve", rid, "--reason", "ok", user="bob")[0] == 0
    code, _, err = run("approve", rid, "--reason", "ok", user="carol")
    assert code == 2 and "already approved" in err


@pytest.mark.parametrize("actor, who", [("alice (as root)", "alice"), ("alice", "alice"),
                                        ("mallory (as alice)", "alice"), (None, None)])
def test_deletion_person_trusts_sudo_user_only_under_root(actor, who):
    from evidence_store.deletion import person

    assert person(actor) == who


def test_deletion_requester_row_edited_approval_refused_clip_kept(cli):
    # An insider who rewrites the requester's name in the index (to approve their own request as
    # "someone else") meets the salted digest in the request's leaf.
    root, clips, run = cli
    rid = request(run, clips[0], user="alice")
    with Store.open(root) as insider:  # an autocommit write on either backend
        insider.conn.execute("UPDATE texts SET text = 'mallory (as root)' WHERE text_id IN "
                             "(SELECT text_id FROM event_texts WHERE idx = ? AND field = 'actor')", (int(rid),))
    code, _, err = run("approve", rid, "--reason", "looks fine", user="alice")
    assert code != 0
    assert "does not match its log entry" in err and "Traceback" not in err
    store = Store.open(root)
    try:
        assert store.clip(clips[0].clip_id).state == "stored"
    finally:
        store.close()
