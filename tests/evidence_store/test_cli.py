"""bodycam-evidence: every command line of docs/ARCHITECTURE.md through main([...])."""

import json
from datetime import UTC, datetime, timedelta

import pytest

from evidence_store import db
from evidence_store.cli import main
from evidence_store.store import Store
from tests.clipfactory import EMERGENCY, DeviceFixture, make_clip
from tests.evidence_store.conftest import PASSPHRASE, local_only, on_s3, put_and_ingest, tamper_object


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("BODYCAM_SCRYPT_LOG_N", "10")
    monkeypatch.delenv("BODYCAM_STORE", raising=False)
    monkeypatch.delenv("BODYCAM_PASSPHRASE_FILE", raising=False)
    monkeypatch.delenv("BODYCAM_IDENTITY", raising=False)
    pw = tmp_path / "pass"
    pw.write_bytes(PASSPHRASE + b"\n")  # the trailing newline is ignored
    return tmp_path, pw


@pytest.fixture
def cli_store(env, capsys):
    tmp, pw = env
    root = tmp / "store"
    assert main(["--store", str(root), "init", "--passphrase-file", str(pw)]) == 0
    capsys.readouterr()
    store = Store.open(root)
    cam = DeviceFixture.new("cam-07")
    store.enroll(cam.device_id, cam.public_key)
    now = datetime.now(UTC)
    clips = {}
    for name, age, trigger in [("old", timedelta(days=13, hours=23, minutes=50), "announced"),
                               ("emergency", timedelta(hours=1), EMERGENCY), ("fresh", timedelta(hours=2), "announced")]:
        clip = make_clip(tmp / "outbox", cam, store.recipients, started_at=now - age, trigger=trigger)
        put_and_ingest(store, clip)
        clips[name] = clip.clip_id
    store.close()
    return root, pw, clips


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_init_prints_recipient_and_verifier_key(env, capsys):
    tmp, pw = env
    code, out, _ = run(capsys, "--store", tmp / "s", "init", "--passphrase-file", pw)
    assert code == 0
    assert "recipient: age1" in out
    vkey = [line for line in out.splitlines() if line.startswith("verifier key: ")][0].split(": ", 1)[1]
    from evidence_store.clip.note import NoteVerifier

    assert NoteVerifier.from_vkey(vkey).name.startswith("bodycam-evidence")


def test_cli_init_without_passphrase_and_terminal_fails(env, capsys, monkeypatch):
    tmp, _ = env
    monkeypatch.setattr("sys.stdin.isatty", lambda: False, raising=False)
    code, _, err = run(capsys, "--store", tmp / "s", "init")
    assert code == 2 and err.startswith("bodycam-evidence: error: no passphrase")
    assert not (tmp / "s").exists()


def test_cli_store_from_environment(cli_store, capsys, monkeypatch):
    root, _, _ = cli_store
    monkeypatch.setenv("BODYCAM_STORE", str(root))
    code, out, _ = run(capsys, "recipient")
    assert code == 0 and out.startswith("age1")


def test_cli_not_a_store_one_line_no_traceback(env, capsys):
    tmp, _ = env
    code, out, err = run(capsys, "--store", tmp, "list")
    assert code == 1 and out == ""
    assert err.splitlines()[0] == f"bodycam-evidence: error: {tmp} is not an evidence store (no store.json)"
    assert err.splitlines()[1].startswith("hint: ") and "Traceback" not in err


@local_only
@pytest.mark.parametrize("damage", ["removed", "emptied", "another database", "not a database"])
def test_cli_lost_database_refused_never_rebuilt_empty(cli_store, capsys, damage):
    """A store whose evidence.db is gone or swapped must not open as an empty store (no clips,
    a new log): every command refuses with the restore hint, and the file stays as it was."""
    root, _, _ = cli_store
    path = root / "evidence.db"
    for leftover in root.glob("evidence.db-*"):  # a closed store's WAL files are gone already
        leftover.unlink()
    path.unlink()
    if damage == "emptied":
        path.write_bytes(b"")
    elif damage == "another database":
        import sqlite3

        other = sqlite3.connect(path)
        other.execute("CREATE TABLE notes (text TEXT)")
        other.commit()
        other.close()
    elif damage == "not a database":
        path.write_bytes(b"x" * 4096)
    before = path.read_bytes() if path.exists() else None
    for argv in (["list"], ["verify"], ["expire"]):
        code, out, err = run(capsys, "--store", root, *argv)
        assert code != 0 and out == "", (argv, out)
        lines = err.splitlines()
        assert len(lines) == 2 and "evidence.db" in lines[0] and "Traceback" not in err, err
        assert lines[1] == db.HINT_LOST, err
    assert (path.read_bytes() if path.exists() else None) == before
    assert sorted(p.name for p in root.glob("evidence.db*")) == ([] if before is None else ["evidence.db"])


def test_cli_list_json_has_exactly_the_documented_fields(cli_store, capsys):
    root, _, clips = cli_store
    code, out, _ = run(capsys, "--store", root, "list", "--json")
    assert code == 0
    listed = json.loads(out)["clips"]
    assert [c["clip_id"] for c in listed] == [clips["old"], clips["fresh"], clips["emergency"]]
    assert set(listed[0]) == {"clip_id", "device_id", "officer", "recorded_at", "trigger", "justification",
                              "holds", "deadline", "state", "sound"}
    assert all(c["sound"] is False for c in listed)  # the factory's clips are v2, picture only
    by_id = {c["clip_id"]: c for c in listed}
    assert by_id[clips["emergency"]]["justification"] == "pending"
    assert by_id[clips["old"]]["justification"] is None and by_id[clips["old"]]["state"] == "stored"


def test_cli_list_filters(cli_store, capsys):
    root, _, clips = cli_store
    run(capsys, "--store", root, "hold", clips["fresh"], "--case", "StA-1", "--reason", "evidence")
    ids = lambda *a: [c["clip_id"] for c in json.loads(run(capsys, "--store", root, "list", "--json", *a)[1])["clips"]]  # noqa: E731
    assert ids("--held") == [clips["fresh"]]
    assert ids("--expiring") == [clips["old"]]
    assert ids("--device", "cam-99") == []
    assert len(ids("--officer", "PK-4711")) == 3
    assert ids("--since", "2000-01-01", "--until", "2000-12-31") == []
    code, out, _ = run(capsys, "--store", root, "list")
    assert code == 0 and "CLIP" in out.splitlines()[0] and "StA-1" in out


def test_cli_show_json_adds_segments_and_events(cli_store, capsys):
    root, _, clips = cli_store
    code, out, _ = run(capsys, "--store", root, "show", clips["old"], "--json")
    body = json.loads(out)
    assert code == 0 and body["segments"][0]["name"] == "seg-00000.age"
    assert set(body["segments"][0]) == {"name", "bytes", "sha256"} and len(body["segments"][0]["sha256"]) == 64
    assert [e["kind"] for e in body["events"]] == ["ingest"]


def test_cli_show_unknown_clip_one_line(cli_store, capsys):
    root, _, _ = cli_store
    unknown = "01a22f0e-68f1-7831-9f5c-000000000000"
    code, _, err = run(capsys, "--store", root, "show", unknown)
    assert code == 2 and err.startswith(f"bodycam-evidence: error: unknown clip {unknown}")
    code, _, err = run(capsys, "--store", root, "show", "nope")
    assert code == 2 and err.startswith("bodycam-evidence: error: CLIP: unknown clip 'nope': not a clip id")


def test_cli_hold_release_justify_logged(cli_store, capsys):
    root, _, clips = cli_store
    assert run(capsys, "--store", root, "hold", clips["old"], "--case", "OWi-7", "--reason", "fine", "--kind", "evidence")[0] == 0
    assert run(capsys, "--store", root, "release", clips["old"], "--case", "OWi-7", "--reason", "paid")[0] == 0
    assert run(capsys, "--store", root, "justify", clips["emergency"], "--reason", "knife")[0] == 0
    code, out, _ = run(capsys, "--store", root, "log", "--json")
    assert [e["kind"] for e in json.loads(out)["events"]][-3:] == ["hold", "release", "justify"]
    code, out, _ = run(capsys, "--store", root, "log", "--clip", clips["old"])
    assert code == 0 and "release" in out and "reason=paid" in out


@pytest.mark.parametrize("argv", [["hold", "{old}", "--reason", "r"], ["release", "{old}", "--reason", "r"]])
def test_cli_hold_or_release_without_case_one_line_nothing_logged(cli_store, capsys, argv):
    root, _, clips = cli_store
    before = len(json.loads(run(capsys, "--store", root, "log", "--json")[1])["events"])
    code, _, err = run(capsys, "--store", root, *[a.format(**clips) for a in argv])
    assert code == 2 and err.startswith("bodycam-evidence: error: ") and "--case REF" in err
    assert len(json.loads(run(capsys, "--store", root, "log", "--json")[1])["events"]) == before


@pytest.mark.parametrize("argv", [["hold", "{old}", "--case", "A"], ["justify", "{emergency}"],
                                  ["view", "{old}", "--player", "cat"], ["export", "{old}", "--out", "x"]])
def test_cli_missing_reason_refused_nothing_logged(cli_store, capsys, argv):
    root, pw, clips = cli_store
    before = run(capsys, "--store", root, "checkpoint")[1]
    code, out, err = run(capsys, "--store", root, *[a.format(**clips) for a in argv], "--passphrase-file", pw) \
        if argv[0] in ("view", "export") else run(capsys, "--store", root, *[a.format(**clips) for a in argv])
    assert code == 2 and "reason is required" in err and len(err.strip().splitlines()) == 2
    assert run(capsys, "--store", root, "checkpoint")[1] == before


def test_cli_view_wrong_passphrase_exit_4_nothing_logged(cli_store, capsys, tmp_path):
    root, _, clips = cli_store
    wrong = tmp_path / "wrong"
    wrong.write_text("wrong\n")
    before = run(capsys, "--store", root, "checkpoint")[1]
    code, _, err = run(capsys, "--store", root, "view", clips["old"], "--reason", "r", "--player", "cat",
                       "--passphrase-file", wrong)
    assert code == 4 and err.strip() == "bodycam-evidence: error: wrong passphrase"
    assert run(capsys, "--store", root, "checkpoint")[1] == before


def test_cli_view_passphrase_from_environment_and_identity_elsewhere(cli_store, capsys, monkeypatch, tmp_path):
    root, pw, clips = cli_store
    moved = tmp_path / "elsewhere.age"
    (root / "identity.age").rename(moved)
    monkeypatch.setenv("BODYCAM_PASSPHRASE_FILE", str(pw))
    code, _, err = run(capsys, "--store", root, "view", clips["old"], "--reason", "r", "--player", "cat")
    assert code == 1 and "no identity file" in err and "--identity" in err
    monkeypatch.setenv("BODYCAM_IDENTITY", str(moved))
    out_file = tmp_path / "count"
    code, out, _ = run(capsys, "--store", root, "view", clips["old"], "--reason", "review",
                       "--player", f"sh -c 'wc -c > {out_file}'")
    assert code == 0 and "played" in out and int(out_file.read_text()) > 10000


def test_cli_expire_now_without_dry_run_refused(cli_store, capsys):
    root, _, _ = cli_store
    code, _, err = run(capsys, "--store", root, "expire", "--now", "2030-01-01T00:00:00Z")
    assert code == 2 and "--dry-run" in err


def test_cli_expire_dry_run_previews_and_changes_nothing(cli_store, capsys):
    root, _, clips = cli_store
    code, out, _ = run(capsys, "--store", root, "expire", "--dry-run", "--now", "2030-01-01T00:00:00Z")
    assert code == 0 and out.count("would delete clip") == 3
    assert len(json.loads(run(capsys, "--store", root, "list", "--json")[1])["clips"]) == 3


def test_cli_expire_system_clock_deletes_due_clip_verify_ok(cli_store, capsys):
    root, _, clips = cli_store
    code, out, _ = run(capsys, "--store", root, "expire")
    assert code == 0 and f"deleted clip {clips['old']}" in out and "deleted 1, kept 2" in out
    listed = json.loads(run(capsys, "--store", root, "list", "--json")[1])["clips"]
    assert clips["old"] not in [c["clip_id"] for c in listed]
    every = json.loads(run(capsys, "--store", root, "list", "--all", "--json")[1])["clips"]
    assert {c["clip_id"]: c["state"] for c in every}[clips["old"]] == "expired"
    code, out, _ = run(capsys, "--store", root, "verify")
    assert code == 0 and out.startswith("ok:")


def test_cli_verify_fault_listed_with_hint_exit_3(cli_store, capsys):
    root, _, clips = cli_store
    store = Store.open(root)
    sha = store.segments(clips["fresh"])[0]["sha256"]
    tamper_object(store, sha, b"x" + store.objects.read(sha)[1:])
    code, out, _ = run(capsys, "--store", root, "verify")
    assert code == 3
    assert f"FAULT object-altered: clip {clips['fresh']}" in out
    assert ("list-object-versions" if on_s3(store) else "hint: restore objects/") in out
    assert run(capsys, "--store", root, "verify", clips["old"])[0] == 0


def test_cli_checkpoint_prints_signed_note(cli_store, capsys):
    root, _, _ = cli_store
    code, out, _ = run(capsys, "--store", root, "checkpoint")
    lines = out.splitlines()
    # 5 entries: the config event of init, the enrollment, three ingests.
    assert code == 0 and lines[1] == "5" and lines[4].startswith("\u2014 ")


def test_cli_report_month(cli_store, capsys):
    root, _, clips = cli_store
    month = datetime.now(UTC).strftime("%Y-%m")
    code, out, _ = run(capsys, "--store", root, "report", "--month", month, "--json")
    report = json.loads(out)
    assert code == 0 and report["without_announcement"] == 1
    code, out, _ = run(capsys, "--store", root, "report")
    assert code == 0 and "without announcement" in out
    assert run(capsys, "--store", root, "report", "--month", "2026-13")[0] == 2


def test_cli_verbose_shows_traceback(env, capsys):
    tmp, _ = env
    code, _, err = run(capsys, "-v", "--store", tmp, "list")
    assert code == 1 and "Traceback" in err


def test_cli_unknown_option_one_line_exit_2(cli_store, capsys):
    root, _, _ = cli_store
    code, _, err = run(capsys, "--store", root, "list", "--bogus")
    assert code == 2 and err.startswith("bodycam-evidence: error: unrecognized arguments: --bogus")


@local_only
def test_cli_hold_database_locked_beyond_timeout_one_line_busy(cli_store, capsys, monkeypatch):
    import sqlite3

    from evidence_store import db

    root, _, clips = cli_store
    monkeypatch.setattr(db, "BUSY_TIMEOUT_MS", 50)  # not a minute: the other writer never lets go
    other = sqlite3.connect(root / "evidence.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        code, out, err = run(capsys, "--store", root, "hold", clips["fresh"], "--case", "A", "--reason", "r")
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert code == 1
    assert err.splitlines()[0].startswith("bodycam-evidence: error: the evidence database is busy")
    assert err.splitlines()[1] == "hint: another dock or command holds the lock; try again"
    assert "Traceback" not in err


def test_cli_verify_orphan_object_noted_exit_zero(cli_store, capsys):
    import io

    root, _, _ = cli_store
    with Store.open(root) as store:
        ref = store.put_object(io.BytesIO(b"copied, then the dock died"), 100)
    code, out, _ = run(capsys, "--store", root, "verify")
    assert code == 0
    assert f"note orphan-object: object {ref.sha256}: no clip or quarantine item names it" in out
    assert out.rstrip().splitlines()[-1].startswith("ok:")


def test_cli_quarantined_copy_claiming_real_clip_listed_and_shown_under_its_own_id(cli_store, capsys):
    import io

    root, _, clips = cli_store
    real = clips["fresh"]
    with Store.open(root) as store:
        forged = make_clip(root.parent / "forged", DeviceFixture.new("cam-07"), store.recipients, clip_id=real)
        refs = {n: store.put_object(io.BytesIO(d), len(d)) for n, d in forged.segments.items()}
        qid = store.quarantine(reason="manifest signature does not verify", device_id="cam-07", clip_id=real,
                               manifest_bytes=forged.manifest_bytes, journal_bytes=forged.journal_bytes, objects=refs)
        real_segments = {s["sha256"] for s in store.segments(real)}
    code, out, _ = run(capsys, "--store", root, "list", "--json")
    listed = json.loads(out)["clips"]
    assert [c["clip_id"] for c in listed].count(real) == 1
    (item,) = [c for c in listed if c["state"] == "quarantined"]
    assert (item["clip_id"], item["claimed_clip_id"]) == (qid, real)
    # show of the real clip: only its own segments and events.
    code, out, _ = run(capsys, "--store", root, "show", real, "--json")
    body = json.loads(out)
    assert {s["sha256"] for s in body["segments"]} == real_segments and body["state"] == "stored"
    assert [e["kind"] for e in body["events"]] == ["ingest"]
    # show of the quarantine item: its own objects and its quarantine event.
    code, out, _ = run(capsys, "--store", root, "show", qid, "--json")
    body = json.loads(out)
    assert {s["sha256"] for s in body["segments"]} == {r.sha256 for r in refs.values()}
    assert [e["kind"] for e in body["events"]] == ["quarantine"]
    code, out, _ = run(capsys, "--store", root, "show", qid)
    assert f"claims clip    {real}" in out
    # log --clip QID: the actor's text is found (joined by event index, not by clip id).
    code, out, _ = run(capsys, "--store", root, "log", "--clip", qid, "--json")
    (event,) = json.loads(out)["events"]
    assert event["kind"] == "quarantine" and event["actor"] not in (None, "[erased]")
