"""Real servers for tests, started and stopped by the tests themselves: PostgreSQL (postgres.py)
and Ceph RGW with S3 Object Lock (ceph.py); the pytest fixtures are in fixtures.py."""
