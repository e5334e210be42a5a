"""Tests of evidence_store.clip.note (C2SP signed notes). Go interop lives in test_checkpoint.py."""

import base64
import hashlib
import json

import pytest

from evidence_store.clip import note
from evidence_store.clip.errors import FormatError, SignatureError
from evidence_store.errors import IntegrityError

# Cross-implementation vector from the documentation of golang.org/x/mod/sumdb/note.
GO_DOC_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_DOC_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_DOC_TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
GO_DOC_NOTE = (
    GO_DOC_TEXT
    + "\n"
    + "\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
).encode()

SEED = bytes(range(32))


@pytest.fixture
def signer():
    return note.NoteSigner.from_private_bytes("store.example/log", SEED)


def test_note_sign_then_open_returns_text(signer):
    signed = note.sign_note("hello\nworld\n", signer)
    assert note.open_note(signed, signer.verifier()) == "hello\nworld\n"


def test_note_signed_layout_is_text_blank_line_em_dash_line(signer):
    signed = note.sign_note("a\n", signer).decode()
    text, blank, sig_line, end = signed.split("\n")
    assert (text, blank, end) == ("a", "", "")
    assert sig_line.startswith("\u2014 store.example/log ")
    raw = base64.b64decode(sig_line.split(" ")[2])
    assert len(raw) == 4 + 64
    assert int.from_bytes(raw[:4], "big") == signer.key_hash


def test_note_key_hash_follows_spec_formula(signer):
    pub = base64.b64decode(signer.verifier_key().split("+", 2)[2])
    assert pub[0] == 0x01
    expected = hashlib.sha256(b"store.example/log\n\x01" + pub[1:]).digest()[:4].hex()
    assert signer.verifier_key().split("+")[1] == expected


def test_note_go_doc_vector_skey_gives_go_vkey():
    signer = note.NoteSigner.from_skey(GO_DOC_SKEY)
    assert signer.verifier_key() == GO_DOC_VKEY
    assert signer.skey() == GO_DOC_SKEY


def test_note_go_doc_vector_signature_matches_go():
    # Ed25519 is deterministic, so our signature must equal Go's byte for byte.
    signer = note.NoteSigner.from_skey(GO_DOC_SKEY)
    assert note.sign_note(GO_DOC_TEXT, signer) == GO_DOC_NOTE


def test_note_go_doc_vector_opens_with_go_vkey():
    verifier = note.NoteVerifier.from_vkey(GO_DOC_VKEY)
    assert verifier.name == "PeterNeumann"
    assert verifier.key_hash == 0xC74F20A3
    assert note.open_note(GO_DOC_NOTE, verifier) == GO_DOC_TEXT


def test_note_generate_signer_round_trips_through_skey_and_private_bytes():
    signer = note.generate_signer("camera.example/cam-0042")
    again = note.NoteSigner.from_skey(signer.skey())
    assert again.private_bytes() == signer.private_bytes()
    assert note.NoteSigner.from_private_bytes(signer.name, signer.private_bytes()).verifier_key() == signer.verifier_key()
    assert note.NoteVerifier.from_vkey(signer.verifier_key()).vkey() == signer.verifier_key()


def test_note_json_text_enrollment_record_round_trips(signer):
    # The camera's enrollment record is a note whose text is one line of canonical JSON.
    text = json.dumps({"device": "cam-0042", "key": "age1..."}, sort_keys=True) + "\n"
    assert json.loads(note.open_note(note.sign_note(text, signer), signer.verifier())) == json.loads(text)


def test_note_text_with_blank_lines_splits_at_last_blank_line(signer):
    text = "para one\n\npara two\n\n"
    assert note.open_note(note.sign_note(text, signer), signer.verifier()) == text


def test_note_unknown_signatures_are_ignored(signer):
    other = note.generate_signer("witness.example")
    signed = note.sign_note("x\n", other, signer)
    assert note.open_note(signed, signer.verifier()) == "x\n"


def test_note_same_name_other_key_is_ignored_not_fatal(signer):
    # Same name, different key ID: an unknown key, ignored (spec: name *and* ID identify a key).
    impostor = note.generate_signer(signer.name)
    signed = note.sign_note("x\n", impostor, signer)
    assert note.open_note(signed, signer.verifier()) == "x\n"


def test_note_only_unknown_signatures_raises_signature_error(signer):
    other = note.generate_signer("witness.example")
    with pytest.raises(SignatureError, match="not signed by store.example/log") as info:
        note.open_note(note.sign_note("x\n", other), signer.verifier())
    assert isinstance(info.value, IntegrityError)
    assert info.value.where.startswith("store.example/log+")


@pytest.mark.parametrize("position", [0, 3, 6])
def test_note_tampered_text_byte_raises_signature_error(signer, position):
    signed = bytearray(note.sign_note("amount 100\n", signer))
    signed[position] ^= 0x01
    with pytest.raises(SignatureError, match="does not verify"):
        note.open_note(bytes(signed), signer.verifier())


def test_note_tampered_signature_raises_signature_error(signer):
    signed = note.sign_note("x\n", signer).decode()
    text, sig = signed.rsplit(" ", 1)
    raw = bytearray(base64.b64decode(sig))
    raw[10] ^= 0x80
    tampered = (text + " " + base64.b64encode(bytes(raw)).decode() + "\n").encode()
    with pytest.raises(SignatureError, match="line 1 .* does not verify"):
        note.open_note(tampered, signer.verifier())


def test_note_bad_known_signature_beside_good_one_raises(signer):
    good = note.sign_note("x\n", signer)
    bad_line = note.sign_note("y\n", signer).split(b"\n\n")[1]
    with pytest.raises(SignatureError, match="line 2"):
        note.open_note(good + bad_line, signer.verifier())


@pytest.mark.parametrize(
    "data, message",
    [
        (b"no signatures\n", "no blank line"),
        (b"text\n\n", "signature block is empty"),
        (b"text\n\n\xe2\x80\x94 name AAAAAAA=", "does not end in a newline"),
        (b"text\n\n- name AAAAAAAA\n", "em dash"),
        (b"text\n\n\xe2\x80\x94 nameonly\n", "expected"),
        (b"text\n\n\xe2\x80\x94 na+me AAAAAAAA\n", "key name"),
        (b"text\n\n\xe2\x80\x94 name !!!!\n", "base64"),
        (b"text\n\n\xe2\x80\x94 name AAAA\n", "only 3 bytes"),
        (b"t\x01ext\n\n\xe2\x80\x94 name AAAAAAAA\n", "control character"),
        (b"t\xffext\n\n\xe2\x80\x94 name AAAAAAAA\n", "UTF-8"),
    ],
)
def test_note_malformed_raises_format_error(signer, data, message):
    with pytest.raises(FormatError, match=message):
        note.open_note(data, signer.verifier())


def test_note_too_many_signatures_raises_format_error(signer):
    signed = note.sign_note("x\n", signer)
    extra = b"\xe2\x80\x94 w AAAAAAAA\n" * note.MAX_SIGNATURES
    with pytest.raises(FormatError, match="limit"):
        note.open_note(signed + extra, signer.verifier())


@pytest.mark.parametrize("text", ["no newline", "bad\x07bell\n"])
def test_note_sign_invalid_text_raises_format_error(signer, text):
    with pytest.raises(FormatError):
        note.sign_note(text, signer)


@pytest.mark.parametrize(
    "vkey, message",
    [
        ("name+c74f20a3", "fields"),
        ("na me+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "key name"),
        ("PeterNeumann+C74F20A3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "hex"),
        ("PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "does not match"),
        ("PeterNeumann+c74f20a3+AhpczQcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "not Ed25519"),
        ("PeterNeumann+c74f20a3+ARpc2QcU", "bytes"),
        (GO_DOC_SKEY, "PRIVATE"),
    ],
)
def test_note_verifier_from_malformed_vkey_raises_format_error(vkey, message):
    with pytest.raises(FormatError, match=message):
        note.NoteVerifier.from_vkey(vkey)


def test_note_signer_from_skey_with_wrong_hash_raises_format_error():
    with pytest.raises(FormatError, match="does not match"):
        note.NoteSigner.from_skey(GO_DOC_SKEY.replace("c74f20a3", "00000000"))


def test_note_signer_from_vkey_text_raises_format_error():
    with pytest.raises(FormatError, match="PRIVATE"):
        note.NoteSigner.from_skey(GO_DOC_VKEY)


@pytest.mark.parametrize("name", ["", "a b", "a+b", "a\u00a0b"])
def test_note_generate_signer_invalid_name_raises_format_error(name):
    with pytest.raises(FormatError, match="key name"):
        note.generate_signer(name)


def test_note_from_private_bytes_wrong_size_raises_format_error():
    with pytest.raises(FormatError, match="32 bytes"):
        note.NoteSigner.from_private_bytes("n", b"\x00" * 31)
