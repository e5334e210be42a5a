"""The clip journal: signed commitments, and the whole / cut / tampered decision after a crash."""

from __future__ import annotations

import hashlib
import io
import os
import random
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import pytest

from evidence_store.clip import age, journal
from evidence_store.clip.devkey import DeviceKey
from evidence_store.clip.errors import ClipError, FormatError, IntegrityError, SignatureError
from evidence_store.clip.ids import format_time

CLIP = "019a0b1c-2d3e-7f40-8a5b-6c7d8e9fa0b1"
SEGMENT = "seg-00000.age"
NULL_PACKET = b"\x47\x1f\xff\x10" + b"\xff" * 184  # MPEG-TS null packet, PID 0x1FFF
START = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)


@dataclass
class Recording:
    segment: bytes  # the whole segment as closed
    lines: list[bytes]  # journal lines, the last one final
    flushed: list[int]  # ciphertext bytes on disk at each journal line
    plain: bytes


@pytest.fixture(scope="module")
def key() -> DeviceKey:
    return DeviceKey(bytes(range(32)))


@pytest.fixture(scope="module")
def identity() -> age.Identity:
    return age.Identity(hashlib.sha256(b"journal test identity").digest())


def record(key: DeviceKey, identity: age.Identity, seconds: int = 4, rate: int = 150_000) -> Recording:
    """Record like the camera: each second some video, null-packet padding that seals the chunk,
    fdatasync, then one signed journal line; at the end close() and a final line."""
    rng = random.Random(1)
    out = io.BytesIO()
    writer = age.AgeWriter(out, [identity.recipient])
    lines: list[bytes] = []
    flushed: list[int] = []
    plain = bytearray()
    prev = journal.GENESIS

    def commit(second: int, final: bool) -> None:
        nonlocal prev
        entry = journal.JournalEntry(
            clip=CLIP, segment=SEGMENT, bytes=writer.ciphertext_bytes, sha256=writer.ciphertext_sha256(),
            plaintext_bytes=writer.plaintext_bytes, plaintext_sha256=writer.plaintext_sha256(),
            time=format_time(START + timedelta(seconds=second)), final=final, prev=prev,
        )
        line = journal.sign_entry(entry, key)
        prev = journal.line_hash(line)
        lines.append(line)
        flushed.append(writer.ciphertext_bytes)

    for second in range(seconds):
        video = rng.randbytes(rate + rng.randrange(1000))
        padding = NULL_PACKET * -(-(writer.bytes_to_seal() + len(video) % age.CHUNK_SIZE) // len(NULL_PACKET))
        for data in (video, padding):
            writer.write(data)
            plain += data
        # The recorder's rule: after padding, the whole plaintext up to here minus < 1 chunk is sealed.
        assert len(plain) - writer.plaintext_bytes <= age.CHUNK_SIZE
        commit(second, final=False)
    writer.close()
    commit(seconds, final=True)
    return Recording(out.getvalue(), lines, flushed, bytes(plain))


@pytest.fixture(scope="module")
def rec(key, identity) -> Recording:
    return record(key, identity)


def check(segment: bytes, lines: list[bytes], key: DeviceKey, tail: bytes = b"") -> journal.SegmentCheck:
    parsed = journal.parse_journal(b"".join(lines) + tail, key.public, CLIP)
    return journal.check_segment(io.BytesIO(segment), SEGMENT, parsed.entries)


def test_journal_complete_recording_is_whole(rec, key, identity):
    result = check(rec.segment, rec.lines, key)
    assert result.status == journal.WHOLE and result.committed == result.present == len(rec.segment)
    assert result.plaintext_sha256 == hashlib.sha256(rec.plain).hexdigest()
    assert age.decrypt(rec.segment, [identity]) == rec.plain


def test_journal_parse_entries_chain_by_prev(rec, key):
    parsed = journal.parse_journal(b"".join(rec.lines), key.public, CLIP)
    assert [e.prev for e in parsed.entries] == [journal.GENESIS] + [journal.line_hash(line) for line in rec.lines[:-1]]
    assert parsed.last_line_hash == journal.line_hash(rec.lines[-1]) and not parsed.torn_tail


def test_journal_crash_at_every_flush_point_is_cut(rec, key, identity):
    for k in range(1, len(rec.lines)):  # k lines durable; the crash hit before line k+1
        committed = rec.flushed[k - 1]
        written_next = rec.flushed[k] if k < len(rec.flushed) else len(rec.segment)
        for present in sorted({committed, committed + 1, committed + age.SEALED_CHUNK_SIZE // 2, written_next}):
            present = min(present, len(rec.segment))
            for tail in (b"", rec.lines[k][: len(rec.lines[k]) // 2]):  # torn next line or none
                result = check(rec.segment[:present], rec.lines[:k], key, tail)
                assert result.status == journal.CUT, (k, present, result.detail)
                assert (result.committed, result.present) == (committed, present)
                assert "cut after a crash" in result.detail
            # What the journal attests is exactly what salvage reads from the committed bytes.
            report = age.Salvage()
            salvaged = b"".join(age.read_chunks(io.BytesIO(rec.segment[:committed]), [identity], salvage=report))
            assert hashlib.sha256(salvaged).hexdigest() == result.plaintext_sha256
            assert len(salvaged) == result.plaintext_bytes and report.cut


def test_journal_crash_before_first_line_is_cut_with_nothing_committed(rec, key):
    result = check(rec.segment[:500], [], key, rec.lines[0][:10])
    assert (result.status, result.committed, result.present) == (journal.CUT, 0, 500)


def test_journal_torn_last_line_reported_not_fatal(rec, key):
    parsed = journal.parse_journal(b"".join(rec.lines[:2]) + rec.lines[2][:-1], key.public, CLIP)
    assert parsed.torn_tail and len(parsed.entries) == 2


def test_journal_segment_flipped_bit_in_committed_bytes_is_tampered(rec, key):
    rng = random.Random(2)
    for position in [0, 50, len(rec.segment) // 2] + [rng.randrange(len(rec.segment)) for _ in range(20)]:
        damaged = bytearray(rec.segment)
        damaged[position] ^= 1 << rng.randrange(8)
        result = check(bytes(damaged), rec.lines, key)
        assert result.status == journal.TAMPERED
        assert result.detail.startswith(f"{SEGMENT}: the first ") and "differ from what the camera signed" in result.detail


def test_journal_segment_shorter_than_committed_is_tampered(rec, key):
    result = check(rec.segment[: rec.flushed[1] - 1], rec.lines[:2], key)
    assert result.status == journal.TAMPERED and "were committed" in result.detail


def test_journal_bytes_after_final_is_tampered(rec, key):
    result = check(rec.segment + b"\x00", rec.lines, key)
    assert result.status == journal.TAMPERED and "after the end the camera sealed" in result.detail


def _signed_after(lines: list[bytes], key: DeviceKey, **change) -> bytes:
    """A correctly chained and signed line after ``lines``: a copy of the last with ``change``."""
    last = journal.parse_journal(b"".join(lines), key.public, CLIP).entries[-1]
    return journal.sign_entry(replace(last, prev=journal.line_hash(lines[-1]), **change), key)


def test_journal_line_for_a_segment_after_its_final_line_is_refused(rec, key):
    # Signed by the camera's key, yet the camera never writes past a final line: not a crash tail.
    extra = _signed_after(rec.lines, key, final=False, time=format_time(START + timedelta(seconds=9)))
    with pytest.raises(IntegrityError, match=f"journal line {len(rec.lines) + 1}: names {SEGMENT}, whose final"):
        journal.parse_journal(b"".join(rec.lines) + extra, key.public, CLIP)


def test_journal_lines_after_final_for_the_next_segment_continue_the_chain(rec, key):
    extra = _signed_after(rec.lines, key, segment="seg-00001.age", final=False, bytes=0)
    parsed = journal.parse_journal(b"".join(rec.lines) + extra, key.public, CLIP)
    assert [e.segment for e in parsed.entries[-2:]] == [SEGMENT, "seg-00001.age"]
    assert journal.check_segment(io.BytesIO(rec.segment), SEGMENT, parsed.entries).status == journal.WHOLE


def test_journal_segment_without_entry_among_others_is_cut_from_zero(rec, key):
    parsed = journal.parse_journal(b"".join(rec.lines), key.public, CLIP)
    result = journal.check_segment(io.BytesIO(b"x" * 10), "seg-00001.age", parsed.entries)
    assert (result.status, result.committed) == (journal.CUT, 0)


def test_journal_flipped_bit_in_any_line_detected_and_named(rec, key):
    data = b"".join(rec.lines)
    rng = random.Random(3)
    for position in range(len(data)):
        damaged = bytearray(data)
        damaged[position] ^= 1 << rng.randrange(8)
        try:
            parsed = journal.parse_journal(bytes(damaged), key.public, CLIP)
        except ClipError as exc:
            assert "journal line" in str(exc), (position, str(exc))
            continue
        # Only the very last newline can vanish without a signature failing: the last line
        # then reads as torn by a crash, the segment as cut, and the signed manifest (which
        # says whole) disagrees with it, which the dock reports.
        assert position == len(data) - 1 and parsed.torn_tail, position
        result = journal.check_segment(io.BytesIO(rec.segment), SEGMENT, parsed.entries)
        assert result.status == journal.CUT


def test_journal_signature_failure_names_line(rec, key):
    forged = rec.lines[1].replace(b'"final":false', b'"final":true')
    with pytest.raises(SignatureError, match="^journal line 2: signature does not verify$") as exc:
        journal.parse_journal(rec.lines[0] + forged, key.public, CLIP)
    assert exc.value.where == "journal line 2"


def test_journal_dropped_line_detected(rec, key):
    with pytest.raises(IntegrityError, match="journal line 2: does not follow line 1"):
        journal.parse_journal(rec.lines[0] + rec.lines[2], key.public, CLIP)


def test_journal_reordered_lines_detected(rec, key):
    with pytest.raises(IntegrityError, match="journal line 1: does not follow line 0"):
        journal.parse_journal(rec.lines[1] + rec.lines[0], key.public, CLIP)


def test_journal_other_clip_refused(rec, key):
    with pytest.raises(IntegrityError, match="belongs to clip"):
        journal.parse_journal(rec.lines[0], key.public, "019a0b1c-2d3e-7f40-8a5b-000000000000")


def test_journal_other_device_key_refused(rec):
    with pytest.raises(SignatureError, match="journal line 1"):
        journal.parse_journal(rec.lines[0], DeviceKey(bytes(32)).public, CLIP)


def test_journal_non_canonical_line_refused(rec, key):
    line = rec.lines[0].replace(b'{"bytes":', b'{ "bytes":')
    with pytest.raises(FormatError, match="journal line 1: not in canonical form"):
        journal.parse_journal(line, key.public, CLIP)


def test_journal_extra_field_refused(rec, key):
    line = rec.lines[0].replace(b'{"bytes":', b'{"a":1,"bytes":')
    with pytest.raises(FormatError, match="journal line 1: unexpected fields"):
        journal.parse_journal(line, key.public, CLIP)


def test_journal_oversized_refused(key):
    with pytest.raises(FormatError, match="larger than any real journal"):
        journal.parse_journal(b"x" * (journal.MAX_JOURNAL_BYTES + 1), key.public, CLIP)


def test_journal_going_backwards_is_tampered(rec, key):
    parsed = journal.parse_journal(b"".join(rec.lines), key.public, CLIP)
    entries = [parsed.entries[1], replace(parsed.entries[0])]
    result = journal.check_segment(io.BytesIO(rec.segment), SEGMENT, entries)
    assert result.status == journal.TAMPERED and "backwards" in result.detail


def test_journal_durable_append_file_round_trips(tmp_path, rec, key):
    path = tmp_path / journal.JOURNAL_FILE
    from evidence_store.clip.fsutil import append_durable

    for line in rec.lines:
        append_durable(path, line)
    assert os.path.getsize(path) == sum(map(len, rec.lines))
    assert len(journal.parse_journal(path.read_bytes(), key.public, CLIP).entries) == len(rec.lines)
