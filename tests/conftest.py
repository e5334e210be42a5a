"""Shared test hygiene.

Each command line's ``main()`` configures the root logger, as entry points should. In a test run
many ``main()`` calls share one process, so a handler left behind by one test would print into the
captured stderr of the next and break its "one clear line" check. Restore the root logger after
every test instead of teaching the entry points to undo themselves.
"""

import logging

import pytest

# Real servers (PostgreSQL, Ceph RGW), each started on first use and stopped at the end of the run.
from tests.servers.fixtures import ceph_rgw, postgres_server, postgres_url, s3_bucket  # noqa: F401


@pytest.fixture(autouse=True)
def _restore_root_logger():
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)
