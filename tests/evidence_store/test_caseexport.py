"""export --case: every clip held under one case reference, one package, index in recording order."""

import json
import shutil
from datetime import UTC, datetime, timedelta

import pytest

from evidence_store.cli import main
from evidence_store.store import Store
from tests.clipfactory import DeviceFixture, make_clip
from tests.evidence_store.conftest import PASSPHRASE, put_and_ingest


@pytest.fixture
def case(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("BODYCAM_SCRYPT_LOG_N", "10")
    pw = tmp_path / "pass"
    pw.write_bytes(PASSPHRASE)
    monkeypatch.setenv("BODYCAM_PASSPHRASE_FILE", str(pw))
    root = tmp_path / "store"
    assert main(["--store", str(root), "init"]) == 0
    store = Store.open(root)
    now = datetime.now(UTC)
    clips = {}
    # Two officers' cameras at one incident, ingested out of recording order; one unrelated clip.
    for name, device, minutes in [("late", "cam-08", 50), ("early", "cam-07", 58), ("other", "cam-07", 30)]:
        cam = DeviceFixture.new(device)
        if store.device(device) is None:
            store.enroll(cam.device_id, cam.public_key)
        else:
            cam = clips["early"][1]
        clip = make_clip(tmp_path / "outbox", cam, store.recipients, started_at=now - timedelta(minutes=minutes))
        put_and_ingest(store, clip)
        clips[name] = (clip, cam)
    store.close()
    for name, ref in [("late", "StA-1"), ("early", "StA-1"), ("other", "StA-2")]:
        assert main(["--store", str(root), "hold", clips[name][0].clip_id, "--case", ref, "--reason", "evidence"]) == 0
    capsys.readouterr()
    return root, {k: v[0] for k, v in clips.items()}, tmp_path


def test_case_export_all_held_clips_in_recording_order_verifies(case, capsys):
    root, clips, tmp = case
    out = tmp / "case"
    assert main(["--store", str(root), "export", "--case", "StA-1", "--out", str(out), "--reason", "prosecutor"]) == 0
    index = json.loads((out / "index.json").read_text())
    assert [e["clip"] for e in index["clips"]] == [clips["early"].clip_id, clips["late"].clip_id]
    assert index["case"] == "StA-1"
    capsys.readouterr()
    assert main(["verify-export", str(out)]) == 0
    assert "ok:" in capsys.readouterr().out
    store = Store.open(root)
    try:
        for name in ("early", "late"):
            steps = [e.get("step") for e in store.events(clip_id=clips[name].clip_id) if e["kind"] == "export"]
            assert steps == ["begin", "sealed"]
        assert not [e for e in store.events(clip_id=clips["other"].clip_id) if e["kind"] == "export"]
    finally:
        store.close()


def test_case_export_missing_or_reordered_clip_found(case, capsys):
    root, clips, tmp = case
    out = tmp / "case"
    assert main(["--store", str(root), "export", "--case", "StA-1", "--out", str(out), "--reason", "prosecutor"]) == 0
    broken = tmp / "broken"
    shutil.copytree(out, broken)
    shutil.rmtree(next((broken / "clips").iterdir()))
    capsys.readouterr()
    assert main(["verify-export", str(broken)]) == 3
    assert "folder-missing" in capsys.readouterr().out
    index = json.loads((out / "index.json").read_text())
    index["clips"].reverse()
    (out / "index.json").write_text(json.dumps(index))
    assert main(["verify-export", str(out)]) == 3
    report = capsys.readouterr().out
    assert "index.json" in report and "recording order" in report


def test_case_export_unknown_case_one_line_nothing_logged(case, capsys):
    root, clips, tmp = case
    code = main(["--store", str(root), "export", "--case", "StA-404", "--out", str(tmp / "x"), "--reason", "p"])
    assert code == 2 and "no clip is held under case" in capsys.readouterr().err
    assert not (tmp / "x").exists()


@pytest.mark.parametrize("forge", ["absolute", "deep", "garbage"])
def test_case_export_forged_index_is_a_fault_never_read_outside(case, capsys, forge):
    root, clips, tmp = case
    out = tmp / "case"
    assert main(["--store", str(root), "export", "--case", "StA-1", "--out", str(out), "--reason", "prosecutor"]) == 0
    index_path = out / "index.json"
    if forge == "garbage":
        index_path.write_bytes(b"[" * 200000)
    else:
        index = json.loads(index_path.read_text())
        index["clips"][0]["folder"] = str(tmp) if forge == "absolute" else "clips/../../x"
        index_path.write_text(json.dumps(index))
    capsys.readouterr()
    assert main(["verify-export", str(out)]) == 3
    got = capsys.readouterr()
    assert "index.json" in got.out and "Traceback" not in got.err
