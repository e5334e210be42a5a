"""`make bench`'s runner: a missed goal is reported, not a failure; a benchmark that cannot run is."""

from __future__ import annotations

import types

from tests.benchmarks import __main__ as runner


def _row(name: str, ok: bool) -> dict:
    return {"name": name, "figure": 2.0, "unit": "s", "reference": 1.0, "reference_name": "plain",
            "ratio": 2.0, "goal": "< 1.5 s", "ok": ok}


def _modules(monkeypatch, **modules):
    def import_module(name: str):
        run = modules[name.rpartition(".")[2]]
        return types.SimpleNamespace(run=run)

    monkeypatch.setattr(runner.importlib, "import_module", import_module)


def test_bench_missed_goal_marked_and_exit_zero(monkeypatch, capsys):
    _modules(monkeypatch, bench_a=lambda: [_row("slow thing", False), _row("fast thing", True)])
    assert runner.main(["bench_a"]) == 0
    captured = capsys.readouterr()
    slow = next(line for line in captured.out.splitlines() if "slow thing" in line)
    assert slow.rstrip().endswith("MISSED")
    assert "1 goal(s) missed" in captured.out and captured.err == ""


def test_bench_module_that_cannot_run_exit_one_others_still_reported(monkeypatch, capsys):
    def broken():
        raise RuntimeError("the age tool is not installed")

    _modules(monkeypatch, bench_broken=broken, bench_ok=lambda: [_row("fine thing", True)])
    assert runner.main(["bench_broken", "bench_ok"]) == 1
    captured = capsys.readouterr()
    assert "fine thing" in captured.out
    assert "bench: error: bench_broken could not run: RuntimeError: the age tool is not installed" in captured.err
