"""Tests of evidence_store.checkpoint (C2SP tlog-checkpoint, tlog-proof), including the
independent oracle: tests/oracle/tlogcheck, a Go program on golang.org/x/mod/sumdb/note and
sumdb/tlog, checks what our Python code produces, and our code checks what Go signs."""

import base64
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from evidence_store import checkpoint as cp
from evidence_store import merkle
from evidence_store.clip import note
from evidence_store.clip.errors import FormatError, SignatureError
from evidence_store.errors import IntegrityError

ORIGIN = "store.example/evidence-log"
LEAVES = [b"leaf %d" % i for i in range(23)]
ORACLE_SOURCE = Path(__file__).resolve().parents[1] / "oracle" / "tlogcheck"
GOPATH = Path("/usr/share/gocode")


class Log:
    """An in-memory log of LEAVES with stored hashes."""

    def __init__(self, leaves):
        _, hashes = merkle.stored_hashes_for_appends(0, [merkle.leaf_hash(d) for d in leaves])
        self.hashes = hashes

    def read_hash(self, indexes):
        return [self.hashes[i] for i in indexes]

    def root(self, size):
        return merkle.tree_hash(size, self.read_hash)


@pytest.fixture(scope="module")
def log():
    return Log(LEAVES)


@pytest.fixture(scope="module")
def signer():
    return note.NoteSigner.from_private_bytes(ORIGIN, bytes(range(1, 33)))


def signed_checkpoint(log, signer, size):
    return cp.sign_checkpoint(ORIGIN, size, log.root(size), signer)


def proof_text(log, signer, index, size, extra=None):
    proof = merkle.inclusion_proof(index, size, log.read_hash)
    return cp.format_tlog_proof(index, proof, signed_checkpoint(log, signer, size), extra)


# --- checkpoint text -------------------------------------------------------------------------


def test_checkpoint_format_matches_spec_layout():
    root = bytes(32)
    assert cp.format_checkpoint("example.com/log", 20852163, root) == (
        "example.com/log\n20852163\n" + base64.b64encode(root).decode() + "\n"
    )


def test_checkpoint_parse_round_trips_with_extensions():
    text = cp.format_checkpoint("o", 0, merkle.EMPTY_ROOT, ["ext one", "ext two"])
    parsed = cp.parse_checkpoint(text)
    assert parsed == cp.Checkpoint("o", 0, merkle.EMPTY_ROOT, ("ext one", "ext two"))
    assert parsed.text() == text


def test_checkpoint_spec_example_parses():
    text = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
    parsed = cp.parse_checkpoint(text)
    assert (parsed.origin, parsed.size) == ("example.com/behind-the-sofa", 20852163)


@pytest.mark.parametrize(
    "text, message",
    [
        ("o\n1\n", "2 lines"),
        ("o\n1\n" + base64.b64encode(bytes(32)).decode(), "newline"),
        ("\n1\n" + base64.b64encode(bytes(32)).decode() + "\n", "origin is empty"),
        ("o\n01\n" + base64.b64encode(bytes(32)).decode() + "\n", "line 2"),
        ("o\n-1\n" + base64.b64encode(bytes(32)).decode() + "\n", "line 2"),
        ("o\n1\n" + base64.b64encode(bytes(31)).decode() + "\n", "31 bytes"),
        ("o\n1\nnot base64!\n", "line 3"),
        ("o\n1\n" + base64.b64encode(bytes(32)).decode() + "\n\n", "line 4"),
    ],
)
def test_checkpoint_parse_malformed_raises_format_error(text, message):
    with pytest.raises(FormatError, match=message):
        cp.parse_checkpoint(text)


def test_checkpoint_sign_then_open_returns_checkpoint(log, signer):
    opened = cp.open_checkpoint(signed_checkpoint(log, signer, 23), signer.verifier(), origin=ORIGIN)
    assert (opened.origin, opened.size, opened.root) == (ORIGIN, 23, log.root(23))


def test_checkpoint_tampered_size_raises_signature_error(log, signer):
    signed = signed_checkpoint(log, signer, 23).replace(b"\n23\n", b"\n24\n", 1)
    with pytest.raises(SignatureError, match="does not verify"):
        cp.open_checkpoint(signed, signer.verifier())


def test_checkpoint_tampered_root_byte_raises_signature_error(log, signer):
    signed = bytearray(signed_checkpoint(log, signer, 23))
    signed[len(ORIGIN) + 4 + 5] ^= 0x01  # a character of the base64 root
    with pytest.raises(SignatureError):
        cp.open_checkpoint(bytes(signed), signer.verifier())


def test_checkpoint_wrong_origin_raises_integrity_error(log, signer):
    with pytest.raises(IntegrityError, match="expected 'other.example/log'"):
        cp.open_checkpoint(signed_checkpoint(log, signer, 3), signer.verifier(), origin="other.example/log")


def test_checkpoint_other_key_raises_signature_error(log, signer):
    other = note.generate_signer(ORIGIN)
    with pytest.raises(SignatureError, match="not signed by"):
        cp.open_checkpoint(signed_checkpoint(log, other, 3), signer.verifier())


def test_checkpoint_consistency_between_checkpoints_verifies(log, signer):
    old = cp.open_checkpoint(signed_checkpoint(log, signer, 9), signer.verifier())
    new = cp.open_checkpoint(signed_checkpoint(log, signer, 23), signer.verifier())
    cp.verify_checkpoint_consistency(old, new, merkle.consistency_proof(9, 23, log.read_hash))


def test_checkpoint_consistency_with_forked_log_raises_proof_error(log, signer):
    forked = Log(LEAVES[:5] + [b"rewritten"] + LEAVES[6:])
    old = cp.Checkpoint(ORIGIN, 9, log.root(9))
    new = cp.Checkpoint(ORIGIN, 23, forked.root(23))
    with pytest.raises(merkle.ProofError, match="does not lead to the (old|new) root"):
        cp.verify_checkpoint_consistency(old, new, merkle.consistency_proof(9, 23, forked.read_hash))


# --- tlog-proof ------------------------------------------------------------------------------


def test_tlog_proof_layout_follows_spec(log, signer):
    text = proof_text(log, signer, 5, 23, extra=b"ctx")
    lines = text.split("\n")
    assert lines[0] == "c2sp.org/tlog-proof@v1"
    assert lines[1] == "extra " + base64.b64encode(b"ctx").decode()
    assert lines[2] == "index 5"
    n = len(merkle.inclusion_proof(5, 23, log.read_hash))
    assert all(len(base64.b64decode(line)) == 32 for line in lines[3 : 3 + n])
    assert lines[3 + n] == ""
    assert text.endswith(signed_checkpoint(log, signer, 23).decode())


def test_tlog_proof_parse_round_trips(log, signer):
    parsed = cp.parse_tlog_proof(proof_text(log, signer, 5, 23, extra=b"ctx"))
    assert parsed.index == 5 and parsed.extra == b"ctx"
    assert list(parsed.hashes) == merkle.inclusion_proof(5, 23, log.read_hash)
    assert parsed.checkpoint == signed_checkpoint(log, signer, 23)


@pytest.mark.parametrize("index, size", [(0, 1), (0, 23), (22, 23), (16, 17), (7, 8)])
def test_tlog_proof_verify_returns_checkpoint(log, signer, index, size):
    checked = cp.verify_tlog_proof(proof_text(log, signer, index, size), LEAVES[index], signer.verifier(), ORIGIN)
    assert checked.size == size


def test_tlog_proof_wrong_leaf_bytes_raises_proof_error(log, signer):
    with pytest.raises(merkle.ProofError, match="leaf 5") as info:
        cp.verify_tlog_proof(proof_text(log, signer, 5, 23), b"leaf 5 edited", signer.verifier())
    assert info.value.where == "leaf 5 of 23"


def test_tlog_proof_tampered_hash_byte_raises_proof_error(log, signer):
    proof = merkle.inclusion_proof(5, 23, log.read_hash)
    proof[1] = proof[1][:7] + bytes([proof[1][7] ^ 0x20]) + proof[1][8:]
    text = cp.format_tlog_proof(5, proof, signed_checkpoint(log, signer, 23))
    with pytest.raises(merkle.ProofError, match="does not lead to the root"):
        cp.verify_tlog_proof(text, LEAVES[5], signer.verifier())


def test_tlog_proof_tampered_index_raises_proof_error(log, signer):
    text = proof_text(log, signer, 5, 23).replace("index 5\n", "index 4\n")
    with pytest.raises(merkle.ProofError):
        cp.verify_tlog_proof(text, LEAVES[5], signer.verifier())


def test_tlog_proof_tampered_checkpoint_raises_signature_error(log, signer):
    text = proof_text(log, signer, 5, 23).replace(f"\n{ORIGIN}\n23\n", f"\n{ORIGIN}\n22\n")
    with pytest.raises(SignatureError):
        cp.verify_tlog_proof(text, LEAVES[5], signer.verifier())


def test_tlog_proof_index_beyond_size_raises_proof_error(log, signer):
    text = cp.format_tlog_proof(30, [], signed_checkpoint(log, signer, 23))
    with pytest.raises(merkle.ProofError, match="beyond"):
        cp.verify_tlog_proof(text, LEAVES[5], signer.verifier())


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda t: t.replace("c2sp.org/tlog-proof@v1", "c2sp.org/tlog-proof@v2"), "line 1"),
        (lambda t: t.replace("index 5\n", "index 05\n"), "index"),
        (lambda t: t.replace("index 5\n", ""), "expected 'index"),
        (lambda t: t.replace("\n\n", "\n", 1), "blank line|proof hash"),
        (lambda t: t.split("\n\n")[0] + "\n\n", "missing"),
        (lambda t: t.replace("index 5\n", "index 5\nAAAA\n"), "3 bytes"),
        (lambda t: t.replace("index 5\n", "index 5\n****\n"), "base64"),
    ],
)
def test_tlog_proof_malformed_raises_format_error(log, signer, change, message):
    with pytest.raises(FormatError, match=message):
        cp.parse_tlog_proof(change(proof_text(log, signer, 5, 23)))


# --- the Go oracle ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def oracle(tmp_path_factory):
    """Build tests/oracle/tlogcheck with Debian's golang-golang-x-mod-dev; return a runner."""
    go = shutil.which("go")
    if go is None:
        pytest.skip("the Go toolchain (`go`, Debian golang-go) is not installed")
    if not (GOPATH / "src/golang.org/x/mod/sumdb/note").is_dir():
        pytest.skip(f"{GOPATH}/src/golang.org/x/mod is missing (Debian golang-golang-x-mod-dev)")
    out = tmp_path_factory.mktemp("oracle")
    env = dict(os.environ, GO111MODULE="off", GOPATH=str(GOPATH), GOFLAGS="")
    env.setdefault("GOCACHE", str(out / "gocache"))
    binary = out / "tlogcheck"
    subprocess.run([go, "build", "-o", str(binary), "."], cwd=ORACLE_SOURCE, env=env, check=True, timeout=300)

    def run(*args, stdin=b""):
        return subprocess.run([str(binary), *args], input=stdin, capture_output=True, timeout=60)

    return run


def go_check(oracle, request):
    result = oracle("check", stdin=json.dumps(request).encode())
    return result.returncode, (json.loads(result.stdout) if result.returncode == 0 else result.stderr.decode())


def b64(data):
    return base64.b64encode(data).decode()


def test_oracle_go_verifies_our_note_vkey_inclusion_and_consistency(oracle, log, signer):
    proof = merkle.inclusion_proof(11, 23, log.read_hash)
    code, report = go_check(oracle, {
        "vkey": signer.verifier_key(),
        "checkpoint": signed_checkpoint(log, signer, 23).decode(),
        "leaf": b64(LEAVES[11]),
        "index": 11,
        "proof": [b64(h) for h in proof],
        "old_checkpoint": signed_checkpoint(log, signer, 6).decode(),
        "consistency": [b64(h) for h in merkle.consistency_proof(6, 23, log.read_hash)],
        "tlog_proof": proof_text(log, signer, 11, 23, extra=b"case 2024/17"),
    })
    assert code == 0, report
    assert report["checked"] == ["vkey", "note", "inclusion", "consistency", "tlog-proof"]
    assert (report["origin"], report["size"]) == (ORIGIN, 23)
    assert base64.b64decode(report["root"]) == log.root(23)


@pytest.mark.parametrize("index, size", [(0, 1), (0, 2), (1, 2), (3, 4), (4, 5), (15, 16), (16, 17), (22, 23)])
def test_oracle_go_verifies_our_inclusion_proofs_at_edges(oracle, log, signer, index, size):
    code, report = go_check(oracle, {
        "vkey": signer.verifier_key(),
        "checkpoint": signed_checkpoint(log, signer, size).decode(),
        "leaf": b64(LEAVES[index]),
        "index": index,
        "proof": [b64(h) for h in merkle.inclusion_proof(index, size, log.read_hash)],
        "tlog_proof": proof_text(log, signer, index, size),
    })
    assert code == 0, report


@pytest.mark.parametrize("old, new", [(1, 2), (1, 23), (2, 3), (4, 8), (7, 8), (8, 16), (9, 23), (16, 23), (22, 23), (5, 5)])
def test_oracle_go_verifies_our_consistency_proofs(oracle, log, signer, old, new):
    code, report = go_check(oracle, {
        "vkey": signer.verifier_key(),
        "checkpoint": signed_checkpoint(log, signer, new).decode(),
        "old_checkpoint": signed_checkpoint(log, signer, old).decode(),
        "consistency": [b64(h) for h in merkle.consistency_proof(old, new, log.read_hash)],
    })
    assert code == 0, report


def test_oracle_go_stored_hash_index_equals_ours(oracle, signer):
    pairs = [(level, n) for level in range(6) for n in range(9)]
    code, report = go_check(oracle, {"vkey": signer.verifier_key(), "stored_index": pairs})
    assert code == 0, report
    assert report["stored_index"] == [merkle.stored_hash_index(level, n) for level, n in pairs]


def test_oracle_go_rejects_our_tampered_note(oracle, log, signer):
    tampered = signed_checkpoint(log, signer, 23).replace(b"\n23\n", b"\n24\n", 1)
    code, message = go_check(oracle, {"vkey": signer.verifier_key(), "checkpoint": tampered.decode()})
    assert code == 1 and "invalid signature" in message


def test_oracle_go_rejects_our_proof_with_tampered_hash(oracle, log, signer):
    proof = merkle.inclusion_proof(11, 23, log.read_hash)
    proof[0] = bytes(32)
    code, message = go_check(oracle, {
        "vkey": signer.verifier_key(),
        "checkpoint": signed_checkpoint(log, signer, 23).decode(),
        "leaf": b64(LEAVES[11]),
        "index": 11,
        "proof": [b64(h) for h in proof],
    })
    assert code == 1 and "CheckRecord" in message


def test_oracle_go_rejects_forked_consistency(oracle, log, signer):
    forked = Log(LEAVES[:3] + [b"rewritten"] + LEAVES[4:])
    code, message = go_check(oracle, {
        "vkey": signer.verifier_key(),
        "checkpoint": cp.sign_checkpoint(ORIGIN, 23, forked.root(23), signer).decode(),
        "old_checkpoint": signed_checkpoint(log, signer, 9).decode(),
        "consistency": [b64(h) for h in merkle.consistency_proof(9, 23, forked.read_hash)],
    })
    assert code == 1 and "CheckTree" in message


def test_oracle_go_signed_checkpoint_opens_with_our_code(oracle, log):
    result = oracle("genkey", ORIGIN)
    assert result.returncode == 0, result.stderr
    skey, vkey = result.stdout.decode().split()
    # Go's key texts parse in ours, and our derived vkey equals Go's.
    assert note.NoteSigner.from_skey(skey).verifier_key() == vkey
    text = cp.format_checkpoint(ORIGIN, 23, log.root(23))
    signed = oracle("sign", skey, stdin=text.encode())
    assert signed.returncode == 0, signed.stderr
    verifier = note.NoteVerifier.from_vkey(vkey)
    opened = cp.open_checkpoint(signed.stdout, verifier, origin=ORIGIN)
    assert (opened.size, opened.root) == (23, log.root(23))
    # Ed25519 is deterministic: our signature over the same text is byte-identical to Go's.
    assert cp.sign_checkpoint(ORIGIN, 23, log.root(23), note.NoteSigner.from_skey(skey)) == signed.stdout
    # And a tlog-proof around Go's checkpoint verifies in ours.
    text = cp.format_tlog_proof(7, merkle.inclusion_proof(7, 23, log.read_hash), signed.stdout)
    assert cp.verify_tlog_proof(text, LEAVES[7], verifier).size == 23


def test_oracle_go_signed_note_tampered_raises_signature_error(oracle):
    skey, vkey = oracle("genkey", "camera.example/cam-1").stdout.decode().split()
    signed = oracle("sign", skey, stdin=b'{"device":"cam-1"}\n').stdout
    verifier = note.NoteVerifier.from_vkey(vkey)
    assert note.open_note(signed, verifier) == '{"device":"cam-1"}\n'
    with pytest.raises(SignatureError):
        note.open_note(signed.replace(b"cam-1", b"cam-2", 1), verifier)


@pytest.fixture
def store_with_checkpoints(tmp_path):
    """A real store whose log has a signed checkpoint at every size from 1 (init's config event) to 8."""
    from evidence_store.store import Store
    from tests.clipfactory import DeviceFixture
    from tests.evidence_store.conftest import PASSPHRASE, TEST_LOG_N

    root = tmp_path / "store"
    with Store.init(root, PASSPHRASE, scrypt_log_n=TEST_LOG_N, actor="admin") as store:
        while store.log.size() < 8:
            cam = DeviceFixture.new(f"cam-{store.log.size():02d}")
            store.enroll(cam.device_id, cam.public_key)
        assert [size for size, _ in store.log.checkpoints()] == list(range(1, 9))
    return root


def _cli(capsys, *argv):
    from evidence_store.cli import main

    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("old, new", [(1, None), (3, 5), (4, 8), (5, 5), (7, None)])
def test_oracle_go_checks_cli_consistency_proof(oracle, store_with_checkpoints, capsys, old, new):
    from evidence_store.store import Store

    root = store_with_checkpoints
    code, out, err = _cli(capsys, "--store", root, "consistency", old, *([new] if new else []))
    assert code == 0, err
    with Store.open(root) as store:
        vkey, old_note = store.log.verifier.vkey(), store.log.checkpoint_at(old)
    size, _, note_bytes = cp.parse_consistency_proof(out)
    assert size == old and out.startswith(f"old {old}\n")
    code, report = go_check(oracle, {"vkey": vkey, "old_checkpoint": old_note.decode(), "consistency_proof": out})
    assert code == 0, report
    assert report["checked"] == ["vkey", "consistency-proof"]
    # The proof ends in the checkpoint of NEW (the latest when NEW is left out), verbatim.
    assert cp.parse_checkpoint(note.open_note(note_bytes, note.NoteVerifier.from_vkey(vkey))).size == (new or 8)


def test_oracle_go_rejects_consistency_proof_with_a_changed_hash(oracle, store_with_checkpoints, capsys):
    from evidence_store.store import Store

    root = store_with_checkpoints
    code, out, _ = _cli(capsys, "--store", root, "consistency", 3, 8)
    assert code == 0
    with Store.open(root) as store:
        vkey, old_note = store.log.verifier.vkey(), store.log.checkpoint_at(3)
    lines = out.split("\n")
    lines[1] = b64(bytes(32))
    code, report = go_check(oracle, {"vkey": vkey, "old_checkpoint": old_note.decode(),
                                     "consistency_proof": "\n".join(lines)})
    assert code == 1 and "tlog.CheckTree(3 -> 8)" in report


@pytest.mark.parametrize("argv, message", [
    (["consistency", "2", "99"], "no signed checkpoint of size 99"),
    (["consistency", "6", "5"], "OLD must be between 1 and 5, got 6"),
    (["consistency", "0"], "OLD must be between 1 and 8, got 0"),
    (["consistency", "-1"], "not a tree size"),
    (["consistency", "two"], "not a tree size"),
])
def test_cli_consistency_bad_sizes_one_line_usage_error(store_with_checkpoints, capsys, argv, message):
    code, out, err = _cli(capsys, "--store", store_with_checkpoints, *argv)
    assert code == 2 and out == ""
    assert err.startswith("bodycam-evidence: error: ") and message in err.splitlines()[0]
    assert "Traceback" not in err


def test_consistency_proof_round_trips_and_python_verifies(store_with_checkpoints, capsys):
    from evidence_store.store import Store

    code, out, _ = _cli(capsys, "--store", store_with_checkpoints, "consistency", "3")
    assert code == 0
    old_size, hashes, note_bytes = cp.parse_consistency_proof(out)
    with Store.open(store_with_checkpoints) as store:
        old = cp.open_checkpoint(store.log.checkpoint_at(3), store.log.verifier)
        new = cp.open_checkpoint(note_bytes, store.log.verifier)
    cp.verify_checkpoint_consistency(old, new, hashes)
    assert cp.format_consistency_proof(old_size, hashes, note_bytes) == out
    with pytest.raises(merkle.ProofError):
        cp.verify_checkpoint_consistency(old, new, hashes[:-1])


@pytest.mark.parametrize("text, message", [
    ("old 3\n", "no checkpoint after a blank line"),
    ("new 3\n\nx\n", "expected 'old <n>'"),
    ("old 03\n\nx\n", "leading zeroes"),
    ("old 3\nAAAA\n\nx\n", "3 bytes, expected 32"),
    ("old 3\n***\n\nx\n", "not valid base64"),
])
def test_consistency_proof_malformed_raises_format_error(text, message):
    with pytest.raises(FormatError, match=message):
        cp.parse_consistency_proof(text)
