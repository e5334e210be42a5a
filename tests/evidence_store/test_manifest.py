"""The manifest: canonical JSON, Ed25519 signature, manifest hash and the per-device chain."""

from __future__ import annotations

import dataclasses
import json
import random

import pytest

from evidence_store.clip import canonical
from evidence_store.clip.devkey import MANIFEST_CONTEXT, DeviceKey, b64
from evidence_store.clip.errors import ClipError, FormatError, SignatureError
from evidence_store.clip.manifest import (
    MAX_MANIFEST_BYTES,
    Manifest,
    SegmentRecord,
    manifest_hash,
    parse_manifest,
    sign_manifest,
)

KEY = DeviceKey(bytes(range(32)))


def sample(sequence: int = 0, previous: str | None = None, **changes) -> Manifest:
    segment = SegmentRecord(
        name="seg-00000.age", bytes=200_000, sha256="ab" * 32, plaintext_bytes=196_608,
        plaintext_sha256="cd" * 32, duration_ms=4000, cut=False, committed_bytes=200_000,
    )
    fields = dict(
        clip_id=f"019a0b1c-2d3e-7f40-8a5b-6c7d8e9fa0b{sequence % 10}", sequence=sequence,
        device_id="cam-0042", officer="Müller, K.", firmware="0.1.0", profile="NRW",
        trigger="announced", announced_at="2026-11-25T10:00:00.000Z", started_at="2026-11-25T10:00:02.000Z",
        ended_at="2026-11-25T10:00:06.000Z", end_reason="officer", homes=False, prerecord_seconds=0,
        resumes=None, bookmarks=["2026-11-25T10:00:03.500Z"], segments=[segment], clock_source="dock",
        previous_manifest=previous,
    )
    return Manifest(**(fields | changes))


# --- canonical JSON ---------------------------------------------------------------------------


def test_canonical_dumps_sorted_compact_utf8():
    assert canonical.dumps({"b": 1, "a": [True, None, "ü"], "A": {}}) == '{"A":{},"a":[true,null,"ü"],"b":1}'.encode()


def test_canonical_dumps_float_refused():
    with pytest.raises(FormatError, match=r"\$\.x\[0\]: floats are not allowed"):
        canonical.dumps({"x": [1.5]})


@pytest.mark.parametrize(
    "data",
    [b'{"b":1,"a":2}', b'{"a": 1}', b'{"a":1}\n', b'{"a":"\\u00fc"}', b'{"a":1.0}', b'{"a":1e3}'],
)
def test_canonical_loads_non_canonical_refused(data):
    why = r"(not in canonical form|\$\.a: floats are not allowed|not valid JSON|refused a fraction)"
    with pytest.raises(FormatError, match=r"^thing: " + why):
        canonical.loads(data, "thing")


def test_canonical_loads_invalid_utf8_refused():
    with pytest.raises(FormatError, match="^thing: not valid JSON"):
        canonical.loads(b'{"a":"\xff"}', "thing")


# --- signature and hash -----------------------------------------------------------------------


def test_manifest_sign_parse_round_trips():
    manifest = sample()
    data = sign_manifest(manifest, KEY)
    assert parse_manifest(data, KEY.public) == manifest
    assert canonical.loads(data, "manifest") == json.loads(data)


def test_manifest_signature_covers_context_and_canonical_body():
    manifest = sample()
    outer = json.loads(sign_manifest(manifest, KEY))
    message = canonical.dumps(dataclasses.asdict(manifest))
    assert outer["manifest"] == dataclasses.asdict(manifest)
    import base64

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    Ed25519PublicKey.from_public_bytes(KEY.public.raw).verify(base64.b64decode(outer["signature"]), MANIFEST_CONTEXT + message)


def test_manifest_signing_is_deterministic():
    assert sign_manifest(sample(), KEY) == sign_manifest(sample(), KEY)


def test_manifest_chain_links_previous_hash_and_sequence():
    first = sign_manifest(sample(0), KEY)
    second = sign_manifest(sample(1, previous=manifest_hash(first)), KEY)
    parsed = [parse_manifest(d, KEY.public) for d in (first, second)]
    assert parsed[0].previous_manifest is None
    assert parsed[1].previous_manifest == manifest_hash(first) and parsed[1].sequence == parsed[0].sequence + 1
    import hashlib

    assert manifest_hash(first) == hashlib.sha256(first).hexdigest()


def test_manifest_other_device_key_refused():
    with pytest.raises(SignatureError, match="manifest of clip .*: signature does not verify"):
        parse_manifest(sign_manifest(sample(), KEY), DeviceKey(bytes(32)).public)


def test_manifest_flipped_bit_anywhere_detected():
    data = sign_manifest(sample(), KEY)
    rng = random.Random(9)
    for position in range(len(data)):
        damaged = bytearray(data)
        damaged[position] ^= 1 << rng.randrange(8)
        with pytest.raises(ClipError, match="^manifest"):
            parse_manifest(bytes(damaged), KEY.public)


def test_manifest_non_canonical_refused():
    data = sign_manifest(sample(), KEY)
    pretty = json.dumps(json.loads(data), indent=1, ensure_ascii=False).encode()
    with pytest.raises(FormatError, match="^manifest: not in canonical form$"):
        parse_manifest(pretty, KEY.public)


def test_manifest_oversized_refused():
    with pytest.raises(FormatError, match="larger than any real manifest"):
        parse_manifest(b" " * (MAX_MANIFEST_BYTES + 1), KEY.public)


def test_manifest_extra_field_refused():
    outer = json.loads(sign_manifest(sample(), KEY))
    outer["manifest"]["justification"] = "later state belongs to the store"
    with pytest.raises(FormatError, match="unexpected or missing fields"):
        parse_manifest(canonical.dumps(outer), None)


def test_manifest_wrong_types_unsigned_refused_without_traceback():
    outer = json.loads(sign_manifest(sample(), KEY))
    outer["manifest"]["segments"][0]["bytes"] = "200000"
    with pytest.raises(FormatError, match="wrong type"):
        parse_manifest(canonical.dumps(outer), None)


@pytest.mark.parametrize(
    "changes, message",
    [
        (dict(trigger="because"), "trigger must be one of"),
        (dict(trigger="emergency"), "announced_at is required for, and only for"),
        (dict(announced_at=None), "announced_at is required"),
        (dict(clip_id="../../etc"), "not a clip id"),
        (dict(device_id="cam 1"), "not a device id"),
        (dict(end_reason="bored"), "unknown end reason"),
        (dict(prerecord_seconds=-1), "prerecord_seconds"),
        (dict(sequence=-1), "sequence"),
        (dict(segments=[]), "at least one segment"),
        (dict(previous_manifest="xyz"), "previous_manifest"),
        (dict(started_at="yesterday"), "not a UTC timestamp"),
    ],
)
def test_manifest_invalid_field_refused_at_signing(changes, message):
    with pytest.raises(FormatError, match=message):
        sign_manifest(sample(**changes), KEY)


def test_manifest_cut_segment_sizes_checked():
    good = dataclasses.replace(sample().segments[0], cut=True, committed_bytes=150_000)
    assert parse_manifest(sign_manifest(sample(segments=[good]), KEY), KEY.public).segments[0].cut
    bad = dataclasses.replace(good, cut=False)
    with pytest.raises(FormatError, match="sizes are inconsistent"):
        sign_manifest(sample(segments=[bad]), KEY)


def test_manifest_emergency_without_announcement_valid():
    manifest = sample(trigger="emergency", announced_at=None, homes=True, homes_at="2026-11-25T10:00:04.000Z")
    assert parse_manifest(sign_manifest(manifest, KEY), KEY.public).homes


# --- sound (format v2) --------------------------------------------------------------------------


def _signed(body: dict) -> bytes:
    return canonical.dumps({"manifest": body, "signature": b64(KEY.sign(MANIFEST_CONTEXT, canonical.dumps(body)))})


def test_manifest_v2_records_sound_and_roundtrips():
    data = sign_manifest(sample(sound=True), KEY)
    body = json.loads(data)["manifest"]
    assert body["format"] == "bodycam-manifest/v2" and body["sound"] is True
    assert parse_manifest(data, KEY.public).sound is True


def test_manifest_v1_without_sound_reads_as_picture_only():
    old = sample(format="bodycam-manifest/v1")
    data = sign_manifest(old, KEY)
    assert "sound" not in json.loads(data)["manifest"]  # the old signed body, unchanged
    assert parse_manifest(data, KEY.public).sound is False


def test_manifest_version_decides_the_sound_field_else_format_error():
    v2 = sample().body()
    del v2["sound"]
    with pytest.raises(FormatError, match="v2 requires the field sound"):
        parse_manifest(_signed(v2), KEY.public)
    v1 = sample(format="bodycam-manifest/v1").body() | {"sound": True}
    with pytest.raises(FormatError, match="does not exist in format v1"):
        parse_manifest(_signed(v1), KEY.public)
    with pytest.raises(FormatError, match="sound"):
        parse_manifest(_signed(sample().body() | {"sound": "yes"}), KEY.public)
