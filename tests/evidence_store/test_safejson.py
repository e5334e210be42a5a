"""The bounded JSON parser for untrusted input, the strict timestamp form, and manifests that
must carry every field (issue 13)."""

from __future__ import annotations

import pytest

from evidence_store.clip import canonical, safejson
from evidence_store.clip.devkey import MANIFEST_CONTEXT, DeviceKey, b64
from evidence_store.clip.errors import FormatError
from evidence_store.clip.ids import parse_time
from evidence_store.clip.manifest import parse_manifest
from evidence_store.clip.outbox import DeviceRecord


@pytest.mark.parametrize("data, why", [
    (b'{"a":' + b"9" * 5000 + b"}", "digits"),
    (b'{"a":' + b"9" * 20 + b"}", "digits"),
    (b'{"a":9223372036854775808}', "64 bits"),
    (b"[" * (safejson.MAX_DEPTH + 1) + b"]" * (safejson.MAX_DEPTH + 1), "nested"),
    (b"[" * 200000, "nested"),
    (b'{"a":NaN}', "NaN"),
    (b'{"a":-Infinity}', "Infinity"),
    (b'{"a":1.5}', "fraction"),
    (b'{"a":1e3}', "fraction"),
    (b'{"a":1,"a":2}', "twice"),
    (b'{"a":"\\ud800"}', "Unicode"),
    (b"\xff{}", "UTF-8"),
    (b'{"a":1} x', "after"),
    (b"", "not valid JSON"),
])
def test_safejson_hostile_input_refused_with_format_error(data, why):
    with pytest.raises(FormatError, match=f"^thing: .*{why}"):
        safejson.loads(data, "thing")


def test_safejson_size_cap_refused_before_parsing():
    with pytest.raises(FormatError, match="more than the 10 allowed"):
        safejson.loads(b'{"a":"' + b"x" * 20 + b'"}', "thing", max_bytes=10)


def test_safejson_brackets_inside_strings_do_not_count_as_nesting():
    assert safejson.loads(b'{"a":"' + b"[" * 100 + b'\\"]"}', "thing") == {"a": "[" * 100 + '"]'}


def test_safejson_ordinary_records_parse():
    assert safejson.loads(b' {"a":[1,-2,{"b":null,"c":true}],"d":"\\u00fc"}\n', "x") == {
        "a": [1, -2, {"b": None, "c": True}], "d": "ü"}
    assert safejson.loads(b"9223372036854775807", "x") == 2**63 - 1


@pytest.mark.parametrize("text", ["2026-11-30Z", "2026-11-30T10:00:00Z", "2026-11-30T10:00:00.123+00:00",
                                  "2026-11-30T10:00:00.123", "2026-11-30 10:00:00.123Z", "2026-11-30T10:00:00.1234Z",
                                  "0000-01-01T00:00:00.000Z", "2026-11-30T10:00:00.123Z\n", 20261130, None])
def test_parse_time_other_forms_refused(text):
    with pytest.raises(FormatError, match="not a UTC timestamp"):
        parse_time(text, "when")


def test_parse_time_the_one_form_is_aware_utc():
    moment = parse_time("2026-11-30T10:00:00.123Z")
    assert moment.utcoffset().total_seconds() == 0 and moment.microsecond == 123000


def _signed(body: dict, key: DeviceKey) -> bytes:
    raw = canonical.dumps(body)
    return canonical.dumps({"manifest": body, "signature": b64(key.sign(MANIFEST_CONTEXT, raw))})


@pytest.mark.parametrize("field", ["notes", "homes_at", "format", "bookmarks", "resumes"])
def test_manifest_signed_without_a_field_refused(field):
    from evidence_store.clip.manifest import sign_manifest
    from tests.evidence_store.test_manifest import KEY, sample

    body = canonical.loads(sign_manifest(sample(), KEY), "manifest")["manifest"]
    del body[field]
    with pytest.raises(FormatError, match=f"missing field.*{field}"):
        parse_manifest(_signed(body, KEY), KEY.public)


def test_manifest_date_only_timestamp_refused_even_when_signed():
    from evidence_store.clip.manifest import sign_manifest
    from tests.evidence_store.test_manifest import KEY, sample

    body = canonical.loads(sign_manifest(sample(), KEY), "manifest")["manifest"]
    body["started_at"] = "2026-11-30Z"
    with pytest.raises(FormatError, match="started_at: not a UTC timestamp"):
        parse_manifest(_signed(body, KEY), KEY.public)


@pytest.mark.parametrize("data", [
    b'{"format":"bodycam-device/v1","device_id":"cam-07","public_key":' + b"1" * 5000 + b',"firmware":""}',
    b'{"format":"bodycam-device/v1","device_id":' + b"[" * 5000 + b"]" * 5000 + b"}",
    b'{"format":"bodycam-device/v1","format":"bodycam-device/v1","device_id":"cam-07"}',
])
def test_device_record_hostile_json_format_error(data):
    with pytest.raises(FormatError):
        DeviceRecord.from_bytes(data)
