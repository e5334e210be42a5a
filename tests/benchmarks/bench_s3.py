"""Benchmark of the S3 object store's put against boto3's own ``upload_file``, on a real Ceph RGW.

Run: ``python -m tests.benchmarks.bench_s3`` (about a minute; starts and stops its own one-node
Ceph cluster, bluestore on a sparse file in the temp folder, as tests/servers/ceph.py does).

The input is SEGMENTS files of 64 MiB of random bytes, the size of a camera segment (60 s at
about 8 Mbit/s). Ours: ``S3Objects.put`` of each file into an Object Lock bucket, which reads and
hashes the file into a private spool, uploads it in one PUT with its SHA-256 as checksum and
signed payload hash, a GOVERNANCE retention date and the recorded SHA-256 in its metadata.
Reference: ``upload_file`` of the same files to the same bucket (boto3's transfer manager:
multipart in 8 MiB parts on up to 10 threads, no lock, no checksum), the least any client must do
to move the bytes. The two alternate file by file, so that load from elsewhere on the machine
falls on both alike. Goal: ours >= 0.9 of the reference's throughput.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

SEGMENTS = 8
SEGMENT = 64 << 20
GOAL = 0.9


def _row(name, figure, unit, reference, reference_name, ratio, goal, ok):
    return {"name": name, "figure": figure, "unit": unit, "reference": reference,
            "reference_name": reference_name, "ratio": ratio, "goal": goal, "ok": ok}


def run(segments: int = SEGMENTS, segment: int = SEGMENT) -> list[dict]:
    from tests.servers._process import ServerUnavailable
    from tests.servers.ceph import CephRGW

    name = f"S3 put of {segments} x {segment >> 20} MiB segments (Object Lock, SHA-256) on Ceph RGW"
    try:
        server = CephRGW.start(objectstore="bluestore")
    except ServerUnavailable as exc:
        return [_row(name, float("nan"), "MB/s", float("nan"), f"Ceph RGW cannot start: {exc}", float("nan"),
                     f">= {GOAL}", False)]
    scratch = Path(tempfile.mkdtemp(prefix="bench-s3-"))
    saved = dict(os.environ)
    try:
        os.environ.update(server.env())  # boto3's own conventions, as a deployment configures it
        from evidence_store.objects_s3 import S3Objects

        bucket = server.create_bucket()
        store = S3Objects(f"s3://{bucket}/bench")
        reference_client = server.client()
        files = []
        for i in range(segments):
            path = scratch / f"seg-{i:05d}.age"
            path.write_bytes(os.urandom(segment))
            files.append(path)
        deadline = datetime.now(UTC) + timedelta(days=14)
        # Warm-up: the first write creates the data pool; neither side should pay for that.
        store.put_bytes(b"warm-up", retain_until=deadline)
        ours = theirs = 0.0
        for path in files:
            t0 = time.perf_counter()
            with open(path, "rb") as f:
                store.put(f, segment, retain_until=deadline)
            t1 = time.perf_counter()
            reference_client.upload_file(str(path), bucket, f"reference/{path.name}")
            t2 = time.perf_counter()
            ours += t1 - t0
            theirs += t2 - t1
        total = segments * segment
        ours_rate, reference_rate = total / ours / 1e6, total / theirs / 1e6
        ratio = ours_rate / reference_rate
        return [_row(name, ours_rate, "MB/s", reference_rate, "boto3 upload_file, same files and bucket", ratio,
                     f">= {GOAL}", ratio >= GOAL)]
    finally:
        os.environ.clear()
        os.environ.update(saved)
        shutil.rmtree(scratch, ignore_errors=True)
        server.stop()


def main() -> int:
    rows = run()
    for r in rows:
        print(f"{r['name']}: {r['figure']:.1f} {r['unit']} vs {r['reference']:.1f} {r['unit']} ({r['reference_name']}); "
              f"ratio {r['ratio']:.2f}, goal {r['goal']}: {'ok' if r['ok'] else 'MISSED'}")
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
