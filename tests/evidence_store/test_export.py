"""Court export: the package verifies offline, with our verify_export and with standard tools
(sha256sum, age, ffprobe, Go's sumdb/tlog via tests/oracle/tlogcheck)."""

import base64
import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from evidence_store.errors import UsageError
from evidence_store.export import export_clip, verify_export
from tests.clipfactory import EMERGENCY, FPS
from tests.evidence_store.conftest import PASSPHRASE, tamper_object

ORACLE_SOURCE = Path(__file__).resolve().parents[1] / "oracle" / "tlogcheck"
GOPATH = Path("/usr/share/gocode")


@pytest.fixture
def exported(store, add_clip, tmp_path):
    clip = add_clip(trigger=EMERGENCY, segments=2, seconds=2.0)
    store.justify(clip.clip_id, reason="knife")
    store.log_access("view", clip.clip_id, reason="review")
    store.hold(clip.clip_id, case="StA-1", reason="evidence")
    out = tmp_path / "export"
    result = export_clip(store, clip.clip_id, out, reason="prosecutor request", identities=store.identities(PASSPHRASE))
    return clip, out, result


def test_export_package_verifies_offline(store, exported):
    clip, out, result = exported
    assert verify_export(out) == []
    assert verify_export(out, store.verifier_key) == []
    names = {p.name for p in out.rglob("*") if p.is_file()}
    assert {"README.txt", "clip.mp4", "manifest", "journal", "checkpoint", "store.vkey", "device.pub",
            "SHA256SUMS", "SHA256SUMS.note", "export-event.json", "export-event.tlog-proof",
            "seg-00000.ts", "seg-00001.ts"} <= names


def test_export_segments_are_the_camera_signed_plaintext(exported):
    clip, out, _ = exported
    for seg in clip.manifest.segments:
        data = (out / "segments" / seg.name.replace(".age", ".ts")).read_bytes()
        assert hashlib.sha256(data).hexdigest() == seg.plaintext_sha256
        assert data == clip.plaintext[seg.name]


def test_export_events_logged_before_and_after_with_list_hash(store, exported):
    clip, out, result = exported
    kinds = [(e["kind"], e.get("step")) for e in store.events(clip_id=clip.clip_id)]
    assert kinds[-2:] == [("export", "begin"), ("export", "sealed")]
    sealed = json.loads((out / "export-event.json").read_bytes())
    assert sealed["files"] == hashlib.sha256((out / "SHA256SUMS.note").read_bytes()).hexdigest() == result.sums_sha256
    # every event about the clip up to the begin event ships with leaf bytes and proof
    shipped = sorted(int(p.stem) for p in (out / "events").glob("*.json"))
    assert shipped == [e["index"] for e in store.events(clip_id=clip.clip_id)][:-1]


def test_export_sha256sum_checks_the_list(exported):
    _, out, _ = exported
    subprocess.run(["sha256sum", "--strict", "-c", "--quiet", "SHA256SUMS"], cwd=out, check=True)


def test_export_mp4_has_every_frame_and_segments_play(exported):
    if shutil.which("ffprobe") is None:
        pytest.skip("ffprobe is not installed")
    _, out, _ = exported
    probe = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0", "-show_entries",
                            "stream=codec_name,nb_read_frames", "-of", "json", str(out / "clip.mp4")],
                           capture_output=True, check=True, text=True)
    (stream,) = json.loads(probe.stdout)["streams"]
    assert stream["codec_name"] == "h264" and int(stream["nb_read_frames"]) == 2 * FPS
    for ts in (out / "segments").glob("*.ts"):
        subprocess.run(["ffprobe", "-v", "error", str(ts)], check=True)


def test_export_object_decrypts_with_age_tool_to_exported_segment(store, exported, tmp_path):
    if shutil.which("age") is None:
        pytest.skip("age is not installed")
    clip, out, _ = exported
    (identity,) = store.identities(PASSPHRASE)
    key = tmp_path / "key.txt"
    key.write_text(f"{identity}\n")
    seg = store.segments(clip.clip_id)[0]
    plain = subprocess.run(["age", "-d", "-i", str(key)], input=store.objects.read(seg["sha256"]),
                           capture_output=True, check=True).stdout
    assert plain == (out / "segments" / "seg-00000.ts").read_bytes()


@pytest.mark.parametrize("victim", ["segments/seg-00001.ts", "clip.mp4", "manifest", "events/2.json", "checkpoint",
                                    "SHA256SUMS.note", "export-event.json"])
def test_export_altered_file_named_by_verify_export(exported, victim):
    _, out, _ = exported
    path = out / victim
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    faults = verify_export(out)
    assert faults and any(victim in f.where or victim.split("/")[-1].split(".")[0] in f.where for f in faults)


def test_export_removed_event_found(exported):
    _, out, _ = exported
    (out / "events" / "4.json").unlink()
    (out / "events" / "4.tlog-proof").unlink()
    kinds = {f.kind for f in verify_export(out)}
    assert "file-missing" in kinds and "event-chain" in kinds


def test_export_other_store_key_refused(exported):
    from evidence_store.clip.note import generate_signer

    _, out, _ = exported
    faults = verify_export(out, generate_signer("other").verifier_key())
    assert {"key-mismatch", "list-signature"} <= {f.kind for f in faults}


def test_export_into_non_empty_folder_refused_nothing_logged(store, add_clip, tmp_path):
    clip = add_clip()
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x").write_text("x")
    size = store.log.size()
    with pytest.raises(UsageError, match="not empty"):
        export_clip(store, clip.clip_id, tmp_path / "busy", reason="r", identities=store.identities(PASSPHRASE))
    assert store.log.size() == size


def test_export_cut_segment_exports_signed_part(store, add_clip, tmp_path):
    clip = add_clip(cut_last=True)
    out = tmp_path / "cut"
    export_clip(store, clip.clip_id, out, reason="r", identities=store.identities(PASSPHRASE))
    assert verify_export(out) == []
    assert (out / "segments" / "seg-00000.ts").read_bytes() == clip.plaintext["seg-00000.age"]


@pytest.fixture(scope="module")
def oracle(tmp_path_factory):
    go = shutil.which("go")
    if go is None or not (GOPATH / "src/golang.org/x/mod/sumdb/note").is_dir() or not ORACLE_SOURCE.is_dir():
        pytest.skip("Go oracle unavailable (go, golang-golang-x-mod-dev, tests/oracle/tlogcheck)")
    out = tmp_path_factory.mktemp("oracle")
    env = dict(os.environ, GO111MODULE="off", GOPATH=str(GOPATH), GOFLAGS="")
    env.setdefault("GOCACHE", str(out / "gocache"))
    binary = out / "tlogcheck"
    subprocess.run([go, "build", "-o", str(binary), "."], cwd=ORACLE_SOURCE, env=env, check=True, timeout=300)
    return binary


def test_export_tlog_proofs_verify_with_go_oracle(exported, oracle):
    _, out, _ = exported
    vkey = (out / "store.vkey").read_text().strip()
    pairs = [(p, p.with_suffix(".tlog-proof")) for p in sorted((out / "events").glob("*.json"))]
    pairs.append((out / "export-event.json", out / "export-event.tlog-proof"))
    for leaf, proof in pairs:
        text = proof.read_text()
        request = {"vkey": vkey, "checkpoint": text.split("\n\n", 1)[1], "leaf": base64.b64encode(leaf.read_bytes()).decode(),
                   "tlog_proof": text}
        result = subprocess.run([str(oracle), "check"], input=json.dumps(request).encode(), capture_output=True, timeout=60)
        assert result.returncode == 0, result.stderr.decode()
        assert "tlog-proof" in json.loads(result.stdout)["checked"]


def test_verify_export_stray_non_numeric_event_file_reported_not_crash(exported):
    _, out, _ = exported
    (out / "events" / "notes.json").write_text("{}")
    faults = verify_export(out)
    assert ("file-unexpected", "events/notes.json") in {(f.kind, f.where) for f in faults}
    assert ("file-unlisted", "events/notes.json") in {(f.kind, f.where) for f in faults}


def test_export_damaged_object_no_plaintext_left_clear_error(store, add_clip, tmp_path):
    from evidence_store.errors import EvidenceError

    clip = add_clip(segments=2, seconds=2.0)
    second = store.segments(clip.clip_id)[1]["sha256"]  # the first segment decrypts, then this fails
    data = bytearray(store.objects.read(second))
    data[-50] ^= 0x01
    tamper_object(store, second, bytes(data))
    out = tmp_path / "court" / "export"
    with pytest.raises(EvidenceError):
        export_clip(store, clip.clip_id, out, reason="prosecutor request", identities=store.identities(PASSPHRASE))
    assert not out.exists()
    assert list((tmp_path / "court").iterdir()) == []  # no work folder, no .ts, no partial package
    # The access itself stays logged: decryption had begun.
    assert [e.get("step") for e in store.events(clip_id=clip.clip_id) if e["kind"] == "export"] == ["begin"]


def test_export_into_existing_empty_folder_replaces_it(store, add_clip, tmp_path):
    clip = add_clip()
    out = tmp_path / "empty"
    out.mkdir()
    export_clip(store, clip.clip_id, out, reason="court", identities=store.identities(PASSPHRASE))
    assert verify_export(out) == []
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_export_mp4_streams_checked_against_the_manifest_sound(exported, tmp_path):
    from evidence_store.export import check_mp4_streams, remux_to_mp4
    from tests.soundcheck import make_source

    _, out, _ = exported  # a picture-only clip: its MP4 must have no sound, and has none
    assert check_mp4_streams(out / "clip.mp4", False) is None
    assert "no AAC stream" in check_mp4_streams(out / "clip.mp4", True)
    with_sound = tmp_path / "with-sound.ts"
    make_source(with_sound, seconds=1.0, marks=(0.5,))
    mp4 = tmp_path / "with-sound.mp4"
    assert remux_to_mp4([with_sound], mp4) == 25
    assert "holds sound" in check_mp4_streams(mp4, False)
    assert check_mp4_streams(mp4, True) is None
