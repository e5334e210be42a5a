"""Run every ``tests/benchmarks/bench_*.py`` module's ``run()`` and print one table.

Each row is a figure measured in this run next to a reference measured in the same run on the
same machine, so the ratio means more than the figure. A missed goal is a finding, not a
failure: it is marked MISSED in the table and the exit status stays 0. Exit status 1 only when a
benchmark could not run (it raised); its error is printed and the others still run.
"""

from __future__ import annotations

import importlib
import math
import sys
import traceback
from pathlib import Path

HEADER = ("benchmark", "figure", "reference", "ratio", "goal", "ok")


def _value(value: float, unit: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    text = f"{value:.3f}" if abs(value) < 100 else f"{value:,.0f}"
    return f"{text} {unit}".strip()


def collect(names: list[str] | None = None,
            failed: list[tuple[str, str]] | None = None) -> list[tuple[str, dict]]:
    """Rows of every module that ran; a module that raised is recorded in ``failed`` (name, error)
    and the rest still run, so one broken benchmark does not hide the others' figures."""
    here = Path(__file__).resolve().parent
    modules = names or sorted(p.stem for p in here.glob("bench_*.py"))
    rows = []
    for name in modules:
        try:
            module = importlib.import_module(f"{__package__ or 'tests.benchmarks'}.{name}")
            module_rows = list(module.run())
        except Exception as exc:  # noqa: BLE001 - any failure means "could not run", reported below
            if failed is None:
                raise
            traceback.print_exc(file=sys.stderr)
            failed.append((name, f"{type(exc).__name__}: {exc}"))
            continue
        rows.extend((name, row) for row in module_rows)
    return rows


def table(rows: list[tuple[str, dict]]) -> str:
    lines = [HEADER]
    for module, r in rows:
        reference = _value(r["reference"], r["unit"])
        if r.get("reference_name"):
            reference = f"{reference} ({r['reference_name']})"
        lines.append((f"{module}: {r['name']}", _value(r["figure"], r["unit"]), reference,
                      f"{r['ratio']:.2f}x", str(r["goal"]), "ok" if r["ok"] else "MISSED"))
    widths = [max(len(line[i]) for line in lines) for i in range(len(HEADER))]
    out = [" | ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip() for line in lines]
    out.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    failed: list[tuple[str, str]] = []
    rows = collect(argv or None, failed)
    print(table(rows))
    missed = sum(1 for _, r in rows if not r["ok"])
    if missed:
        print(f"{missed} goal(s) missed (marked MISSED above); every benchmark ran.")
    for name, error in failed:
        print(f"bench: error: {name} could not run: {error}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
