"""age conformance: every C2SP CCTV age vector in our scope (tests/vectors/age, see its LICENSE).

Scope: X25519 and scrypt recipients, header parsing, the STREAM payload (all files named
x25519_*, scrypt_*, stanza_*, hmac_*, stream_*, header_*, version_*, empty).
Out of scope, not vendored: armor_* (we read and write no ASCII armor: segments and identity
files are binary) and hybrid_* (ML-KEM post-quantum recipients, which we do not implement).

Each vector names what the reference age does with it; we check that our reader raises the
same class of failure and releases exactly the plaintext the reference releases (its hash),
as the CCTV README asks:

    success          -> no error; payload hash matches
    header failure   -> HeaderError (the header does not parse, or a stanza is malformed)
    no match         -> DecryptError, and neither a header, MAC nor payload error
    HMAC failure     -> HeaderMacError
    payload failure  -> PayloadError (CutError is one); released plaintext matches the hash
"""

from __future__ import annotations

import hashlib
import io
import shutil
import subprocess
import zlib
from pathlib import Path

import pytest

from evidence_store.clip import age
from evidence_store.clip.errors import DecryptError, HeaderError, HeaderMacError, PayloadError

VECTORS = Path(__file__).resolve().parent.parent / "vectors" / "age"
IN_SCOPE = ("x25519", "scrypt", "stanza", "hmac", "stream", "header", "version", "empty")
OUT_OF_SCOPE = ("armor", "hybrid")
EXPECTED_CLASS = {
    "header failure": HeaderError,
    "HMAC failure": HeaderMacError,
    "payload failure": PayloadError,
}


def _vectors() -> list[Path]:
    return sorted(p for p in VECTORS.iterdir() if p.name != "LICENSE")


def _load(path: Path) -> tuple[dict[str, str], list, bytes]:
    head, _, body = path.read_bytes().partition(b"\n\n")
    meta: dict[str, str] = {}
    identities: list = []
    for line in head.decode().splitlines():
        key, _, value = line.partition(": ")
        if key == "identity":
            identities.append(age.Identity.parse(value))
        elif key == "passphrase":
            identities.append(age.Passphrase(value.encode()))
        else:
            meta[key] = value
    if meta.get("compressed") == "zlib":
        body = zlib.decompress(body)
    return meta, identities, body


def test_age_cctv_vendored_set_is_complete_and_in_scope():
    names = [p.name for p in _vectors()]
    assert len(names) == 92
    assert all(n.split("_")[0] in IN_SCOPE for n in names)
    assert not [n for n in names if n.startswith(OUT_OF_SCOPE)]
    assert "0BSD" in (VECTORS / "LICENSE").read_text() or "Zero-Clause BSD" in (VECTORS / "LICENSE").read_text()


@pytest.mark.parametrize("path", _vectors(), ids=lambda p: p.name)
def test_age_cctv_vector_reader_matches_reference(path):
    meta, identities, body = _load(path)
    expect = meta["expect"]
    released = bytearray()
    error: Exception | None = None
    try:
        for chunk in age.read_chunks(io.BytesIO(body), identities):
            released += chunk
    except (HeaderError, DecryptError) as exc:
        error = exc
    if expect == "success":
        assert error is None
    elif expect == "no match":
        assert type(error) is DecryptError, error
    else:
        assert isinstance(error, EXPECTED_CLASS[expect]), f"{expect}: got {type(error).__name__}: {error}"
    if error is not None:
        assert str(error) and "\n" not in str(error)
    if "payload" in meta:
        assert hashlib.sha256(released).hexdigest() == meta["payload"]
    else:
        assert not released


def test_age_cctv_short_chunk_authenticating_as_non_final_releases_nothing():
    # stream_no_final: one 1-byte chunk sealed as NOT final, then the end of the file. It
    # authenticates as a non-final chunk, but a short chunk can only be final: nothing is released.
    meta, identities, body = _load(VECTORS / "stream_no_final")
    salvage = age.Salvage()
    assert list(age.read_chunks(io.BytesIO(body), identities, salvage=salvage)) == []
    assert salvage.cut and salvage.plaintext_bytes == 0


def test_age_cctv_low_order_share_is_a_typed_header_error():
    meta, identities, body = _load(VECTORS / "x25519_low_order")
    with pytest.raises(HeaderError, match="low-order"):
        age.decrypt(body, identities)


needs_age = pytest.mark.skipif(shutil.which("age") is None, reason="Debian's age tool is not installed")


@needs_age
@pytest.mark.parametrize("path", [p for p in _vectors() if b"\npassphrase: " not in p.read_bytes()[:2000]],
                         ids=lambda p: p.name)
def test_age_cctv_vector_real_age_tool_agrees(tmp_path, path):
    # The vectors' claims checked against the reference implementation on this machine (scrypt
    # vectors need a terminal for the passphrase, so age runs only the identity ones).
    meta, identities, body = _load(path)
    keys = tmp_path / "keys.txt"
    keys.write_text("".join(f"{i}\n" for i in identities))
    (tmp_path / "file.age").write_bytes(body)
    done = subprocess.run(["age", "-d", "-i", str(keys), str(tmp_path / "file.age")],
                          capture_output=True, check=False)
    assert (done.returncode == 0) == (meta["expect"] == "success"), done.stderr.decode()
    if done.returncode == 0:
        assert hashlib.sha256(done.stdout).hexdigest() == meta["payload"]
