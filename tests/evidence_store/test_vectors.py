"""The test vectors in tests/vectors/: they regenerate identically, and they decrypt and verify."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import subprocess
from pathlib import Path

import pyrage
import pytest

from evidence_store.clip import age, canonical, journal, note
from evidence_store.clip.devkey import DevicePublicKey
from evidence_store.clip.errors import CutError
from evidence_store.clip.ids import parse_time
from evidence_store.clip.manifest import manifest_hash, parse_manifest
from evidence_store.clip.outbox import DeviceRecord, Enrollment, Receipt
from tests.vectors import make_vectors

VECTORS = Path(__file__).resolve().parents[1] / "vectors"
INDEX = json.loads((VECTORS / "index.json").read_text())
BY_FILE = {v["file"]: v for v in INDEX["vectors"]}


SEGMENT, CUT = make_vectors.SEGMENT_FILE, make_vectors.CUT_FILE
CLIP_1, CLIP_2 = make_vectors.CLIP_DIR, make_vectors.CLIP_DIR_2


def read(name: str) -> bytes:
    return (VECTORS / name).read_bytes()


#: Vendored from C2SP CCTV, not made by make_vectors (test_age_cctv.py runs them).
VENDORED = "age"


def files(folder: Path) -> list[str]:
    """Every vector file under ``folder``, as a path relative to it (the generator is not one)."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")
                  if p.is_file() and p.suffix not in (".py", ".pyc")
                  and p.relative_to(folder).parts[0] != VENDORED)


def ids() -> list[age.Identity]:
    return [age.Identity.parse(read(f"identity-{n}.txt").decode().splitlines()[-1]) for n in (1, 2)]


def test_vectors_regenerate_identically(tmp_path):
    make_vectors.build(tmp_path, VECTORS, fresh_age=False)
    produced = files(tmp_path)
    assert produced == files(VECTORS)
    for name in produced:
        assert (tmp_path / name).read_bytes() == read(name), name


def test_vectors_fresh_age_files_also_consistent(tmp_path):
    index = make_vectors.build(tmp_path, tmp_path, fresh_age=True)
    deterministic = [v["file"] for v in index if v["deterministic"] and v["kind"] not in ("journal", "manifest", "receipt")]
    for name in deterministic:
        assert (tmp_path / name).read_bytes() == read(name), name


def test_vectors_index_hashes_and_total_size():
    for vector in INDEX["vectors"]:
        assert hashlib.sha256(read(vector["file"])).hexdigest() == vector["sha256"], vector["file"]
    assert sum((VECTORS / name).stat().st_size for name in files(VECTORS)) < 300 * 1024


def test_vectors_clip_ids_carry_started_at_and_name_their_folders():
    key = DevicePublicKey.parse(DeviceRecord.from_bytes(read("device.json")).public_key)
    for folder in (CLIP_1, CLIP_2):
        manifest = parse_manifest(read(f"{folder}/manifest"), key)
        assert folder == f"clips/{manifest.clip_id}"
        assert [s.name for s in manifest.segments] == [p.name for p in sorted((VECTORS / folder).glob("seg-*.age"))]
        ms = int(manifest.clip_id.replace("-", "")[:12], 16)
        assert ms == int(parse_time(manifest.started_at).timestamp() * 1000)


def test_vectors_segment_decrypts_with_each_identity():
    meta = BY_FILE[SEGMENT]
    plain = make_vectors.plaintext(meta["plaintext_bytes"])
    assert hashlib.sha256(plain).hexdigest() == meta["plaintext_sha256"]
    for identity in ids():
        assert age.decrypt(read(SEGMENT), [identity]) == plain
        assert pyrage.decrypt(read(SEGMENT), [pyrage.x25519.Identity.from_str(str(identity))]) == plain
    assert [str(i.recipient) for i in ids()] == read("recipients.txt").decode().split()


@pytest.mark.skipif(shutil.which("age") is None, reason="Debian's age tool is not installed")
def test_vectors_segment_decrypts_with_age_tool():
    out = subprocess.run(["age", "-d", "-i", str(VECTORS / "identity-2.txt"), str(VECTORS / SEGMENT)],
                         capture_output=True, check=True).stdout
    assert hashlib.sha256(out).hexdigest() == BY_FILE[SEGMENT]["plaintext_sha256"]


def test_vectors_cut_segment_salvage_matches_expected():
    expected = BY_FILE[CUT]["expected"]["salvage"]
    with pytest.raises(CutError, match="segment is cut"):
        age.decrypt(read(CUT), ids()[:1])
    report = age.Salvage()
    got = b"".join(age.read_chunks(io.BytesIO(read(CUT)), ids()[:1], salvage=report))
    assert {"cut": report.cut, "complete_chunks": report.complete_chunks, "plaintext_bytes": report.plaintext_bytes,
            "plaintext_sha256": hashlib.sha256(got).hexdigest(), "ciphertext_offset": report.ciphertext_offset} == expected


def test_vectors_passphrase_identity_opens():
    meta = BY_FILE["identity.age"]
    assert age.decrypt_identity(read("identity.age"), age.Passphrase(meta["passphrase"].encode())) == ids()[:1]
    assert meta["contains"] in pyrage.passphrase.decrypt(read("identity.age"), meta["passphrase"]).decode()


def test_vectors_journal_verifies_and_segment_is_whole():
    device = DeviceRecord.from_bytes(read("device.json"))
    key = DevicePublicKey.parse(device.public_key)
    parsed = journal.parse_journal(read(f"{CLIP_1}/journal"), key, INDEX["clip_id"])
    assert len(parsed.entries) == 3 and not parsed.torn_tail
    assert journal.check_segment(io.BytesIO(read(SEGMENT)), "seg-00000.age", parsed.entries).status == journal.WHOLE
    first = json.loads(read(f"{CLIP_1}/journal").splitlines()[0])
    del first["sig"]
    assert bytes.fromhex(BY_FILE[f"{CLIP_1}/journal"]["signed_messages_hex"][0]) == (
        b"bodycam.journal.v1\n" + canonical.dumps(first))


def test_vectors_cut_clip_journal_agrees_with_its_manifest():
    key = DevicePublicKey.parse(DeviceRecord.from_bytes(read("device.json")).public_key)
    parsed = journal.parse_journal(read(f"{CLIP_2}/journal"), key, INDEX["clip_id_2"])
    manifest = parse_manifest(read(f"{CLIP_2}/manifest"), key)
    (segment,) = manifest.segments
    cut = journal.check_segment(io.BytesIO(read(CUT)), segment.name, parsed.entries)
    assert (cut.status, cut.committed, cut.present) == (journal.CUT, segment.committed_bytes, segment.bytes)
    # The attested plaintext is the salvageable part; the duration spans the journal lines.
    assert (cut.plaintext_bytes, cut.plaintext_sha256) == (segment.plaintext_bytes, segment.plaintext_sha256)
    assert BY_FILE[CUT]["expected"]["salvage"]["plaintext_sha256"] == segment.plaintext_sha256
    span = parse_time(parsed.entries[-1].time) - parse_time(parsed.entries[0].time)
    assert segment.duration_ms == span.total_seconds() * 1000 and manifest.ended_at == parsed.entries[-1].time


def test_vectors_manifests_verify_and_chain():
    key = DevicePublicKey.parse(DeviceRecord.from_bytes(read("device.json")).public_key)
    first = parse_manifest(read(f"{CLIP_1}/manifest"), key)
    second = parse_manifest(read(f"{CLIP_2}/manifest"), key)
    assert manifest_hash(read(f"{CLIP_1}/manifest")) == BY_FILE[f"{CLIP_1}/manifest"]["manifest_hash"] \
        == second.previous_manifest
    assert manifest_hash(read(f"{CLIP_2}/manifest")) == BY_FILE[f"{CLIP_2}/manifest"]["manifest_hash"]
    assert (first.sequence, second.sequence) == (0, 1) and second.segments[0].cut
    assert first.segments[0].sha256 == hashlib.sha256(read(SEGMENT)).hexdigest()
    assert second.segments[0].sha256 == hashlib.sha256(read(CUT)).hexdigest()


def test_vectors_canonical_json_bytes():
    assert canonical.dumps(json.loads(read("canonical-input.json"))) == read("canonical-output.json")
    assert canonical.loads(read("canonical-output.json"), "vector") == json.loads(read("canonical-input.json"))


def test_vectors_enrollment_and_receipt_notes_verify():
    vkey = read("store.vkey").decode().strip()
    enrollment = Enrollment.open(read("enrollment"), vkey)
    assert enrollment.recipients == [str(i.recipient) for i in ids()] and enrollment.verifier_key == vkey
    assert note.open_note(read("enrollment"), note.NoteVerifier.from_vkey(vkey)) == enrollment.text()
    receipt = Receipt.open(read(f"receipts/{INDEX['clip_id']}"), vkey)
    assert receipt.manifest_sha256 == BY_FILE[f"{CLIP_1}/manifest"]["manifest_hash"]
