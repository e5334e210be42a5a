"""Redaction through the command line, on clips with real faces (scikit-image's astronaut) moving
and turning, real H.264 + AAC segments inside real signed clips (tests/evidence_store/facematerial.py).

Expensive parts (each redaction decodes, detects and encodes 100 frames) run once per module and
backend. The tests about the index (what is logged, the package's proofs from the log, refusals that
log nothing) run on both backends; those about the video and the offline package run on SQLite only
(``video_only``): the index plays no part in them, and a second detector run costs 10-20 s.
"""

import hashlib
import json
import subprocess
from datetime import UTC, datetime, timedelta

import av
import numpy as np
import pytest

from evidence_store.cli import main
from evidence_store.redact.detector import FaceDetector
from evidence_store.store import Store
from tests.clipfactory import DeviceFixture
from tests.evidence_store import facematerial as fm
from tests.evidence_store.conftest import PASSPHRASE, put_and_ingest

MUTE = (1.5, 2.5)
PLATE = [40, 250, 200, 330]  # an area without faces, covered by the edits ("number plate")
BLUR = (3.2, 3.6)
KEEP_B = [440, 200, 640, 360]  # face B's corner: the requester's own face


def video_only(function):
    """Mark a test about the video, the sound or the offline package, not the index: it runs
    with the local backend only (see the module's docstring)."""
    function.backends = ("sqlite",)
    return function


@pytest.fixture(scope="module", autouse=True)
def _cli_environment(tmp_path_factory):
    """What the CLI reads from the environment, for the whole module (set up before any test's
    own fixtures, so that undoing it restores the session's values)."""
    mp = pytest.MonkeyPatch()
    pw = tmp_path_factory.mktemp("redact-pass") / "pass"
    pw.write_bytes(PASSPHRASE)
    mp.setenv("BODYCAM_SCRYPT_LOG_N", "10")
    mp.delenv("BODYCAM_STORE", raising=False)
    mp.setenv("BODYCAM_PASSPHRASE_FILE", str(pw))
    yield
    mp.undo()


@pytest.fixture(scope="module")
def _worlds():
    """The world of each backend, built on first use (the backend parameter is per test)."""
    return {}


@pytest.fixture
def world(backend, _worlds, tmp_path_factory):
    if backend not in _worlds:
        _worlds[backend] = _make_world(tmp_path_factory.mktemp(f"redact-{backend}"))
    return _worlds[backend]


def _make_world(tmp):
    """A store (on the test's backend: conftest's ``backend`` gives ``init`` its database) with a
    face clip with sound, one without sound and one with sound only."""
    root = tmp / "store"
    assert main(["--store", str(root), "init"]) == 0
    store = Store.open(root)
    cam = DeviceFixture.new("cam-07")
    store.enroll(cam.device_id, cam.public_key)
    started = datetime.now(UTC) - timedelta(hours=1)
    clip = fm.make_face_clip(tmp / "outbox", cam, store.recipients, started_at=started)
    put_and_ingest(store, clip)
    silent = fm.make_face_clip(tmp / "outbox", cam, store.recipients, started_at=started + timedelta(minutes=5),
                               seconds=2.0, audio=False)
    put_and_ingest(store, silent)
    blind = fm.make_face_clip(tmp / "outbox", cam, store.recipients, started_at=started + timedelta(minutes=9),
                              seconds=2.0, sound_only=True)
    put_and_ingest(store, blind)
    store.close()
    edits = tmp / "edits.json"
    edits.write_text(json.dumps({"format": "bodycam-edits/v1",
                                 "boxes": [{"from": 0.0, "to": 4.0, "box": PLATE, "label": "number plate"}],
                                 "keep_faces": [{"from": 0.0, "to": 4.0, "box": KEEP_B}],
                                 "blur": [{"from": BLUR[0], "to": BLUR[1]}],
                                 "mute": [{"from": MUTE[0], "to": MUTE[1]}]}))
    plain = b"".join(clip.plaintext[s.name] for s in clip.manifest.segments)
    return {"root": root, "tmp": tmp, "clip": clip, "silent": silent, "blind": blind, "edits": edits, "plain": plain,
            "once": {}}


def once(world, name, make):
    """``make()``, run once per world (a redaction, the source's frames)."""
    if name not in world["once"]:
        world["once"][name] = make()
    return world["once"][name]


def redact(world, name, *extra):
    out = world["tmp"] / name
    code = main(["--store", str(world["root"]), "redact", world["clip"].clip_id, "--reason", "subject's request",
                 "--out", str(out), *extra])
    return code, out


def _ok(result):
    code, out = result
    assert code == 0
    return out


@pytest.fixture
def plain_run(world):
    return once(world, "plain", lambda: _ok(redact(world, "plain")))


@pytest.fixture
def edited_run(world):
    return once(world, "edited", lambda: _ok(redact(world, "edited", "--edits", str(world["edits"]))))


def frames_of(path, fmt="mpegts"):
    with av.open(str(path), format=fmt) if fmt else av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(c.streams.video[0])]


@pytest.fixture
def source_frames(world):
    def decode():
        path = world["tmp"] / "src.ts"
        path.write_bytes(world["plain"])
        return frames_of(path)

    return once(world, "source_frames", decode)


def detail(img, box):
    """High-frequency energy of a region (variance of the Laplacian of its grey levels)."""
    import cv2

    x1, y1, x2, y2 = box
    grey = cv2.cvtColor(np.ascontiguousarray(img[y1:y2, x1:x2]), cv2.COLOR_RGB2GRAY)
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


def inner(box, share=0.15):
    x1, y1, x2, y2 = box
    dx, dy = int((x2 - x1) * share), int((y2 - y1) * share)
    return x1 + dx, y1 + dy, x2 - dx, y2 - dy


def test_redact_package_verifies_and_has_h264_and_aac(plain_run, capsys):
    capsys.readouterr()
    assert main(["verify-export", str(plain_run)]) == 0
    assert "ok:" in capsys.readouterr().out
    names = {p.name for p in plain_run.iterdir()}
    assert {"redacted.mp4", "review-sheet.png", "redaction.json", "SHA256SUMS", "SHA256SUMS.note", "manifest",
            "redact-event.json", "redact-event.tlog-proof", "checkpoint", "store.vkey"} <= names
    probe = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "stream=codec_name", "-of", "csv=p=0",
                            str(plain_run / "redacted.mp4")], capture_output=True, text=True, check=True)
    assert probe.stdout.split() == ["h264", "aac"]


@video_only
def test_redact_every_face_covered_in_every_frame(plain_run, source_frames):
    out = frames_of(plain_run / "redacted.mp4", None)
    assert len(out) == len(source_frames) == 100
    faced = 0
    for n, (src, dst) in enumerate(zip(source_frames, out)):
        for box in fm.face_regions(n):
            faced += 1
            before, after = detail(src, box), detail(dst, box)
            assert after < 0.05 * before, f"frame {n}: face at {box} not covered ({before:.0f} -> {after:.1f})"
    assert faced > 100


@video_only
def test_redact_detector_finds_no_face_in_result(plain_run, source_frames):
    out = frames_of(plain_run / "redacted.mp4", None)
    detector = FaceDetector(fm.WIDTH, fm.HEIGHT)
    import cv2

    found_before = found_after = 0
    for n in range(fm.FACE_A_FROM, len(out), 3):
        for frames, counter in ((source_frames, "before"), (out, "after")):
            small = cv2.resize(frames[n], detector.size, interpolation=cv2.INTER_AREA)
            hits = detector.detect_rgb(small)
            if counter == "before":
                found_before += bool(hits)
            else:
                found_after += len(hits)
                assert not hits, f"frame {n}: the detector still finds {hits}"
    assert found_before > 20  # the material does have detectable faces


@video_only
def test_redact_frames_without_faces_essentially_unchanged(plain_run, source_frames):
    out = frames_of(plain_run / "redacted.mp4", None)
    for n in range(0, fm.FACE_A_FROM - 3):
        diff = np.abs(out[n].astype(int) - source_frames[n].astype(int)).mean()
        assert diff < 3.0, f"frame {n} changed by {diff:.1f} on average"


@video_only
def test_redact_record_names_source_detector_params_output(world, plain_run):
    record = json.loads((plain_run / "redaction.json").read_text())
    clip = world["clip"]
    assert [s["plaintext_sha256"] for s in record["source"]["segments"]] == \
        [s.plaintext_sha256 for s in clip.manifest.segments]
    from evidence_store.redact.detector import weights_path

    assert record["detector"]["weights_sha256"] == hashlib.sha256(weights_path().read_bytes()).hexdigest()
    assert record["parameters"]["stride"] >= 1 and record["edits"] is None
    assert record["output"]["sha256"] == hashlib.sha256((plain_run / "redacted.mp4").read_bytes()).hexdigest()
    assert record["video"]["frames"] == 100 and record["video"]["audio"] is True


def test_redact_events_begin_before_sealed_with_salted_reason(world, plain_run):
    store = Store.open(world["root"])
    try:
        events = [e for e in store.events(clip_id=world["clip"].clip_id) if e["kind"] == "redact"]
        leaf = store.log.leaf(events[0]["index"])
    finally:
        store.close()
    assert [e["step"] for e in events[:2]] == ["begin", "sealed"]
    assert events[0]["reason"] == "subject's request"
    assert b"subject's request" not in leaf and json.loads(leaf)["reason"] != "subject's request"
    sealed = json.loads((plain_run / "redact-event.json").read_bytes())
    assert sealed["files"] == hashlib.sha256((plain_run / "SHA256SUMS.note").read_bytes()).hexdigest()


@video_only
def test_redact_sound_kept_and_muted_where_edits_say(edited_run):
    with av.open(str(edited_run / "redacted.mp4")) as c:
        chunks = [(float(f.pts * f.time_base), f.to_ndarray()[0]) for f in c.decode(c.streams.audio[0])]
    rate = 48000
    t0 = chunks[0][0]
    samples = np.concatenate([a for _, a in chunks])

    def rms(a, b):
        lo, hi = int((a - t0) * rate), int((b - t0) * rate)
        return float(np.sqrt(np.mean(samples[lo:hi] ** 2)))

    assert rms(MUTE[0] + 0.1, MUTE[1] - 0.1) < 0.01
    loud = fm.AMPLITUDE / np.sqrt(2)
    assert rms(0.3, MUTE[0] - 0.1) > 0.7 * loud
    assert rms(MUTE[1] + 0.1, 3.8) > 0.7 * loud


@video_only
def test_redact_edits_box_covered_kept_face_visible_whole_frame_blurred(edited_run, source_frames):
    out = frames_of(edited_run / "redacted.mp4", None)
    plate = tuple(PLATE)
    for n in (5, 40, 70):  # the scene there has only the checkerboard's edges: they are gone
        assert detail(source_frames[n], plate) > 10 > 5 * detail(out[n], plate)
    # face B is the requester's own: visible (its detail kept) while face A is covered
    n = 75
    b = fm.face_regions(n)[-1]
    assert detail(out[n], b) > 0.5 * detail(source_frames[n], b)
    a = fm.face_regions(n)[0]
    assert detail(out[n], a) < 0.05 * detail(source_frames[n], a)
    whole = (0, 0, fm.WIDTH, fm.HEIGHT)
    n = int(3.4 * fm.FPS)
    assert detail(out[n], whole) < 0.05 * detail(source_frames[n], whole)
    record = json.loads((edited_run / "redaction.json").read_text())
    assert record["edits"]["sha256"] == hashlib.sha256((edited_run / "edits.json").read_bytes()).hexdigest()
    assert len(record["faces"]["kept_tracks"]) == 1


@video_only
def test_redact_rerun_gives_identical_bytes(world, edited_run):
    code, again = redact(world, "edited-again", "--edits", str(world["edits"]))
    assert code == 0
    for name in ("redacted.mp4", "review-sheet.png"):
        assert (again / name).read_bytes() == (edited_run / name).read_bytes(), name
    first, second = (json.loads((p / "redaction.json").read_text()) for p in (edited_run, again))
    first.pop("event"), second.pop("event")
    assert first == second


@video_only
def test_redact_altered_video_found_by_verify_export(world, plain_run, tmp_path, capsys):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(plain_run, copy)
    data = bytearray((copy / "redacted.mp4").read_bytes())
    data[len(data) // 2] ^= 1
    (copy / "redacted.mp4").write_bytes(bytes(data))
    capsys.readouterr()
    assert main(["verify-export", str(copy)]) == 3
    assert "redacted.mp4" in capsys.readouterr().out


@video_only
@pytest.mark.parametrize("record", [
    b'{"format": "bodycam-redaction/v1", "output": [], "source": {"segments": []}}',
    b'{"format": "bodycam-redaction/v1", "output": {}, "edits": "x", "source": {"segments": [1]}}',
    b"[" * 100000 + b"]" * 100000,
    b"\xff\xfe not json",
])
def test_redact_forged_record_is_a_fault_not_a_traceback(plain_run, tmp_path, capsys, record):
    # A package made by someone else (with their own key) is still checked, fault by fault.
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(plain_run, copy)
    real = json.loads((copy / "redaction.json").read_bytes())
    if record.startswith(b'{"format"'):
        record = record.replace(b"bodycam-redaction/v1", real["format"].encode())
    (copy / "redaction.json").write_bytes(record)
    capsys.readouterr()
    assert main(["verify-export", str(copy)]) == 3
    got = capsys.readouterr()
    assert "redaction.json" in got.out and "Traceback" not in got.err


@video_only
def test_redact_clip_without_sound_gives_video_only(world, capsys):
    out = world["tmp"] / "silent"
    assert main(["--store", str(world["root"]), "redact", world["silent"].clip_id, "--reason", "press",
                 "--out", str(out), "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines[-1]["result"]["frames"] == 50
    assert any(line.get("phase") == "encode" for line in lines[:-1])
    with av.open(str(out / "redacted.mp4")) as c:
        assert len(c.streams.video) == 1 and not c.streams.audio


def _redact_events(world):
    store = Store.open(world["root"])
    try:
        return [e for e in store.events() if e["kind"] == "redact"]
    finally:
        store.close()


@pytest.mark.parametrize("edits_text, words", [
    ("{not json", "not JSON"),
    ('{"format": "bodycam-edits/v1", "mute": [{"from": 3.0, "to": 9.0}]}', "outside the clip"),
    ('{"format": "bodycam-edits/v1", "boxes": [{"from": 0, "to": 1, "box": [5, 5, 1, 1]}]}', "x1 < x2"),
    ('{"format": "bodycam-edits/v1", "hide": []}', "unknown member"),
])
def test_redact_bad_edits_one_line_no_package_nothing_logged(world, capsys, edits_text, words):
    bad = world["tmp"] / "bad-edits.json"
    bad.write_text(edits_text)
    before = len(_redact_events(world))
    capsys.readouterr()
    code, out = redact(world, "bad", "--edits", str(bad))
    err = capsys.readouterr().err
    assert code == 2 and words in err and err.count("\n") <= 2 and "Traceback" not in err
    assert not out.exists() and len(_redact_events(world)) == before


def test_redact_unknown_clip_one_line_nothing_logged(world, capsys):
    before = len(_redact_events(world))
    capsys.readouterr()
    code = main(["--store", str(world["root"]), "redact", "no-such-clip", "--reason", "x",
                 "--out", str(world["tmp"] / "none")])
    assert code == 2 and "unknown clip" in capsys.readouterr().err
    assert len(_redact_events(world)) == before and not (world["tmp"] / "none").exists()


def test_redact_clip_without_video_one_line_no_package_logged_as_failed(world, capsys):
    capsys.readouterr()
    out = world["tmp"] / "blind"
    code = main(["--store", str(world["root"]), "redact", world["blind"].clip_id, "--reason", "x", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 1 and "no video" in err and err.count("\n") == 1
    assert not out.exists() and not list(world["tmp"].glob(".blind*"))
    steps = [e["step"] for e in _redact_events(world) if e["clip"] == world["blind"].clip_id]
    assert steps == ["begin", "failed"]  # the access is logged; nothing is logged as released


@video_only
def test_redact_replay_of_record_gives_identical_bytes_without_detector(world, edited_run):
    code, again = redact(world, "replayed", "--edits", str(edited_run / "edits.json"),
                         "--record", str(edited_run / "redaction.json"))
    assert code == 0
    assert (again / "redacted.mp4").read_bytes() == (edited_run / "redacted.mp4").read_bytes()
    assert json.loads((again / "redaction.json").read_text())["replayed"] is True


def test_redact_replay_with_other_edits_refused_nothing_logged(world, plain_run, capsys):
    before = len(_redact_events(world))
    capsys.readouterr()
    code, out = redact(world, "replay-bad", "--edits", str(world["edits"]), "--record", str(plain_run / "redaction.json"))
    assert code == 2 and "edits" in capsys.readouterr().err
    assert not out.exists() and len(_redact_events(world)) == before
