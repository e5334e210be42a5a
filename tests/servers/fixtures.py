"""pytest fixtures for the real servers, loaded by tests/conftest.py.

Each server starts once per test run, on first use (a run that needs neither starts neither), and
stops at the end. Where a server cannot start (its Debian packages missing, or it fails), its
tests are skipped with the reason, unless BODYCAM_REQUIRE_SERVERS=1 makes that a failure.

    postgres_server  PostgresServer (session)       postgres_url  a fresh database; PGPASSFILE set
    ceph_rgw         CephRGW (session)              s3_bucket     a fresh Object Lock bucket; boto3's
                                                                  AWS_* variables set for the test
"""

from __future__ import annotations

import pytest

from tests.servers._process import ServerUnavailable, required


def _start_or_skip(start, what: str):
    try:
        return start()
    except ServerUnavailable as exc:
        message = f"{what} cannot start here: {exc}"
        if required():
            pytest.fail(message, pytrace=False)
        pytest.skip(message)


@pytest.fixture(scope="session")
def postgres_server():
    from tests.servers.postgres import PostgresServer

    server = _start_or_skip(PostgresServer.start, "PostgreSQL")
    yield server
    server.stop()


@pytest.fixture
def postgres_url(postgres_server, monkeypatch):
    """A URL of a new empty database; the password reaches libpq through PGPASSFILE."""
    for key, value in postgres_server.env().items():
        monkeypatch.setenv(key, value)
    return postgres_server.create_database()


@pytest.fixture(scope="session")
def ceph_rgw():
    from tests.servers.ceph import CephRGW

    server = _start_or_skip(CephRGW.start, "Ceph RGW")
    yield server
    server.stop()


@pytest.fixture
def s3_bucket(ceph_rgw, monkeypatch):
    """The name of a new bucket with versioning and Object Lock, owned by the test user, whose
    credentials and endpoint are set in boto3's own environment variables for this test."""
    for key, value in ceph_rgw.env().items():
        monkeypatch.setenv(key, value)
    return ceph_rgw.create_bucket()
