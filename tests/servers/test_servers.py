"""The real-server fixtures keep their promises: PostgreSQL as an unprivileged user on a Unix
socket only with password authentication; Ceph RGW answering S3 with Object Lock."""

from __future__ import annotations

import os
import subprocess
import urllib.request

from tests.servers._process import free_ports, private_folder, unprivileged_user


def _psql(server, url: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([str(server.bin / "psql"), "-X", "-At", url, "-c", "SELECT current_user"],
                          env={**os.environ, **env}, capture_output=True, text=True, cwd=server.folder)


def test_postgres_server_socket_only_as_unprivileged_user(postgres_server):
    assert postgres_server.psql("SHOW listen_addresses") == "\n"
    pid = int((postgres_server.data / "postmaster.pid").read_text().split("\n", 1)[0])
    assert os.stat(f"/proc/{pid}").st_uid != 0
    if os.geteuid() == 0:
        assert os.stat(f"/proc/{pid}").st_uid == postgres_server.owner.uid


def test_postgres_url_password_from_passfile_accepted(postgres_server, postgres_url):
    done = _psql(postgres_server, postgres_url, {})
    assert done.returncode == 0 and done.stdout.strip() == postgres_server.user


def test_postgres_url_wrong_password_refused(postgres_server, postgres_url, tmp_path):
    wrong = tmp_path / "pgpass"
    wrong.write_text(f"*:*:*:{postgres_server.user}:not-the-password\n")
    wrong.chmod(0o600)
    done = _psql(postgres_server, postgres_url, {"PGPASSFILE": str(wrong)})
    assert done.returncode != 0 and "password authentication failed" in done.stderr


def test_postgres_create_database_fresh_each_time(postgres_server):
    first, second = postgres_server.create_database(), postgres_server.create_database()
    assert first != second


def test_private_folder_reachable_by_server_user():
    owner = unprivileged_user(("postgres",))
    folder = private_folder("bodycam-test-", owner)
    try:
        if owner.uid is not None:
            assert folder.stat().st_uid == owner.uid
        done = subprocess.run(["ls", str(folder)], cwd="/", capture_output=True, **owner.popen_args())
        assert done.returncode == 0
        assert oct(folder.stat().st_mode & 0o777) == "0o700"
    finally:
        folder.rmdir()


def test_free_ports_distinct():
    ports = free_ports(5)
    assert len(set(ports)) == 5


def test_ceph_rgw_answers_s3_with_object_lock(ceph_rgw):
    assert ceph_rgw.alive()
    with urllib.request.urlopen(ceph_rgw.endpoint + "/", timeout=5) as response:
        assert response.status == 200
    client = ceph_rgw.client()
    bucket = ceph_rgw.create_bucket()
    assert client.get_object_lock_configuration(Bucket=bucket)["ObjectLockConfiguration"]["ObjectLockEnabled"] == "Enabled"
    assert client.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"


def test_ceph_rgw_files_in_one_folder(ceph_rgw):
    for name in ("ceph.conf", "keyring.client.admin", "log", "run", "mon", "osd"):
        assert (ceph_rgw.folder / name).exists()
    assert {p.suffix for p in (ceph_rgw.folder / "run").iterdir()} >= {".asok"}

