"""The outbox: records round trip, store-signed enrollment and receipts, hostile names and files."""

from __future__ import annotations

import os
from datetime import UTC, datetime

import pytest

from evidence_store.clip import note, outbox
from evidence_store.clip.devkey import DeviceKey
from evidence_store.clip.errors import FormatError, SignatureError
from evidence_store.clip.ids import format_time
from evidence_store.clip.outbox import NRW, ClockStamp, DeviceRecord, Enrollment, Outbox, Receipt

CLIP = "019a0b1c-2d3e-7f40-8a5b-6c7d8e9fa0b1"
OTHER_CLIP = "019a0b1c-2d3e-7f40-8a5b-6c7d8e9fa0b2"
STORE = note.NoteSigner.from_private_bytes("bodycam-store-test", bytes(range(100, 132)))
INTRUDER = note.NoteSigner.from_private_bytes("bodycam-store-test", bytes(range(200, 232)))
DEVICE = DeviceKey(bytes(range(32)))


@pytest.fixture
def box(tmp_path) -> Outbox:
    ob = Outbox(tmp_path / "outbox")
    ob.init(DeviceRecord("cam-0042", str(DEVICE.public), "0.1.0"))
    return ob


def enrollment(**changes) -> Enrollment:
    fields = dict(
        device_id="cam-0042", device_public_key=str(DEVICE.public),
        recipients=["age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"],
        profile=NRW, officer="officer-17", verifier_key=STORE.verifier_key(), issued_at="2026-11-25T09:00:00.000Z",
    )
    return Enrollment(**(fields | changes))


def test_outbox_device_record_round_trips(box):
    assert box.device() == DeviceRecord("cam-0042", str(DEVICE.public), "0.1.0")
    assert (box.root / "device.json").read_bytes().startswith(
        b'{"device_id":"cam-0042","firmware":"0.1.0","format":"bodycam-device/v1"')


def test_outbox_missing_device_record_raises(tmp_path):
    with pytest.raises(FormatError, match="no device.json"):
        Outbox(tmp_path).device()


def test_outbox_clock_round_trips(box):
    moment = datetime(2026, 11, 25, 10, 0, 0, 123000, tzinfo=UTC)
    box.write_clock(ClockStamp("cam-0042", format_time(moment)).sign(STORE))
    stamp = box.clock(STORE.verifier_key())
    assert stamp == ClockStamp("cam-0042", "2026-11-25T10:00:00.123Z") and stamp.moment == moment
    assert (box.root / "clock").read_bytes().startswith(
        b'{"device_id":"cam-0042","format":"bodycam-clock/v2","time":"2026-11-25T10:00:00.123Z"}\n\n')


def test_outbox_clock_unsigned_or_signed_by_another_key_refused(box):
    (box.root / "clock").write_bytes(
        b'{"format":"bodycam-clock/v1","source":"dock","time":"2026-11-25T10:00:00.123Z"}\n')  # unsigned, as before
    with pytest.raises(FormatError):
        box.clock(STORE.verifier_key())
    box.write_clock(ClockStamp("cam-0042", "2026-11-25T10:00:00.123Z").sign(INTRUDER))
    with pytest.raises(SignatureError):
        box.clock(STORE.verifier_key())


def test_outbox_set_aside_hides_a_record_and_replaces_an_older_one(box):
    for data in (b"first", b"second"):
        (box.root / "clock").write_bytes(data)
        assert box.set_aside("clock") == ".clock.rejected"
    assert (box.root / ".clock.rejected").read_bytes() == b"second" and not (box.root / "clock").exists()
    assert box.set_aside("clock") is None


def test_outbox_enrollment_signed_note_verifies(box):
    data = enrollment().sign(STORE)
    box.write_enrollment(data)
    assert box.enrollment() == enrollment()
    assert box.enrollment(STORE.verifier_key()) == enrollment()
    # Anyone can check it with the store's published key and a standard signed-note verifier.
    assert note.open_note(data, note.NoteVerifier.from_vkey(STORE.verifier_key())) == enrollment().text()


def test_outbox_enrollment_altered_text_fails(box):
    data = enrollment().sign(STORE).replace(b"officer-17", b"officer-18")
    box.write_enrollment(data)
    with pytest.raises(SignatureError, match="does not verify"):
        box.enrollment(STORE.verifier_key())


def test_outbox_enrollment_forged_by_other_key_same_name_fails(box):
    box.write_enrollment(enrollment(verifier_key=INTRUDER.verifier_key()).sign(INTRUDER))
    with pytest.raises(FormatError, match="names a store key other than the pinned one"):
        box.enrollment(STORE.verifier_key())
    # Even naming the genuine store key inside, the intruder cannot sign for it.
    box.write_enrollment(enrollment(verifier_key=STORE.verifier_key()).sign(INTRUDER))
    with pytest.raises(SignatureError, match="not signed by bodycam-store-test"):
        box.enrollment(STORE.verifier_key())


def test_outbox_enrollment_without_recipients_refused(box):
    box.write_enrollment(enrollment(recipients=[]).sign(STORE))
    with pytest.raises(FormatError, match="no recipients"):
        box.enrollment()


def test_outbox_receipt_round_trips_and_verifies(box):
    receipt = Receipt(CLIP, "cam-0042", "ab" * 32, outbox.STORED, "2026-11-25T12:00:00.000Z")
    box.write_receipt(CLIP, receipt.sign(STORE))
    assert box.receipt_ids() == [CLIP]
    assert box.receipt(CLIP, STORE.verifier_key()) == receipt
    assert box.receipt(OTHER_CLIP, STORE.verifier_key()) is None


def test_outbox_forged_receipt_fails(box):
    receipt = Receipt(CLIP, "cam-0042", "ab" * 32, outbox.STORED, "2026-11-25T12:00:00.000Z")
    box.write_receipt(CLIP, receipt.sign(INTRUDER))
    with pytest.raises(SignatureError, match="does not verify|not signed by"):
        box.receipt(CLIP, STORE.verifier_key())
    box.write_receipt(CLIP, receipt.sign(STORE).replace(b'"stored"', b'"quarantined"'))
    with pytest.raises(SignatureError, match="does not verify"):
        box.receipt(CLIP, STORE.verifier_key())


def test_outbox_receipt_for_other_clip_refused(box):
    receipt = Receipt(OTHER_CLIP, "cam-0042", "ab" * 32, outbox.QUARANTINED, "2026-11-25T12:00:00.000Z", "bad hash")
    box.write_receipt(CLIP, receipt.sign(STORE))
    with pytest.raises(FormatError, match=f"is for clip {OTHER_CLIP}"):
        box.receipt(CLIP, STORE.verifier_key())


@pytest.mark.parametrize("name", ["../../etc/passwd", "..", "/abs", CLIP.upper(), CLIP + "/x", ""])
def test_outbox_clip_names_escaping_folder_refused(box, name):
    with pytest.raises(FormatError, match="not a clip id"):
        box.clip_dir(name)
    with pytest.raises(FormatError, match="not a clip id"):
        box.write_receipt(name, b"x")


def test_outbox_list_clips_sorts_sealed_unsealed_rejected(box, tmp_path):
    clips = box.root / "clips"
    (clips / CLIP).mkdir()
    (clips / CLIP / "manifest").write_bytes(b"{}")
    (clips / OTHER_CLIP).mkdir()
    (clips / "not-a-clip").mkdir()
    (clips / ".tmp-1").mkdir()
    (tmp_path / "elsewhere").mkdir()
    link = "019a0b1c-2d3e-7f40-8a5b-6c7d8e9fa0b3"
    os.symlink(tmp_path / "elsewhere", clips / link)
    listing = box.list_clips()
    assert listing.sealed == [CLIP] and listing.unsealed == [OTHER_CLIP]
    assert dict(listing.rejected) == {"not-a-clip": "not a clip id: 'not-a-clip'", link: "not a plain folder"}


def test_outbox_symlinked_record_refused(box, tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("do not read")
    os.symlink(secret, box.root / "enrollment")
    with pytest.raises(FormatError, match="is a symbolic link"):
        box.enrollment()


def test_outbox_fifo_record_refused_without_hanging(box):
    os.mkfifo(box.root / "clock")
    with pytest.raises(FormatError, match="not a regular file"):
        box.clock(STORE.verifier_key())


def test_outbox_oversized_record_refused(box):
    (box.root / "device.json").write_bytes(b" " * (outbox.MAX_RECORD_BYTES + 1))
    with pytest.raises(FormatError, match="more than the 65536 allowed"):
        box.device()


def test_outbox_device_record_bad_id_refused(box):
    (box.root / "device.json").write_bytes(DeviceRecord("../x", str(DEVICE.public)).to_bytes())
    with pytest.raises(FormatError, match="not a device id"):
        box.device()


def test_outbox_delete_clip_removes_links_without_following(box, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_text("x")
    clip = box.clip_dir(CLIP)
    clip.mkdir()
    os.symlink(outside, clip / "seg-00000.age")
    box.delete_clip(CLIP)
    assert not clip.exists() and (outside / "keep").exists()


def test_outbox_fifo_planted_at_old_temp_name_does_not_hang_write(tmp_path):
    # The dock's pid is guessable; a fifo at ".clock.tmp-<pid>" once blocked the write forever.
    import os

    from evidence_store.clip.outbox import Outbox as _Outbox

    box = _Outbox(tmp_path)
    os.mkfifo(tmp_path / f".clock.tmp-{os.getpid()}")
    from datetime import datetime

    box.write_clock(ClockStamp("cam-0042", "2026-11-28T00:00:00.000Z").sign(STORE))
    assert box.clock(STORE.verifier_key()).moment == datetime(2026, 11, 28, tzinfo=UTC)
