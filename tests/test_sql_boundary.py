"""Where SQL may be written, who may touch a database connection, and that the store's words are
not retyped (issue 11), read with ``ast``.

    SQL statements     only in the index modules (INDEX_MODULES)
    ``.conn``          only in the index modules and the store's facade, which holds the
                       connection for the transaction of a command (STORE_MODULES)
    clip states, hold kinds, justification states: compared and queried through
                       evidence_store.vocabulary, never as string literals

PENDING_SPLIT names the modules that still hold SQL of their own (their statements have not yet
moved into queries.py); the list may only shrink: a new module with SQL, or a listed one that no
longer has any, fails here (so that it is taken off the list).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("device", "dock", "evidence_store")
INDEX_MODULES = {"evidence_store/db.py", "evidence_store/postgres.py", "evidence_store/log.py",
                 "evidence_store/queries.py"}
PENDING_SPLIT: set[str] = set()
STORE_MODULES = INDEX_MODULES | PENDING_SPLIT | {"evidence_store/store/facade.py"}
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


def _words() -> set[str]:
    from evidence_store.vocabulary import ClipState, HoldKind, Justification

    return {m.value for enum in (ClipState, HoldKind, Justification) for m in enum}


def retyped_words(tree: ast.AST, words: set[str]) -> list[int]:
    """Lines that compare with a store word written as a literal, or put one into SQL."""
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            for side in [node.left, *node.comparators]:
                items = side.elts if isinstance(side, (ast.Tuple, ast.List, ast.Set)) else [side]
                if any(isinstance(i, ast.Constant) and i.value in words for i in items):
                    lines.append(node.lineno)
        elif (isinstance(node, ast.Constant) and isinstance(node.value, str) and SQL.match(node.value)
              and any(f"'{w}'" in node.value for w in words)):
            lines.append(node.lineno)
    return sorted(set(lines))


def test_store_words_not_retyped():
    words = _words()
    found = {name: lines for name, tree in sources()
             if name != "evidence_store/vocabulary.py" and (lines := retyped_words(tree, words))}
    assert found == {}


def test_retyped_word_detector_finds_a_comparison():
    words = _words()
    assert retyped_words(ast.parse('ok = state == "expired"'), words) == [1]
    assert retyped_words(ast.parse('ok = state in ("stored", "x")'), words) == [1]
    assert retyped_words(ast.parse('q = "SELECT 1 FROM clips WHERE state = \'held\'"'), words) == [1]
    assert retyped_words(ast.parse('ok = state == ClipState.EXPIRED'), words) == []


def test_sql_detector_finds_a_statement():
    assert sql_lines(ast.parse('x = "SELECT 1 FROM events WHERE idx = ?"')) == [1]
    assert sql_lines(ast.parse('x = "Select the clip"')) == []
