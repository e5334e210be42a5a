"""Benchmarks of the clip format's writer (evidence_store.clip.age.AgeWriter).

Run: ``python -m tests.benchmarks.bench_clip`` (about 30 s). Two figures:

1. Throughput: our AgeWriter (which also keeps the SHA-256 of plaintext and ciphertext that the
   journal signs) against Debian's ``age -e -r`` encrypting the same 1 GiB file, in the same run,
   on the same disk (a RAM disk when one has room, so that disk write-back noise does not decide
   the result). Best of three alternating runs each. Goal: ratio >= 1.0.
2. The camera's cost: the share of one CPU core that sealing a 10 Mbit/s stream takes, measured as
   process CPU time (all threads) to seal N seconds' worth of data, divided by N. Each simulated
   second writes ~64 KiB pieces, pads with MPEG-TS null packets until the current chunk is sealed,
   fdatasyncs the segment, and appends one signed journal line with fdatasync, as the recorder
   does. The reference is the CPU time of ``age`` encrypting the same bytes (no hashes, no syncs).
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta

from evidence_store.clip import age, journal
from evidence_store.clip.devkey import DeviceKey
from evidence_store.clip.fsutil import append_durable
from evidence_store.clip.ids import format_time

SIZE = 1 << 30
BLOCK = 1 << 20
RUNS = 3
STREAM_BITS_PER_S = 10_000_000
STREAM_SECONDS = 120
CPU_GOAL = 0.05  # of one core, on the machine running the benchmark
NULL_PACKET = b"\x47\x1f\xff\x10" + b"\xff" * 184
CLIP = "01937f6a-5b00-7000-8000-000000000001"


def _row(name, figure, unit, reference, reference_name, ratio, goal, ok):
    return {"name": name, "figure": figure, "unit": unit, "reference": reference,
            "reference_name": reference_name, "ratio": ratio, "goal": goal, "ok": ok}


def _scratch(size: int) -> str:
    """A RAM disk when it has room for input and two outputs, else the temp folder."""
    shm = "/dev/shm"
    if os.path.isdir(shm) and shutil.disk_usage(shm).free > 3 * size + (256 << 20):
        return shm
    return tempfile.gettempdir()


def _make_input(path: str, size: int) -> None:
    block = os.urandom(16 << 20)
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, len(block))
            f.write(block[:n])
            left -= n


def _ours(src: str, dst: str, recipient: str) -> float:
    t0 = time.perf_counter()
    with open(src, "rb", buffering=0) as f, open(dst, "wb") as out:
        writer = age.AgeWriter(out, [recipient])
        while block := f.read(BLOCK):
            writer.write(block)
        writer.close()
        writer.ciphertext_sha256()
    return time.perf_counter() - t0


def _theirs(src: str, dst: str, recipient: str) -> float:
    t0 = time.perf_counter()
    subprocess.run(["age", "-e", "-r", recipient, "-o", dst, src], check=True)
    return time.perf_counter() - t0


def throughput(size: int = SIZE) -> list[dict]:
    if shutil.which("age") is None:
        return [_row("AgeWriter vs age -e (age not installed)", 0.0, "MB/s", 0.0, "age -e -r", 0.0, ">= 1.0", False)]
    recipient = str(age.Identity.generate().recipient)
    with tempfile.TemporaryDirectory(dir=_scratch(size)) as tmp:
        src, dst = os.path.join(tmp, "input"), os.path.join(tmp, "output.age")
        _make_input(src, size)
        ours, theirs = [], []
        for _ in range(RUNS):
            for runner, times in ((_theirs, theirs), (_ours, ours)):
                times.append(runner(src, dst, recipient))
                os.unlink(dst)
        where = "RAM disk" if tmp.startswith("/dev/shm") else "disk"
    ours_mb, theirs_mb = size / min(ours) / 1e6, size / min(theirs) / 1e6
    ratio = ours_mb / theirs_mb
    return [_row(f"AgeWriter encrypting {size >> 20} MiB ({where}, +2 SHA-256)", ours_mb, "MB/s",
                 theirs_mb, "age -e -r", ratio, ">= 1.0", ratio >= 1.0)]


def stream_cpu(seconds: int = STREAM_SECONDS) -> list[dict]:
    per_second = STREAM_BITS_PER_S // 8
    piece = os.urandom(65_800)  # ~ what the encoder hands over at a time
    key = DeviceKey(os.urandom(32))
    start = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
    with tempfile.TemporaryDirectory() as tmp:
        seg_path, journal_path = os.path.join(tmp, "seg-00000.age"), os.path.join(tmp, "journal")
        recipient = str(age.Identity.generate().recipient)
        c0 = time.process_time()
        total = 0
        with open(seg_path, "wb") as f:
            writer = age.AgeWriter(f, [recipient])
            prev = journal.GENESIS
            for second in range(seconds):
                sent = 0
                while sent < per_second:
                    n = min(len(piece), per_second - sent)
                    writer.write(piece[:n])
                    sent += n
                # Once a second: complete the chunk with whole null packets, sync, commit.
                pad = NULL_PACKET * -(-writer.bytes_to_seal() // len(NULL_PACKET))
                writer.write(pad)
                total += sent + len(pad)
                f.flush()
                os.fdatasync(f.fileno())
                entry = journal.JournalEntry(CLIP, "seg-00000.age", writer.ciphertext_bytes, writer.ciphertext_sha256(),
                                             writer.plaintext_bytes, writer.plaintext_sha256(),
                                             format_time(start + timedelta(seconds=second)), False, prev)
                line = journal.sign_entry(entry, key)
                append_durable(journal_path, line)
                prev = journal.line_hash(line)
            writer.close()
        ours = (time.process_time() - c0) / seconds

        # Reference: the age tool encrypting the same number of bytes (its own CPU time).
        src = os.path.join(tmp, "stream")
        with open(src, "wb") as f:
            left = total
            while left:
                f.write(piece[: min(left, len(piece))])
                left -= min(left, len(piece))
        reference = float("nan")
        if shutil.which("age"):
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            subprocess.run(["age", "-e", "-r", recipient, "-o", os.path.join(tmp, "ref.age"), src], check=True)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            reference = (after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) / seconds
    return [_row(f"CPU share of one core sealing 10 Mbit/s ({seconds} s, journal + fdatasync each s)",
                 ours * 100, "%", reference * 100, "age -e, same bytes", ours / reference if reference else float("inf"),
                 f"< {CPU_GOAL * 100:g} %", ours < CPU_GOAL)]


def run(size: int = SIZE) -> list[dict]:
    """Run every benchmark; return rows {name, figure, unit, reference, ratio, goal, ok}."""
    return throughput(size) + stream_cpu()


def main() -> int:
    rows = run()
    print("FIGURE | REFERENCE | RATIO | GOAL")
    for r in rows:
        print(f"{r['name']}: {r['figure']:.3f} {r['unit']} | {r['reference_name']}: {r['reference']:.3f} {r['unit']} "
              f"| {r['ratio']:.2f}x | {r['goal']} {'ok' if r['ok'] else 'MISSED'}")
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
