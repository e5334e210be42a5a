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
from evidence_store.clip.manifest import manifest_hash, parse_manifest
from evidence_store.clip.outbox import DeviceRecord, Enrollment, Receipt
from tests.vectors import make_vectors

VECTORS = Path(__file__).resolve().parents[1] / "vectors"
INDEX = json.loads((VECTORS / "index.json").read_text())
BY_FILE = {v["file"]: v for v in INDEX["vectors"]}


def read(name: str) -> bytes:
    return (VECTORS / name).read_bytes()


def ids() -> list[age.Identity]:
    return [age.Identity.parse(read(f"identity-{n}.txt").decode().splitlines()[-1]) for n in (1, 2)]


def test_vectors_regenerate_identically(tmp_path):
    make_vectors.build(tmp_path, VECTORS, fresh_age=False)
    produced = sorted(p.name for p in tmp_path.iterdir())
    assert produced == sorted(p.name for p in VECTORS.iterdir() if p.suffix != ".py" and p.is_file())
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
    assert sum(p.stat().st_size for p in VECTORS.iterdir() if p.is_file()) < 300 * 1024


def test_vectors_segment_decrypts_with_each_identity():
    meta = BY_FILE["segment.age"]
    plain = make_vectors.plaintext(meta["plaintext_bytes"])
    assert hashlib.sha256(plain).hexdigest() == meta["plaintext_sha256"]
    for identity in ids():
        assert age.decrypt(read("segment.age"), [identity]) == plain
        assert pyrage.decrypt(read("segment.age"), [pyrage.x25519.Identity.from_str(str(identity))]) == plain
    assert [str(i.recipient) for i in ids()] == read("recipients.txt").decode().split()


@pytest.mark.skipif(shutil.which("age") is None, reason="Debian's age tool is not installed")
def test_vectors_segment_decrypts_with_age_tool():
    out = subprocess.run(["age", "-d", "-i", str(VECTORS / "identity-2.txt"), str(VECTORS / "segment.age")],
                         capture_output=True, check=True).stdout
    assert hashlib.sha256(out).hexdigest() == BY_FILE["segment.age"]["plaintext_sha256"]


def test_vectors_cut_segment_salvage_matches_expected():
    expected = BY_FILE["segment-cut.age"]["expected"]["salvage"]
    with pytest.raises(CutError, match="segment is cut"):
        age.decrypt(read("segment-cut.age"), ids()[:1])
    report = age.Salvage()
    got = b"".join(age.read_chunks(io.BytesIO(read("segment-cut.age")), ids()[:1], salvage=report))
    assert {"cut": report.cut, "complete_chunks": report.complete_chunks, "plaintext_bytes": report.plaintext_bytes,
            "plaintext_sha256": hashlib.sha256(got).hexdigest(), "ciphertext_offset": report.ciphertext_offset} == expected


def test_vectors_passphrase_identity_opens():
    meta = BY_FILE["identity.age"]
    assert age.decrypt_identity(read("identity.age"), age.Passphrase(meta["passphrase"].encode())) == ids()[:1]
    assert meta["contains"] in pyrage.passphrase.decrypt(read("identity.age"), meta["passphrase"]).decode()


def test_vectors_journal_verifies_and_segment_is_whole():
    device = DeviceRecord.from_bytes(read("device.json"))
    key = DevicePublicKey.parse(device.public_key)
    parsed = journal.parse_journal(read("journal"), key, INDEX["clip_id"])
    assert len(parsed.entries) == 3 and not parsed.torn_tail
    assert journal.check_segment(io.BytesIO(read("segment.age")), "seg-00000.age", parsed.entries).status == journal.WHOLE
    cut = journal.check_segment(io.BytesIO(read("segment-cut.age")), "seg-00000.age", parsed.entries[:1])
    assert (cut.status, cut.committed, cut.present) == (journal.CUT, parsed.entries[0].bytes, len(read("segment-cut.age")))
    first = json.loads(read("journal").splitlines()[0])
    del first["sig"]
    assert bytes.fromhex(BY_FILE["journal"]["signed_messages_hex"][0]) == b"bodycam.journal.v1\n" + canonical.dumps(first)


def test_vectors_manifests_verify_and_chain():
    key = DevicePublicKey.parse(DeviceRecord.from_bytes(read("device.json")).public_key)
    first = parse_manifest(read("manifest"), key)
    second = parse_manifest(read("manifest-2"), key)
    assert manifest_hash(read("manifest")) == BY_FILE["manifest"]["manifest_hash"] == second.previous_manifest
    assert manifest_hash(read("manifest-2")) == BY_FILE["manifest-2"]["manifest_hash"]
    assert (first.sequence, second.sequence) == (0, 1) and second.segments[0].cut
    assert first.segments[0].sha256 == hashlib.sha256(read("segment.age")).hexdigest()
    assert second.segments[0].sha256 == hashlib.sha256(read("segment-cut.age")).hexdigest()


def test_vectors_canonical_json_bytes():
    assert canonical.dumps(json.loads(read("canonical-input.json"))) == read("canonical-output.json")
    assert canonical.loads(read("canonical-output.json"), "vector") == json.loads(read("canonical-input.json"))


def test_vectors_enrollment_and_receipt_notes_verify():
    vkey = read("store.vkey").decode().strip()
    enrollment = Enrollment.open(read("enrollment"), vkey)
    assert enrollment.recipients == [str(i.recipient) for i in ids()] and enrollment.verifier_key == vkey
    assert note.open_note(read("enrollment"), note.NoteVerifier.from_vkey(vkey)) == enrollment.text()
    receipt = Receipt.open(read(f"receipt-{INDEX['clip_id']}"), vkey)
    assert receipt.manifest_sha256 == BY_FILE["manifest"]["manifest_hash"]
