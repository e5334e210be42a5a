"""age v1: interop both ways with Debian's ``age`` and with rage (pyrage), cuts, flipped bits, errors."""

from __future__ import annotations

import hashlib
import io
import random
import shutil
import subprocess

import pyrage
import pytest

from evidence_store.clip import age
from evidence_store.clip.errors import (
    ClipError,
    CutError,
    DecryptError,
    FormatError,
    HeaderError,
    PayloadError,
)

needs_age = pytest.mark.skipif(shutil.which("age") is None, reason="Debian's age tool is not installed")

CHUNK = age.CHUNK_SIZE
SEALED = age.SEALED_CHUNK_SIZE
PAYLOAD_SIZES = [0, 1, CHUNK, CHUNK + 1, 3 * 1024 * 1024 + 5]
LOW_WORK = 10  # scrypt 2^10: fast tests; the store uses age's default 2^18


def _payload(n: int, seed: int = 7) -> bytes:
    return random.Random(seed).randbytes(n)


@pytest.fixture(scope="module")
def identities() -> list[age.Identity]:
    return [age.Identity.generate(), age.Identity.generate()]


def _run(args: list[str], data: bytes = b"") -> bytes:
    done = subprocess.run(args, input=data, capture_output=True, check=False)
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout


def _one_line(exc: pytest.ExceptionInfo) -> None:
    assert "\n" not in str(exc.value) and str(exc.value)


# --- interop ----------------------------------------------------------------------------------


@needs_age
@pytest.mark.parametrize("size", PAYLOAD_SIZES)
def test_age_writer_two_recipients_decrypts_with_age_tool(tmp_path, identities, size):
    plain = _payload(size)
    segment = age.encrypt(plain, [str(i.recipient) for i in identities])
    (tmp_path / "seg.age").write_bytes(segment)
    for n, identity in enumerate(identities):
        key = tmp_path / f"key{n}.txt"
        key.write_text(f"{identity}\n")
        assert _run(["age", "-d", "-i", str(key), str(tmp_path / "seg.age")]) == plain


@pytest.mark.parametrize("size", PAYLOAD_SIZES)
def test_age_writer_output_decrypts_with_pyrage(identities, size):
    plain = _payload(size)
    segment = age.encrypt(plain, [i.recipient for i in identities])
    for identity in identities:
        assert pyrage.decrypt(segment, [pyrage.x25519.Identity.from_str(str(identity))]) == plain


@needs_age
@pytest.mark.parametrize("size", PAYLOAD_SIZES)
def test_age_reader_age_tool_file_decrypts(tmp_path, identities, size):
    plain = _payload(size, seed=size)
    (tmp_path / "plain").write_bytes(plain)
    out = tmp_path / "a.age"
    _run(["age", "-e", "-r", str(identities[0].recipient), "-o", str(out), str(tmp_path / "plain")])
    assert age.decrypt(out.read_bytes(), [identities[0]]) == plain


@needs_age
def test_age_reader_age_tool_recipients_file_both_identities_decrypt(tmp_path, identities):
    plain = _payload(CHUNK * 2 + 3)
    (tmp_path / "plain").write_bytes(plain)
    (tmp_path / "recipients").write_text("".join(f"{i.recipient}\n" for i in identities))
    out = tmp_path / "a.age"
    _run(["age", "-e", "-R", str(tmp_path / "recipients"), "-o", str(out), str(tmp_path / "plain")])
    for identity in identities:
        assert age.decrypt(out.read_bytes(), [identity]) == plain


@needs_age
def test_age_identity_age_keygen_output_parses_and_decrypts(tmp_path):
    key = tmp_path / "key.txt"
    _run(["age-keygen", "-o", str(key)])
    (identity,) = [age.Identity.parse(line) for line in key.read_text().splitlines() if line.startswith("AGE-")]
    public = [line.split(": ")[1] for line in key.read_text().splitlines() if "public key" in line][0]
    assert str(identity.recipient) == public
    segment = age.encrypt(b"x" * 1000, [public])
    assert _run(["age", "-d", "-i", str(key)], segment) == b"x" * 1000


@pytest.mark.parametrize("size", [0, 1, CHUNK, CHUNK + 1])
def test_age_reader_pyrage_file_decrypts(identities, size):
    plain = _payload(size, seed=3)
    data = pyrage.encrypt(plain, [pyrage.x25519.Recipient.from_str(str(r.recipient)) for r in identities])
    for identity in identities:
        assert age.decrypt(data, [identity]) == plain


def test_age_identity_text_form_round_trips(identities):
    identity = identities[0]
    assert str(identity).startswith("AGE-SECRET-KEY-1") and str(identity.recipient).startswith("age1")
    assert age.Identity.parse(str(identity)) == identity
    assert age.Recipient.parse(str(identity.recipient)) == identity.recipient
    assert str(pyrage.x25519.Identity.from_str(str(identity)).to_public()) == str(identity.recipient)


# --- passphrase-protected identities ------------------------------------------------------------


@needs_age
def test_age_encrypt_identity_opens_with_pyrage_and_serves_age_tool(tmp_path, identities):
    identity = identities[0]
    blob = age.encrypt_identity(identity, age.Passphrase(b"correct horse", log_n=LOW_WORK))
    text = pyrage.passphrase.decrypt(blob, "correct horse").decode()
    assert str(identity) in text.splitlines()
    # age asks for a passphrase on a terminal only; the decrypted text is a plain identity file.
    (tmp_path / "identity.txt").write_text(text)
    segment = age.encrypt(b"evidence", [identity.recipient])
    assert _run(["age", "-d", "-i", str(tmp_path / "identity.txt")], segment) == b"evidence"
    assert age.decrypt_identity(blob, age.Passphrase(b"correct horse")) == [identity]


def test_age_decrypt_identity_pyrage_passphrase_file_opens(identities):
    text = f"# created: by hand\n# public key: {identities[1].recipient}\n{identities[1]}\n".encode()
    blob = pyrage.passphrase.encrypt(text, "s3cret")
    assert age.decrypt_identity(blob, age.Passphrase(b"s3cret")) == [identities[1]]


def test_age_decrypt_identity_wrong_passphrase_raises_one_line(identities):
    blob = age.encrypt_identity(identities[0], age.Passphrase(b"right", log_n=LOW_WORK))
    with pytest.raises(DecryptError, match=r"^wrong passphrase$") as exc:
        age.decrypt_identity(blob, age.Passphrase(b"wrong"))
    _one_line(exc)


def test_age_passphrase_huge_work_factor_refused(identities):
    blob = age.encrypt(b"x", [age.Passphrase(b"p", log_n=LOW_WORK)])
    forged = blob.replace(f" {LOW_WORK}\n".encode(), b" 40\n", 1)
    with pytest.raises(FormatError, match="work factor 2\\^40 is too large"):
        age.decrypt(forged, [age.Passphrase(b"p")])


def test_age_writer_passphrase_with_other_recipient_refused(identities):
    with pytest.raises(FormatError, match="passphrase must be the only recipient"):
        age.AgeWriter(io.BytesIO(), [age.Passphrase(b"p"), identities[0].recipient])


# --- errors ---------------------------------------------------------------------------------


def test_age_reader_wrong_identity_raises_one_line(identities):
    segment = age.encrypt(b"secret", [identities[0].recipient])
    with pytest.raises(DecryptError, match=r"^no identity matches this file$") as exc:
        age.decrypt(segment, [identities[1]])
    _one_line(exc)
    assert exc.value.hints == ["hint: the file is encrypted to 1 recipient(s) of type X25519"]


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "not an age file"),
        (b"hello world\n", "not an age file"),
        (b"\x00" * 100, "not an age file"),
        (b"age-encryption.org/v1\n", "unexpected end of file"),
        (b"age-encryption.org/v1\n--- AAAA\n", "no recipient stanzas"),
        (b"age-encryption.org/v1\n-> X25519 abc\n" + b"A" * 70 + b"\n", "longer than 64 columns"),
        (b"age-encryption.org/v1\n-> X25519 a=\n\n--- " + b"A" * 43 + b"\n", "not unpadded base64"),
        (b"age-encryption.org/v1\n-> X25519 abc\n\n--- x\n", "header MAC is not valid base64"),
        (b"age-encryption.org/v1\n->  X25519\n\n", "malformed stanza line"),
        (b"age-encryption.org/v1\nrandom line\n", "expected a stanza or the MAC line"),
        (b"age-encryption.org/v1\n" + b"-> a\n\n" * 20000, "too large"),
    ],
)
def test_age_parse_header_garbage_raises_one_line_format_error(identities, data, message):
    with pytest.raises(FormatError, match=message) as exc:
        age.decrypt(data, [identities[0]])
    _one_line(exc)


def test_age_errors_are_clip_errors_and_builtins():
    assert issubclass(FormatError, ValueError) and issubclass(CutError, DecryptError)
    assert issubclass(DecryptError, ClipError)


# --- the sealing rule ----------------------------------------------------------------------


def test_age_writer_full_chunk_sealed_only_when_one_more_byte_arrives(identities):
    out = io.BytesIO()
    writer = age.AgeWriter(out, [identities[0].recipient])
    header = writer.ciphertext_bytes
    assert writer.bytes_to_seal() == CHUNK + 1
    writer.write(b"a" * CHUNK)
    assert writer.ciphertext_bytes == header and writer.bytes_to_seal() == 1
    writer.write(b"b")
    assert writer.ciphertext_bytes == header + SEALED == len(out.getvalue())
    assert writer.plaintext_bytes == CHUNK and writer.bytes_to_seal() == CHUNK
    assert writer.plaintext_sha256() == hashlib.sha256(b"a" * CHUNK).hexdigest()
    assert writer.ciphertext_sha256() == hashlib.sha256(out.getvalue()).hexdigest()
    writer.close()
    assert age.decrypt(out.getvalue(), [identities[0]]) == b"a" * CHUNK + b"b"


def test_age_writer_null_packet_padding_seals_chunk_and_plays_back(identities):
    # The recorder's once-a-second rule: pad with whole MPEG-TS null packets (PID 0x1FFF).
    null_packet = b"\x47\x1f\xff\x10" + b"\xff" * 184
    out = io.BytesIO()
    writer = age.AgeWriter(out, [identities[0].recipient])
    video = _payload(5000)
    writer.write(video)
    sealed_before = writer.plaintext_bytes
    packets = -(-writer.bytes_to_seal() // len(null_packet))
    writer.write(null_packet * packets)
    assert writer.plaintext_bytes == sealed_before + CHUNK
    assert len(out.getvalue()) == writer.ciphertext_bytes
    writer.close()
    assert age.decrypt(out.getvalue(), [identities[0]]) == video + null_packet * packets


def test_age_writer_write_after_close_raises(identities):
    writer = age.AgeWriter(io.BytesIO(), [identities[0].recipient])
    writer.close()
    with pytest.raises(ValueError, match="closed"):
        writer.write(b"x")


def test_age_writer_mutable_buffer_reused_by_caller_hashes_what_was_written(identities):
    out = io.BytesIO()
    writer = age.AgeWriter(out, [identities[0].recipient])
    buf = bytearray(3 * CHUNK)
    written = b""
    for fill in (b"x", b"y", b"z"):
        buf[:] = fill * len(buf)
        writer.write(buf)
        written += bytes(buf)
    writer.close()
    assert writer.plaintext_sha256() == hashlib.sha256(written).hexdigest()
    assert age.decrypt(out.getvalue(), [identities[0]]) == written


# --- cuts and salvage ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def multi_chunk(identities):
    plain = _payload(3 * CHUNK + 1000, seed=11)
    segment = age.encrypt(plain, [identities[0].recipient])
    header_len = len(age.parse_header(io.BytesIO(segment)).raw)
    return plain, segment, header_len


def _cut_offsets(total: int, header_len: int) -> list[int]:
    payload = header_len + age.NONCE_SIZE
    marks = [0, header_len, payload] + [payload + k * SEALED for k in range(1, 4)] + [total]
    near = {o + d for o in marks for d in range(-2, 3) if 0 <= o + d < total}
    stride = set(range(0, total, 509))
    # Every byte of the header, the nonce and the first and last tag as well.
    dense = set(range(0, payload + 1)) | set(range(payload + SEALED - 20, payload + SEALED + 4))
    dense |= set(range(total - 40, total))
    return sorted(near | stride | dense)


def test_age_salvage_cut_at_every_offset_returns_complete_chunks_before_cut(identities, multi_chunk):
    plain, segment, header_len = multi_chunk
    payload = header_len + age.NONCE_SIZE
    chunks = [plain[i : i + CHUNK] for i in range(0, len(plain), CHUNK)]
    assert len(chunks) == 4
    for cut in _cut_offsets(len(segment), header_len):
        src = segment[:cut]
        if cut < header_len:
            # Nothing to salvage: without its MAC line the header cannot even be authenticated.
            with pytest.raises(FormatError, match="not an age file|unexpected end of file"):
                list(age.read_chunks(io.BytesIO(src), [identities[0]], salvage=age.Salvage()))
            continue
        complete = max(0, (cut - payload) // SEALED) if cut >= payload else 0
        report = age.Salvage()
        got = list(age.read_chunks(io.BytesIO(src), [identities[0]], salvage=report))
        assert got == chunks[:complete], cut
        assert report.cut and report.complete_chunks == complete, cut
        assert report.plaintext_bytes == complete * CHUNK
        assert report.ciphertext_offset == (payload + complete * SEALED if cut >= payload else header_len)
        if cut < payload:
            # As the reference age: the nonce is read with the header, a file cut in it is a header fault.
            with pytest.raises(HeaderError, match="payload nonce"):
                age.decrypt(src, [identities[0]])
            continue
        with pytest.raises(CutError, match="segment is cut") as exc:
            age.decrypt(src, [identities[0]])
        _one_line(exc)
        assert exc.value.plaintext_bytes == complete * CHUNK


def test_age_salvage_whole_file_reports_not_cut(identities, multi_chunk):
    plain, segment, _ = multi_chunk
    report = age.Salvage()
    assert b"".join(age.read_chunks(io.BytesIO(segment), [identities[0]], salvage=report)) == plain
    assert not report.cut and report.complete_chunks == 4 and report.ciphertext_offset == len(segment)


def test_age_salvage_cut_on_chunk_boundary_names_missing_final_chunk(identities, multi_chunk):
    plain, segment, header_len = multi_chunk
    end = header_len + age.NONCE_SIZE + 2 * SEALED
    report = age.Salvage()
    got = list(age.read_chunks(io.BytesIO(segment[:end]), [identities[0]], salvage=report))
    assert b"".join(got) == plain[: 2 * CHUNK]
    assert report.reason == "no final chunk after chunk 1"


# --- flipped bits ---------------------------------------------------------------------------


def _flip_positions(segment: bytes, header_len: int) -> list[tuple[int, str]]:
    payload = header_len + age.NONCE_SIZE
    mac_line = segment.rindex(b"\n---", 0, header_len) + 1
    where = [(p, "header") for p in (0, 5, 22, 25, 30, 40, 60, mac_line - 2)]
    where += [(p, "mac") for p in (mac_line, mac_line + 4, mac_line + 10, header_len - 2)]
    where += [(header_len + k, "nonce") for k in (0, 7, 15)]
    for chunk in range(4):
        start = payload + chunk * SEALED
        end = min(start + SEALED, len(segment))
        where += [(p, f"chunk {chunk}") for p in (start, start + 1000, end - 17, end - 16, end - 8, end - 1)]
    return where


def test_age_reader_single_flipped_bit_is_detected_and_named(identities, multi_chunk):
    plain, segment, header_len = multi_chunk
    rng = random.Random(5)
    for position, region in _flip_positions(segment, header_len):
        damaged = bytearray(segment)
        damaged[position] ^= 1 << rng.randrange(8)
        with pytest.raises(ClipError) as exc:
            age.decrypt(bytes(damaged), [identities[0]])
        _one_line(exc)
        message = str(exc.value)
        if region == "nonce":
            assert "chunk 0" in message, (position, message)
        elif region.startswith("chunk"):
            assert region in message, (position, message)
        elif region == "mac":
            assert "MAC" in message, (position, message)
        else:
            assert isinstance(exc.value, (FormatError, DecryptError)), (position, message)


def test_age_reader_appended_bytes_after_final_chunk_detected(identities):
    segment = age.encrypt(_payload(CHUNK), [identities[0].recipient])
    with pytest.raises(PayloadError, match="data after the final chunk"):
        age.decrypt(segment + b"\x00" * 100, [identities[0]])


def test_age_reader_empty_final_chunk_after_data_refused(identities):
    # Built by hand: chunk 0 full and non-final, then an empty final chunk (the spec forbids it).
    from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

    file_key, nonce = bytes(range(16)), bytes(16)
    header = age.encode_header(file_key, [identities[0].recipient.wrap(file_key)])
    aead = ChaCha20Poly1305(age._hkdf(file_key, nonce, b"payload"))
    body = aead.encrypt(bytes(11) + b"\x00", b"a" * CHUNK, None)
    body += aead.encrypt((1).to_bytes(11, "big") + b"\x01", b"", None)
    with pytest.raises(PayloadError, match="chunk 1 .* empty final chunk after data"):
        age.decrypt(header + nonce + body, [identities[0]])
