"""Generate the clip-format test vectors described in docs/FORMAT.md and index.json.

    python tests/vectors/make_vectors.py [--out DIR] [--age-from DIR] [--fresh-age]

Every key is derived from a fixed seed, Ed25519 is deterministic, and the plaintext follows a
rule (byte i is i mod 251), so everything here regenerates byte for byte except what age makes
random on purpose: the file key, the payload nonce, the X25519 ephemeral shares and the scrypt
salt. Those files (``*.age``) are generated once, stored, and reused from ``--age-from`` (default:
this folder); the journal and manifests are then computed from the stored segment, so the
whole set is reproducible. ``--fresh-age`` makes new age files (and so a new journal/manifest).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from evidence_store.clip import age, canonical, journal, note  # noqa: E402
from evidence_store.clip.devkey import DeviceKey  # noqa: E402
from evidence_store.clip.manifest import FORMAT_V1, Manifest, SegmentRecord, manifest_hash, sign_manifest  # noqa: E402
from evidence_store.clip.outbox import NRW, STORED, DeviceRecord, Enrollment, Receipt  # noqa: E402

HERE = Path(__file__).resolve().parent
# UUIDv7s whose 48-bit time is each clip's started_at (2026-11-25T10:00:01.000Z, 10:05:00.000Z).
CLIP_ID = "01a21225-dce8-7000-8000-000000000001"
CLIP_ID_2 = "01a2122a-6ce0-7000-8000-000000000002"
DEVICE_ID = "cam-vector-01"
SEGMENT = "seg-00000.age"
PLAIN_SIZE = 2 * age.CHUNK_SIZE + 500  # two full chunks and a 500-byte final chunk
CUT_AT = 1234  # bytes into the second chunk where segment-cut.age stops
PASSPHRASE = "vector passphrase"
SCRYPT_LOG_N = 10
STORE_KEY_NAME = "bodycam-store-vectors"
TIMES = ["2026-11-25T10:00:01.000Z", "2026-11-25T10:00:02.000Z", "2026-11-25T10:00:03.000Z"]
# Clip 2 lost power 1234 bytes into its second chunk: two journal lines had committed chunk 0.
TIMES_2 = ["2026-11-25T10:05:00.500Z", "2026-11-25T10:05:01.000Z"]
# The vectors folder is laid out as an outbox (docs/FORMAT.md § 2): one folder per clip.
CLIP_DIR = f"clips/{CLIP_ID}"
CLIP_DIR_2 = f"clips/{CLIP_ID_2}"
SEGMENT_FILE = f"{CLIP_DIR}/{SEGMENT}"
CUT_FILE = f"{CLIP_DIR_2}/{SEGMENT}"
AGE_FILES = (SEGMENT_FILE, CUT_FILE, "identity.age")


def seed(label: str) -> bytes:
    """Every key here is SHA-256 of a label, so another implementation can derive it too."""
    return hashlib.sha256(f"bodycam test vector: {label}".encode()).digest()


def plaintext(n: int = PLAIN_SIZE) -> bytes:
    return bytes(i % 251 for i in range(n))


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def identities() -> list[age.Identity]:
    return [age.Identity(seed("age identity 1")), age.Identity(seed("age identity 2"))]


def make_age_files(out: Path) -> None:
    ids = identities()
    segment = age.encrypt(plaintext(), [i.recipient for i in ids])
    header_len = len(age.parse_header(io.BytesIO(segment)).raw)
    cut = header_len + age.NONCE_SIZE + age.SEALED_CHUNK_SIZE + CUT_AT
    for name, data in ((SEGMENT_FILE, segment), (CUT_FILE, segment[:cut])):
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_bytes(data)
    (out / "identity.age").write_bytes(
        age.encrypt_identity(ids[0], age.Passphrase(PASSPHRASE.encode(), log_n=SCRYPT_LOG_N))
    )


def build(out: Path, age_from: Path, fresh_age: bool) -> list[dict]:
    out.mkdir(parents=True, exist_ok=True)
    if fresh_age or not all((age_from / f).exists() for f in AGE_FILES):
        make_age_files(out)
    elif age_from.resolve() != out.resolve():
        for name in AGE_FILES:
            (out / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(age_from / name, out / name)
    index: list[dict] = []

    def put(name: str, data: bytes, kind: str, description: str, deterministic: bool = True, **extra) -> None:
        if not (out / name).exists() or (out / name).read_bytes() != data:
            (out / name).parent.mkdir(parents=True, exist_ok=True)
            (out / name).write_bytes(data)
        index.append({"file": name, "kind": kind, "description": description, "deterministic": deterministic,
                      "sha256": sha(data), **extra})

    # 1. age identities and recipients.
    ids = identities()
    for n, identity in enumerate(ids, 1):
        put(f"identity-{n}.txt", f"# public key: {identity.recipient}\n{identity}\n".encode(), "age-identity",
            f"X25519 identity {n}: secret = SHA-256('bodycam test vector: age identity {n}')",
            recipient=str(identity.recipient))
    put("recipients.txt", "".join(f"{i.recipient}\n" for i in ids).encode(), "age-recipients",
        "the two recipients of every segment, one per line (age -R form)")

    # 2. The segment, its cut copy and the passphrase-protected identity (stored, not regenerated).
    plain = plaintext()
    segment = (out / SEGMENT_FILE).read_bytes()
    header_len = len(age.parse_header(io.BytesIO(segment)).raw)
    payload = header_len + age.NONCE_SIZE
    index.append({"file": SEGMENT_FILE, "kind": "age-segment", "deterministic": False, "sha256": sha(segment),
                  "description": "age v1 file to both recipients; plaintext byte i = i mod 251",
                  "identities": ["identity-1.txt", "identity-2.txt"], "plaintext_bytes": len(plain),
                  "plaintext_sha256": sha(plain), "header_bytes": header_len, "chunks": 3,
                  "final_chunk_plaintext_bytes": len(plain) - 2 * age.CHUNK_SIZE})
    cut = (out / CUT_FILE).read_bytes()
    report = age.Salvage()
    salvaged = b"".join(age.read_chunks(io.BytesIO(cut), [ids[1]], salvage=report))
    assert salvaged == plain[: age.CHUNK_SIZE] and cut == segment[: len(cut)]
    index.append({"file": CUT_FILE, "kind": "age-segment-cut", "deterministic": False, "sha256": sha(cut),
                  "description": f"clip 2's segment: the same age file as clip 1's, cut {CUT_AT} bytes into its "
                                 "second chunk (power loss)",
                  "identities": ["identity-1.txt", "identity-2.txt"],
                  "expected": {"decrypt": "refused: cut", "salvage": {
                      "cut": True, "complete_chunks": report.complete_chunks, "plaintext_bytes": report.plaintext_bytes,
                      "plaintext_sha256": sha(salvaged), "ciphertext_offset": report.ciphertext_offset}}})
    blob = (out / "identity.age").read_bytes()
    assert age.decrypt_identity(blob, age.Passphrase(PASSPHRASE.encode())) == [ids[0]]
    index.append({"file": "identity.age", "kind": "age-identity-passphrase", "deterministic": False,
                  "sha256": sha(blob), "passphrase": PASSPHRASE, "scrypt_log_n": SCRYPT_LOG_N,
                  "description": "identity-1.txt's key as an age scrypt file (what 'age -p' makes)",
                  "contains": str(ids[0])})

    # 3. Device key, device.json, and a journal for each clip: clip 1 a line at each sealed chunk,
    #    then final; clip 2 two lines committing chunk 0, then the power loss (no final line).
    key = DeviceKey(seed("device key"))
    put("device.json", DeviceRecord(DEVICE_ID, str(key.public), "0.1.0").to_bytes(), "device-record",
        "outbox device.json; device key seed = SHA-256('bodycam test vector: device key')",
        device_key_seed_hex=key.seed.hex())
    lines, prev = [], journal.GENESIS
    points = [(payload + k * age.SEALED_CHUNK_SIZE, k * age.CHUNK_SIZE, False) for k in (1, 2)]
    points.append((len(segment), len(plain), True))
    for (cbytes, pbytes, final), time in zip(points, TIMES):
        entry = journal.JournalEntry(CLIP_ID, SEGMENT, cbytes, sha(segment[:cbytes]), pbytes, sha(plain[:pbytes]),
                                     time, final, prev)
        line = journal.sign_entry(entry, key)
        prev = journal.line_hash(line)
        lines.append(line)
    put(f"{CLIP_DIR}/journal", b"".join(lines), "journal",
        "journal of clip 1: three signed lines, the last final: the segment is whole",
        clip_id=CLIP_ID, segment=SEGMENT_FILE, line_sha256=[sha(line) for line in lines],
        signed_messages_hex=[(b"bodycam.journal.v1\n" + canonical.dumps(
            {k: v for k, v in json.loads(line).items() if k != "sig"})).hex() for line in lines[:1]])

    lines_2, prev = [], journal.GENESIS
    committed = payload + age.SEALED_CHUNK_SIZE
    for time in TIMES_2:
        entry = journal.JournalEntry(CLIP_ID_2, SEGMENT, committed, sha(segment[:committed]), age.CHUNK_SIZE,
                                     sha(plain[: age.CHUNK_SIZE]), time, False, prev)
        line = journal.sign_entry(entry, key)
        prev = journal.line_hash(line)
        lines_2.append(line)
    put(f"{CLIP_DIR_2}/journal", b"".join(lines_2), "journal",
        "journal of clip 2: two signed lines committing chunk 0, no final line: the segment is cut",
        clip_id=CLIP_ID_2, segment=CUT_FILE, line_sha256=[sha(line) for line in lines_2])

    # 4. Two manifests of the same device, chained: an old v1 one (no sound field: read as
    #    picture only) and a v2 one that records sound.
    record = SegmentRecord(SEGMENT, len(segment), sha(segment), len(plain), sha(plain), 3000, False, len(segment))
    first = Manifest(clip_id=CLIP_ID, sequence=0, device_id=DEVICE_ID, officer="officer-0017", firmware="0.1.0",
                     profile="NRW", trigger="announced", announced_at="2026-11-25T10:00:00.000Z",
                     started_at=TIMES[0], ended_at=TIMES[2], end_reason="officer", homes=False,
                     prerecord_seconds=0, resumes=None, bookmarks=["2026-11-25T10:00:02.500Z"], segments=[record],
                     clock_source="dock", previous_manifest=None, format=FORMAT_V1)
    m1 = sign_manifest(first, key)
    put(f"{CLIP_DIR}/manifest", m1, "manifest",
        "signed v1 manifest of clip 1 (sequence 0, no predecessor; no sound field)",
        manifest_hash=manifest_hash(m1), signed_message_hex=(b"bodycam.manifest.v1\n" + canonical.dumps(first.body())).hex())
    # A cut segment's duration is the span of its journal lines (the media after the last one is
    # unattested); its plaintext is what the journal attests, which is exactly what salvage yields.
    cut_record = SegmentRecord(SEGMENT, len(cut), sha(cut), age.CHUNK_SIZE, sha(plain[: age.CHUNK_SIZE]), 500,
                               True, committed)
    second = Manifest(clip_id=CLIP_ID_2, sequence=1, device_id=DEVICE_ID, officer="officer-0017", firmware="0.1.0",
                      profile="NRW", trigger="emergency", announced_at=None, started_at="2026-11-25T10:05:00.000Z",
                      ended_at=TIMES_2[-1], end_reason="interrupted", homes=True,
                      prerecord_seconds=0, resumes=None, bookmarks=[], segments=[cut_record],
                      clock_source="dock", previous_manifest=manifest_hash(m1), homes_at="2026-11-25T10:05:00.500Z",
                      notes=["cut by power loss: seg-00000.age"], sound=True)
    m2 = sign_manifest(second, key)
    put(f"{CLIP_DIR_2}/manifest", m2, "manifest",
        "signed v2 manifest of clip 2 (sound true), sealed after the power loss: chained to clip 1's, one cut segment",
        manifest_hash=manifest_hash(m2), previous_manifest=manifest_hash(m1))

    # 5. Canonical JSON: a non-canonical input and the one byte form it has.
    messy = '{\n  "z": [3, 2, {"b": false, "a": null}],\n  "ä": "Straße \\u00e9",\n  "A": 10,\n  "a": "\\"q\\"\\n"\n}\n'
    put("canonical-input.json", messy.encode(), "canonical-json-input", "JSON with spaces, unsorted keys, escapes")
    put("canonical-output.json", canonical.dumps(json.loads(messy)), "canonical-json-output",
        "the canonical bytes of canonical-input.json (keys by code point, no spaces, UTF-8, minimal escapes)")

    # 6. Enrollment and receipt: C2SP signed notes by the store key.
    store = note.NoteSigner.from_private_bytes(STORE_KEY_NAME, seed("store key"))
    put("store.vkey", (store.verifier_key() + "\n").encode(), "note-verifier-key",
        "the store's verifier key (signed-note form); seed = SHA-256('bodycam test vector: store key')",
        signer_key=store.skey())
    enrollment = Enrollment(DEVICE_ID, str(key.public), [str(i.recipient) for i in ids], NRW, "officer-0017",
                            store.verifier_key(), "2026-11-25T09:00:00.000Z")
    put("enrollment", enrollment.sign(store), "enrollment", "outbox enrollment: signed note, text = canonical JSON",
        verifier_key=store.verifier_key())
    receipt = Receipt(CLIP_ID, DEVICE_ID, manifest_hash(m1), STORED, "2026-11-25T12:00:00.000Z")
    put(f"receipts/{CLIP_ID}", receipt.sign(store), "receipt", "the store's receipt for clip 1: signed note",
        verifier_key=store.verifier_key())

    meta = {"format": "bodycam-test-vectors/v1", "spec": "docs/FORMAT.md", "generator": "tests/vectors/make_vectors.py",
            "clip_id": CLIP_ID, "clip_id_2": CLIP_ID_2, "plaintext_rule": "byte i = i mod 251", "vectors": index}
    (out / "index.json").write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n")
    return index


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE)
    parser.add_argument("--age-from", type=Path, default=HERE)
    parser.add_argument("--fresh-age", action="store_true")
    args = parser.parse_args(argv)
    index = build(args.out, args.age_from, args.fresh_age)
    print(f"{len(index)} vectors in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
