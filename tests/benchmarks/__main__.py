"""Run every ``tests/benchmarks/bench_*.py`` module's ``run()`` and print one table.

Each row is a figure measured in this run next to a reference measured in the same run on the
same machine, so the ratio means more than the figure. Exit status 1 if any goal is missed.
"""

from __future__ import annotations

import importlib
import math
import sys
from pathlib import Path

HEADER = ("benchmark", "figure", "reference", "ratio", "goal", "ok")


def _value(value: float, unit: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    text = f"{value:.3f}" if abs(value) < 100 else f"{value:,.0f}"
    return f"{text} {unit}".strip()


def collect(names: list[str] | None = None) -> list[tuple[str, dict]]:
    here = Path(__file__).resolve().parent
    modules = names or sorted(p.stem for p in here.glob("bench_*.py"))
    rows = []
    for name in modules:
        module = importlib.import_module(f"{__package__ or 'tests.benchmarks'}.{name}")
        for row in module.run():
            rows.append((name, row))
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
    rows = collect(argv or None)
    print(table(rows))
    return 0 if all(r["ok"] for _, r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
