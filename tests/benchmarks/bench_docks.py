"""Many docks into one central store: three docks at once beside one dock, and the dock's ingest
into Ceph RGW beside boto3's ``upload_file`` of the same files to the same bucket.

Run: ``python -m tests.benchmarks.bench_docks`` (a few minutes; starts its own PostgreSQL with
fsync on, and its own one-node Ceph cluster when the store can keep objects on S3).

Each dock is the real one-shot ``bodycam-dock --store DIR ingest OUTBOX`` process (its own state
folder; with S3 objects its own copy of the store folder, as on a separate machine), timed from
launch to exit, so process start-up is in every figure alike. Each camera's outbox holds CLIPS
clips of two SEGMENT-byte segments of random bytes with signed journals and manifests
(bench_dock.make_outbox: the dock never decrypts, so random bytes cost it what ciphertext does).

Rows, for each objects backend (the store folder; Ceph RGW with Object Lock):

* three docks, three cameras, at once: clips/s and MB/s of all three together, beside one dock
  ingesting one such camera alone in the same run. Goal: >= 1.0x (docks at once are not slower
  together than one alone: the store's log head serializes only the short commits);
* (S3) the store's ingest of one camera (dock.ingest.Ingester in this process, as bench_dock
  measures it: copy, hash, journal check, PUT with SHA-256 and retention, commit, receipt,
  clearing) beside ``upload_file`` of byte-identical copies of the same segment files to the same
  bucket (boto3's transfer manager, multipart on 10 threads, no lock, no checksum), ROUNDS
  cameras, the order alternating. Goal: >= 0.9x. bench_s3 measures the object PUT alone.
"""

from __future__ import annotations

import inspect
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.benchmarks.bench_dock import make_outbox

CLIPS = 4
SEGMENT = 32 << 20
DOCKS = 3
ROUNDS = 2  # cameras for the S3 ingest row, alternating with the reference
GOAL_DOCKS = 1.0
GOAL_S3 = 0.9
REPO = Path(__file__).resolve().parents[2]


def _row(name, figure, unit, reference, reference_name, ratio, goal, ok):
    return {"name": name, "figure": figure, "unit": unit, "reference": reference,
            "reference_name": reference_name, "ratio": ratio, "goal": goal, "ok": ok}


def _missing(name: str, why: str, goal) -> dict:
    nan = float("nan")
    return _row(name, nan, "MB/s", nan, why, nan, goal, False)


def _dock_command() -> list[str]:
    script = Path(sys.executable).parent / "bodycam-dock"
    return [str(script)] if script.exists() else [sys.executable, "-m", "dock.cli"]


class _Rig:
    """A central store (PostgreSQL, objects in the folder or on S3) and cameras enrolled in it."""

    def __init__(self, scratch: Path, url: str, objects: str | None):
        from evidence_store.store import Store

        self.scratch = scratch
        self.root = scratch / "store"
        self.objects = objects
        kwargs = {"objects": objects} if objects else {}
        Store.init(self.root, b"bench", scrypt_log_n=10, database=url, actor="bench", **kwargs).close()
        self.cameras = 0

    def camera(self) -> tuple[Path, int]:
        """A new enrolled camera's outbox with CLIPS clips; (outbox, bytes of its segments)."""
        from evidence_store.clip.devkey import DeviceKey
        from evidence_store.store import Store

        self.cameras += 1
        device_id = f"cam-{self.cameras:02d}"
        key = DeviceKey.generate()
        outbox = self.scratch / f"outbox-{device_id}"
        size = make_outbox(outbox, key, device_id, total=2 * CLIPS * SEGMENT, segment=SEGMENT)
        with Store.open(self.root) as store:
            store.enroll(device_id, str(key.public))
        return outbox, size

    def store_for(self, dock: int) -> Path:
        if self.objects is None:
            return self.root  # docks on the store's server (or sharing its folder)
        copy = self.scratch / f"store-dock-{dock}"
        if not copy.exists():
            shutil.copytree(self.root, copy, symlinks=True)
        return copy

    def ingest_in_process(self, outbox: Path) -> float:
        """Seconds of one Ingester.ingest of ``outbox`` in this process (no process start-up):
        the store's own ingest throughput, as bench_dock measures it for the folder."""
        from dock.ingest import Ingester
        from dock.lock import DeviceLocks
        from evidence_store.store import Store

        state = self.scratch / "state-in-process"
        ingester = Ingester(lambda: Store.open(self.store_for(0)), locks=DeviceLocks(state / "locks"), state_dir=state)
        os.sync()
        t0 = time.perf_counter()
        report = ingester.ingest(outbox)
        elapsed = time.perf_counter() - t0
        if not report.ok:
            raise RuntimeError(f"benchmark ingest failed: {report.summary()}")
        return elapsed

    def docks(self, outboxes: list[Path]) -> float:
        """Seconds for one dock per outbox, all started at once, until the last exits."""
        os.sync()
        procs = []
        t0 = time.perf_counter()
        for n, outbox in enumerate(outboxes):
            env = dict(os.environ, BODYCAM_DOCK_STATE=str(self.scratch / f"state-{n}"), PYTHONPATH=str(REPO))
            procs.append(subprocess.Popen([*_dock_command(), "--store", str(self.store_for(n)), "ingest", str(outbox)],
                                          cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
        errors = [(p.wait(), p.stderr.read().decode(errors="replace")) for p in procs]
        elapsed = time.perf_counter() - t0
        for code, err in errors:
            if code != 0:
                raise RuntimeError(f"a benchmark dock failed (exit {code}): {err.strip()[-500:]}")
        return elapsed


def _docks_rows(rig: _Rig, label: str) -> list[dict]:
    single, size1 = rig.camera()
    trio = [rig.camera() for _ in range(DOCKS)]
    one = rig.docks([single])
    three = rig.docks([o for o, _ in trio])
    size3 = sum(s for _, s in trio)
    rate1, rate3 = size1 / one / 1e6, size3 / three / 1e6
    clips1, clips3 = CLIPS / one, DOCKS * CLIPS / three
    ratio = rate3 / rate1
    return [_row(f"{DOCKS} docks at once, {DOCKS} cameras of {CLIPS} clips ({size1 >> 20} MiB each), {label}: "
                 f"{clips3:.2f} clips/s vs {clips1:.2f}", rate3, "MB/s", rate1,
                 "one dock, one such camera, same run", ratio, f">= {GOAL_DOCKS}", ratio >= GOAL_DOCKS)]


def _s3_row(rig: _Rig, bucket: str, client) -> dict:
    """ROUNDS cameras; for each, upload_file of byte-identical copies of its segment files and
    the store's ingest of the camera, the order alternating round by round so that load from
    elsewhere on the machine falls on both alike."""
    ours = theirs = 0.0
    size = 0
    for round_ in range(ROUNDS):
        outbox, camera_size = rig.camera()
        size += camera_size
        copies = rig.scratch / f"reference-{round_}"
        shutil.copytree(outbox / "clips", copies)  # the ingest clears the camera's own files
        segments = sorted(copies.rglob("seg-*.age"))
        os.sync()

        def upload(segments=segments, round_=round_) -> float:
            t0 = time.perf_counter()
            for path in segments:
                client.upload_file(str(path), bucket, f"reference-{round_}/{path.parent.name}/{path.name}")
            return time.perf_counter() - t0

        if round_ % 2:
            ours += rig.ingest_in_process(outbox)
            theirs += upload()
        else:
            theirs += upload()
            ours += rig.ingest_in_process(outbox)
        shutil.rmtree(copies)
    rate, reference = size / ours / 1e6, size / theirs / 1e6
    ratio = rate / reference
    return _row(f"dock ingest of {ROUNDS} x {size // ROUNDS >> 20} MiB ({CLIPS} clips each) into PostgreSQL + Ceph RGW "
                "(copy, journal check, PUT with SHA-256 and retention, commit, receipt; in process)", rate, "MB/s",
                reference, "boto3 upload_file of the same segment files, same bucket, alternating", ratio,
                f">= {GOAL_S3}", ratio >= GOAL_S3)


def run() -> list[dict]:
    from evidence_store.store import Store
    from tests.servers._process import ServerUnavailable
    from tests.servers.postgres import PostgresServer

    name_pg = f"{DOCKS} docks at once, PostgreSQL + folder objects"
    name_s3 = f"{DOCKS} docks at once, PostgreSQL + Ceph RGW"
    name_put = "one dock's ingest into PostgreSQL + Ceph RGW"
    try:
        pg = PostgresServer.start(durable=True)
    except ServerUnavailable as exc:
        why = f"PostgreSQL cannot start: {exc}"
        return [_missing(name_pg, why, f">= {GOAL_DOCKS}"), _missing(name_s3, why, f">= {GOAL_DOCKS}"),
                _missing(name_put, why, f">= {GOAL_S3}")]
    saved = dict(os.environ)
    rows = []
    try:
        os.environ.update(pg.env())
        os.environ["BODYCAM_SCRYPT_LOG_N"] = "10"
        scratch = Path(tempfile.mkdtemp(prefix="bench-docks-"))
        try:
            rows += _docks_rows(_Rig(scratch, pg.create_database(), None), "PostgreSQL + folder objects")
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        if "objects" not in inspect.signature(Store.init).parameters:
            why = "the store cannot keep objects on S3 on this branch yet"
            return rows + [_missing(name_s3, why, f">= {GOAL_DOCKS}"), _missing(name_put, why, f">= {GOAL_S3}")]
        rows += _s3_rows(pg, name_s3, name_put)
        return rows
    finally:
        os.environ.clear()
        os.environ.update(saved)
        pg.stop()


def _s3_rows(pg, name_s3: str, name_put: str) -> list[dict]:
    from tests.servers._process import ServerUnavailable
    from tests.servers.ceph import CephRGW

    try:
        ceph = CephRGW.start(objectstore="bluestore")
    except ServerUnavailable as exc:
        why = f"Ceph RGW cannot start: {exc}"
        return [_missing(name_s3, why, f">= {GOAL_DOCKS}"), _missing(name_put, why, f">= {GOAL_S3}")]
    scratch = Path(tempfile.mkdtemp(prefix="bench-docks-s3-"))
    try:
        os.environ.update(ceph.env())  # boto3's own conventions, as a deployment configures it
        bucket = ceph.create_bucket()
        client = ceph.client()
        client.put_object(Bucket=bucket, Key="warm-up", Body=b"warm-up")  # the first write creates the pool
        rig = _Rig(scratch, pg.create_database(), f"s3://{bucket}/store")
        put = _s3_row(rig, bucket, client)
        return [*_docks_rows(rig, "PostgreSQL + Ceph RGW (Object Lock)"), put]
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        ceph.stop()


def main() -> int:
    rows = run()
    for r in rows:
        print(f"{r['name']}: {r['figure']:.1f} {r['unit']} vs {r['reference']:.1f} {r['unit']} ({r['reference_name']}); "
              f"ratio {r['ratio']:.2f}, goal {r['goal']}: {'ok' if r['ok'] else 'MISSED'}")
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
