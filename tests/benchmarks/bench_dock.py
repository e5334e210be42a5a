"""Benchmark of the dock's ingest against ``cp`` plus ``sha256sum`` of the same files.

Run: ``python -m tests.benchmarks.bench_dock`` (about a minute; needs ~7 GiB free in the temp folder).

The input is 2 GiB of clips in a camera outbox: 16 clips of 2 segments of 64 MiB, each with a
signed journal (one line per MiB, as a camera signs once a second at ~8 Mbit/s) and a signed
manifest. The segment bytes are random rather than age-encrypted video: the dock never decrypts,
it only hashes, checks the journal and copies, so random bytes cost it exactly what ciphertext
does, and 2 GiB of real video would take minutes to make.

Reference: ``cp -r`` of the clips folder, then ``sha256sum`` of every segment: the least any
"copy and verify" must do. Both are run in the same process run on the same disk, warm: the page
cache cannot be dropped without root and a quiet machine, so both read from cache after the setup
wrote the files. The dock does more than the reference (fsync of each object and folder, the
journal check's second SHA-256 on a helper thread, SQLite transactions, receipts), which is what
the ratio measures. Goal: the dock's throughput >= 0.9 of the reference's.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from evidence_store.clip.devkey import DeviceKey
from evidence_store.clip.ids import format_time, new_clip_id
from evidence_store.clip.journal import GENESIS, JOURNAL_FILE, JournalEntry, line_hash, sign_entry
from evidence_store.clip.manifest import MANIFEST_FILE, Manifest, SegmentRecord, manifest_hash, sign_manifest
from evidence_store.clip.outbox import DeviceRecord, Outbox

TOTAL = 2 << 30
SEGMENT = 64 << 20
SEGMENTS_PER_CLIP = 2
COMMIT_EVERY = 1 << 20
GOAL = 0.9


def _row(name, figure, unit, reference, reference_name, ratio, goal, ok):
    return {"name": name, "figure": figure, "unit": unit, "reference": reference,
            "reference_name": reference_name, "ratio": ratio, "goal": goal, "ok": ok}


def make_outbox(root: Path, key: DeviceKey, device_id: str, total: int = TOTAL, segment: int = SEGMENT) -> int:
    """Write signed clips of random bytes totalling ``total``; returns the bytes written."""
    outbox = Outbox(root)
    outbox.init(DeviceRecord(device_id, str(key.public)))
    start = datetime.now(UTC) - timedelta(hours=1)
    previous = None
    written = 0
    sequence = 0
    while written < total:
        at = start + timedelta(minutes=sequence)
        clip_id = new_clip_id(at)
        folder = root / "clips" / clip_id
        folder.mkdir(parents=True)
        journal = bytearray()
        prev_line = GENESIS
        records = []
        for number in range(SEGMENTS_PER_CLIP):
            name = f"seg-{number:05d}.age"
            digest = hashlib.sha256()
            with open(folder / name, "wb") as f:
                for offset in range(0, segment, COMMIT_EVERY):
                    block = os.urandom(min(COMMIT_EVERY, segment - offset))
                    f.write(block)
                    digest.update(block)
                    done = offset + len(block)
                    entry = JournalEntry(clip_id, name, done, digest.hexdigest(), done, digest.hexdigest(),
                                         format_time(at), done == segment, prev_line)
                    line = sign_entry(entry, key)
                    journal += line
                    prev_line = line_hash(line)
            records.append(SegmentRecord(name, segment, digest.hexdigest(), segment, digest.hexdigest(),
                                         segment // COMMIT_EVERY * 1000, False, segment))
            written += segment
        (folder / JOURNAL_FILE).write_bytes(bytes(journal))
        manifest = Manifest(
            clip_id=clip_id, sequence=sequence, device_id=device_id, officer="PK-1", firmware="bench", profile="NRW",
            trigger="emergency", announced_at=None, started_at=format_time(at),
            ended_at=format_time(at + timedelta(seconds=30)), end_reason="officer", homes=False, prerecord_seconds=0,
            resumes=None, bookmarks=[], segments=records, clock_source="dock", previous_manifest=previous)
        data = sign_manifest(manifest, key)
        (folder / MANIFEST_FILE).write_bytes(data)
        previous = manifest_hash(data)
        sequence += 1
    return written


def run(total: int = TOTAL) -> list[dict]:
    from dock.ingest import Ingester
    from dock.lock import DeviceLocks
    from evidence_store.store import Store

    scratch = Path(tempfile.mkdtemp(prefix="bench-dock-"))
    try:
        key = DeviceKey.generate()
        outbox = scratch / "outbox"
        size = make_outbox(outbox, key, "cam-bench", total)
        os.sync()
        # Reference: cp, then sha256sum of every copied segment (a plain "copy and verify").
        segments = sorted(str(p) for p in (outbox / "clips").rglob("seg-*.age"))
        t0 = time.perf_counter()
        subprocess.run(["cp", "-r", str(outbox / "clips"), str(scratch / "cp-copy")], check=True)
        t1 = time.perf_counter()
        subprocess.run(["sha256sum", *segments], check=True, stdout=subprocess.DEVNULL)
        t2 = time.perf_counter()
        reference = size / (t2 - t0) / 1e6
        shutil.rmtree(scratch / "cp-copy")
        os.sync()
        # The dock: a fresh store, the camera enrolled, one ingest of everything.
        store_root = scratch / "store"
        Store.init(store_root, b"bench", scrypt_log_n=10).close()
        with Store.open(store_root) as store:
            store.enroll("cam-bench", str(key.public))
        ingester = Ingester(lambda: Store.open(store_root), locks=DeviceLocks(scratch / "state" / "locks"),
                            state_dir=scratch / "state")
        t3 = time.perf_counter()
        report = ingester.ingest(outbox)
        t4 = time.perf_counter()
        if not report.ok:
            raise RuntimeError(f"benchmark ingest failed: {report.summary()}")
        ours = size / (t4 - t3) / 1e6
        ratio = ours / reference
        return [_row(f"dock ingest of {size >> 20} MiB ({len(report.clips)} clips; fsync, journal check, receipts; warm cache)",
                     ours, "MB/s", reference, f"cp {t1 - t0:.1f} s + sha256sum {t2 - t1:.1f} s", ratio, f">= {GOAL}",
                     ratio >= GOAL)]
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def main() -> int:
    rows = run()
    for r in rows:
        print(f"{r['name']}: {r['figure']:.1f} {r['unit']} vs {r['reference']:.1f} {r['unit']} ({r['reference_name']}); "
              f"ratio {r['ratio']:.2f}, goal {r['goal']}: {'ok' if r['ok'] else 'MISSED'}")
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
