"""The central backend (PostgreSQL) on its own: bad input says one line and changes nothing,
credentials never pass through a URL or the store folder, and many writers at once (killed at
random instants) lose and double nothing. The rest of the store's suite runs on it too (the
``backend`` parameter of conftest.py)."""

from __future__ import annotations

import json
import multiprocessing
import pickle
import random
import time
from datetime import timedelta
from pathlib import Path

import pytest

from evidence_store import postgres
from evidence_store.cli import main
from evidence_store.db import DatabaseBusy, DatabaseError, DatabaseReadOnly
from evidence_store.errors import UsageError
from evidence_store.store import Store
from evidence_store.verify import verify_store
from tests.clipfactory import DeviceFixture, make_clip
from tests.evidence_store.conftest import PASSPHRASE, TEST_LOG_N, put_and_ingest

pytestmark = pytest.mark.usefixtures("postgres_server")


@pytest.fixture
def pw(tmp_path, monkeypatch):
    monkeypatch.delenv("BODYCAM_STORE", raising=False)
    monkeypatch.setenv("BODYCAM_SCRYPT_LOG_N", str(TEST_LOG_N))
    path = tmp_path / "pass"
    path.write_bytes(PASSPHRASE + b"\n")
    return path


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def new_store(root, url, **kwargs) -> Store:
    return Store.init(root, PASSPHRASE, scrypt_log_n=TEST_LOG_N, database=url, actor="admin", **kwargs)


def test_central_cli_init_keeps_url_not_password_and_opens(tmp_path, pw, postgres_url, postgres_server, capsys):
    code, out, err = run(capsys, "--store", tmp_path / "s", "init", "--passphrase-file", pw, "--database", postgres_url)
    assert code == 0, err
    assert f"index and log: {postgres_url}" in out
    config = json.loads((tmp_path / "s" / "store.json").read_text())
    assert config["database"] == postgres_url
    assert not (tmp_path / "s" / "evidence.db").exists()
    assert postgres_server.password not in "".join(p.read_text(errors="replace") for p in (tmp_path / "s").rglob("*")
                                                   if p.is_file())
    code, out, err = run(capsys, "--store", tmp_path / "s", "verify")
    assert code == 0, err


def test_central_url_with_password_refused_before_anything(tmp_path, pw, postgres_server, capsys):
    url = postgres_server.url("x").replace("bodycam@", f"bodycam:{postgres_server.password}@")
    code, _, err = run(capsys, "--store", tmp_path / "s", "init", "--passphrase-file", pw, "--database", url)
    assert code == 2
    lines = err.splitlines()
    assert lines[0] == ("bodycam-evidence: error: the database URL contains a password; "
                        "it would be written into store.json in clear")
    assert lines[1].startswith("hint: give the password the libpq way")
    assert postgres_server.password not in err
    assert not (tmp_path / "s").exists()
    with pytest.raises(UsageError, match="contains a password"):
        postgres.check_url(postgres_server.url("x") + "&password=secret")


def test_central_unreachable_server_one_line_nothing_created(tmp_path, pw, capsys):
    url = f"postgresql://bodycam@/db?host={tmp_path}&port=5999"  # no server has a socket there
    code, _, err = run(capsys, "--store", tmp_path / "s", "init", "--passphrase-file", pw, "--database", url)
    assert code == 1
    assert err.startswith(f"bodycam-evidence: error: cannot reach the database server of {url}")
    assert err.splitlines()[1] == postgres.HINT_SERVER and "Traceback" not in err
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("url", [
    "postgresql://bodycam@/" + "d" * 5000 + "?host={tmp}&port=5999",
    "postgresql://bodycam@/line\nbreak?host={tmp}&port=5999",
    "mysql://" + "x" * 5000,
    "postgresql://bodycam@/db?host={tmp}&port=5999&sslmode=\u2028bogus",
])
def test_central_typed_url_echoed_short_and_on_one_line(tmp_path, pw, capsys, url):
    url = url.replace("{tmp}", str(tmp_path))
    code, _, err = run(capsys, "--store", tmp_path / "s", "init", "--passphrase-file", pw, "--database", url)
    assert code in (1, 2)
    lines = err.splitlines()
    assert lines[0].startswith("bodycam-evidence: error: ") and "Traceback" not in err
    assert len(lines) <= 2 and all(len(line) < 700 for line in lines), err
    assert not (tmp_path / "s").exists()


def test_central_wrong_credentials_one_line_nothing_created(tmp_path, pw, postgres_url, monkeypatch, capsys):
    wrong = tmp_path / "pgpass"
    wrong.write_text("*:*:*:bodycam:not-the-password\n")
    wrong.chmod(0o600)
    monkeypatch.setenv("PGPASSFILE", str(wrong))
    code, _, err = run(capsys, "--store", tmp_path / "s", "init", "--passphrase-file", pw, "--database", postgres_url)
    assert code == 1
    assert err.splitlines()[0] == (f"bodycam-evidence: error: cannot connect to {postgres_url}: "
                                   "the server refused the credentials")
    assert err.splitlines()[1] == postgres.HINT_CREDENTIALS
    assert not (tmp_path / "s").exists()


def test_central_database_of_another_store_refused(tmp_path, postgres_server, monkeypatch):
    for key, value in postgres_server.env().items():
        monkeypatch.setenv(key, value)
    first, second = postgres_server.create_database(), postgres_server.create_database()
    new_store(tmp_path / "a", first).close()
    new_store(tmp_path / "b", second).close()
    with pytest.raises(UsageError, match="already holds an evidence store"):
        new_store(tmp_path / "c", first)
    assert not (tmp_path / "c").exists()
    config_path = tmp_path / "b" / "store.json"
    config = json.loads(config_path.read_text())
    config_path.write_text(json.dumps(config | {"database": first}))
    with pytest.raises(DatabaseError, match="holds another store's log"):
        Store.open(tmp_path / "b")


def test_central_newer_schema_refused(tmp_path, postgres_server, postgres_url):
    new_store(tmp_path / "s", postgres_url).close()
    postgres_server.psql("UPDATE bodycam_schema SET version = 99", dbname=postgres_url.split("/")[3].split("?")[0])
    with pytest.raises(DatabaseError, match="schema version 99 is newer than this program"):
        Store.open(tmp_path / "s")


def test_central_log_head_held_beyond_timeout_busy(tmp_path, postgres_url, monkeypatch):
    import psycopg

    store = new_store(tmp_path / "s", postgres_url)
    monkeypatch.setattr(postgres, "LOCK_TIMEOUT_MS", 50)  # not a minute: the other writer never lets go
    other = psycopg.connect(postgres_url, autocommit=True)
    try:
        other.execute("BEGIN")
        other.execute("SELECT size FROM log_head WHERE id = 1 FOR UPDATE")
        size = store.log.size()
        with pytest.raises(DatabaseBusy, match="the evidence database is busy"):
            store.enroll("cam-01", DeviceFixture.new("cam-01").public_key)
        assert store.log.size() == size and store.device("cam-01") is None
    finally:
        other.close()
        store.close()


def test_central_read_only_database_typed_error_changes_nothing(tmp_path, postgres_server, postgres_url):
    store = new_store(tmp_path / "s", postgres_url)
    store.close()
    name = postgres_url.split("/")[3].split("?")[0]
    postgres_server.psql(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')
    store = Store.open(tmp_path / "s")
    try:
        with pytest.raises(DatabaseReadOnly):
            store.enroll("cam-01", DeviceFixture.new("cam-01").public_key)
        assert store.devices() == []
    finally:
        store.close()


# -- many writers, killed at random instants ---------------------------------------------------


def _ingester(root: str, clips_file: str, started) -> None:
    """A dock's work for one camera: every clip put and ingested (those already in are no-ops).
    ``started`` is set once the store is open, so the kill lands in the ingests, not in start-up."""
    clips = pickle.loads(Path(clips_file).read_bytes())
    with Store.open(root, actor="dock") as store:
        started.set()
        for clip in clips:
            put_and_ingest(store, clip)


def test_central_writers_killed_at_random_lose_and_double_nothing(tmp_path, postgres_url):
    cameras, per_camera = 4, 10
    store = new_store(tmp_path / "s", postgres_url)
    files, expected = [], set()
    for n in range(cameras):
        cam = DeviceFixture.new(f"cam-{n:02d}")
        store.enroll(cam.device_id, cam.public_key)
        clips = [make_clip(tmp_path / f"outbox-{n}", cam, store.recipients, started_at=store.now() - timedelta(hours=1))
                 for _ in range(per_camera)]
        expected |= {c.clip_id for c in clips}
        path = tmp_path / f"clips-{n}.pickle"
        path.write_bytes(pickle.dumps(clips))
        files.append(str(path))
    ctx = multiprocessing.get_context("spawn")
    rng = random.Random(11)
    kills = 0
    pending = set(range(cameras))
    for _ in range(30):  # rounds: start every unfinished camera's writer, kill some at random
        if not pending:
            break
        started = {n: ctx.Event() for n in pending}
        procs = {n: ctx.Process(target=_ingester, args=(str(store.root), files[n], started[n])) for n in pending}
        for p in procs.values():
            p.start()
        for n in procs:
            assert started[n].wait(120), f"writer {n} never opened the store"
        # An ingest takes some 10 ms and the writers queue on the log head, so a kill within the
        # first 150 ms lands in a transaction, between them, or (rarely) after a writer is done.
        time.sleep(rng.uniform(0.0, 0.15))
        victims = {n for n in sorted(procs) if rng.random() < 0.6}
        if kills == 0 and not victims:  # the first round kills at least one, whatever the draw
            victims = {rng.choice(sorted(procs))}
        for n in victims:
            procs[n].kill()
        for n, p in procs.items():
            p.join(180)
            if p.exitcode == 0:
                pending.discard(n)
            else:
                assert p.exitcode == -9, f"writer {n} failed with exit code {p.exitcode}"
                kills += 1
    assert not pending, "writers never finished"
    assert kills > 0
    listed = [c.clip_id for c in store.clips()]
    assert sorted(listed) == sorted(expected)  # nothing lost, nothing doubled
    ingests = [e for e in store.events() if e["kind"] == "ingest"]
    assert sorted(e["clip"] for e in ingests) == sorted(expected)
    assert verify_store(store) == []
    store.close()
