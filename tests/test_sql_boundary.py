"""Where SQL may be written and who may touch a database connection (issue 11), read with ``ast``.

    SQL statements     only in the index modules (INDEX_MODULES)
    ``.conn``          only inside the store's own modules (STORE_MODULES)

PENDING_SPLIT names the modules that still hold SQL of their own until the store's split into a
package is finished; the list may only shrink: a new module with SQL, or a listed one that no
longer has any, fails here (so that it is taken off the list).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("device", "dock", "evidence_store")
INDEX_MODULES = {"evidence_store/db.py", "evidence_store/postgres.py", "evidence_store/log.py"}
PENDING_SPLIT = {"evidence_store/store.py", "evidence_store/verify.py", "evidence_store/report.py",
                 "evidence_store/deletion.py"}
STORE_MODULES = INDEX_MODULES | PENDING_SPLIT | {"evidence_store/index.py"}
SQL = re.compile(r"^\s*(SELECT|INSERT|UPDATE|DELETE|CREATE|DROP|ALTER|PRAGMA|BEGIN|COMMIT|ROLLBACK|WITH)\s")


def sources():
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            yield path.relative_to(ROOT).as_posix(), ast.parse(path.read_text(), str(path))


def sql_lines(tree: ast.AST) -> list[int]:
    return [node.lineno for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and SQL.match(node.value)]


def test_sql_only_in_index_modules():
    found = {name: lines for name, tree in sources() if (lines := sql_lines(tree))}
    outside = {name: lines for name, lines in found.items() if name not in INDEX_MODULES | PENDING_SPLIT}
    assert outside == {}, f"SQL outside the index modules: {outside}"
    done = PENDING_SPLIT - set(found)
    assert not done, f"no SQL left in {sorted(done)}: take them off PENDING_SPLIT"


def test_connection_only_inside_the_store():
    outside = {name: [node.lineno for node in ast.walk(tree) if isinstance(node, ast.Attribute) and node.attr == "conn"]
               for name, tree in sources() if name not in STORE_MODULES}
    assert {name: lines for name, lines in outside.items() if lines} == {}


def test_sql_detector_finds_a_statement():
    assert sql_lines(ast.parse('x = "SELECT 1 FROM events WHERE idx = ?"')) == [1]
    assert sql_lines(ast.parse('x = "Select the clip"')) == []
