"""The dependency rule of docs/ARCHITECTURE.md, read from every module's imports with ``ast``.

    evidence_store   imports nothing of ours outside evidence_store
    dock             may import evidence_store (and dock)
    device           may import only evidence_store.clip(.*) (and device)
    nobody           imports dock, except dock
    evidence_store.clip  imports only the standard library, cryptography, evidence_store.clip
                         and evidence_store.errors: the camera runs it
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("device", "dock", "evidence_store")
OURS = PACKAGES + ("tests",)
CLIP = "evidence_store.clip"
CLIP_THIRD_PARTY = {"cryptography"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(source: str, module: str, is_package: bool) -> list[tuple[int, str]]:
    """(line, imported module) for every import in ``source``, relative ones resolved.
    ``from a.b import c`` counts as a.b.c when that is one of our modules, else as a.b."""
    package = module if is_package else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                candidate = f"{target}.{alias.name}"
                found.append((node.lineno, candidate if _is_ours_module(candidate) else target))
    return found


def _is_ours_module(name: str) -> bool:
    path = ROOT.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def violation(importer: str, imported: str) -> str | None:
    """Why ``importer`` must not import ``imported``, or None when the arrow is allowed."""
    top = imported.split(".")[0]
    if _within(imported, "dock") and not _within(importer, "dock"):
        return "nothing imports dock"
    if _within(importer, CLIP):
        if top in OURS:
            if not (_within(imported, CLIP) or imported == "evidence_store.errors" or imported == "evidence_store"):
                return "evidence_store.clip imports only itself and evidence_store.errors"
        elif top not in sys.stdlib_module_names and top not in CLIP_THIRD_PARTY:
            return f"evidence_store.clip is pure (stdlib + cryptography), not {top}"
        return None
    if _within(importer, "evidence_store") and top in OURS and top != "evidence_store":
        return "evidence_store depends on nothing of ours"
    if (_within(importer, "device") and top in OURS and top != "device"
            and not (_within(imported, CLIP) or imported == "evidence_store")):
        return "device imports only evidence_store.clip"
    if _within(importer, "dock") and top in OURS and top not in ("dock", "evidence_store"):
        return "dock imports only evidence_store"
    return None


def all_modules() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py") if "__pycache__" not in p.parts)


def test_layering_every_module_imports_follow_the_rule():
    problems = []
    modules = all_modules()
    assert any(module_name(p) == "evidence_store.clip.age" for p in modules)
    for path in modules:
        name = module_name(path)
        for line, imported in imports_of(path.read_text(), name, path.name == "__init__.py"):
            why = violation(name, imported)
            if why:
                problems.append(f"{path.relative_to(ROOT)}:{line}: imports {imported}: {why}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    "importer, source, is_package, expected",
    [
        ("evidence_store.clip.age", "import sqlite3", False, None),
        ("evidence_store.clip.age", "import av", False, "pure"),
        ("evidence_store.clip.age", "from evidence_store import merkle", False, "only itself"),
        ("evidence_store.clip.age", "from .. import errors", False, None),
        ("evidence_store.clip.age", "from . import journal", False, None),
        ("evidence_store.merkle", "from dock import ingest", False, "nothing imports dock"),
        ("evidence_store.merkle", "import device.controller", False, "nothing of ours"),
        ("device.controller", "from evidence_store.clip import age", False, None),
        ("device.controller", "from evidence_store import merkle", False, "only evidence_store.clip"),
        ("device.controller", "from evidence_store.errors import EvidenceError", False, "only evidence_store.clip"),
        ("evidence_store.clip", "from . import age", True, None),
        ("dock.cli", "from evidence_store import merkle", False, None),
        ("dock.cli", "import device", False, "dock imports only evidence_store"),
    ],
)
def test_layering_checker_catches_wrong_way_arrows(importer, source, is_package, expected):
    found = [violation(importer, imported) for _, imported in imports_of(source, importer, is_package)]
    if expected is None:
        assert found == [None]
    else:
        assert any(why and expected in why for why in found), found


def test_layering_camera_imports_load_no_sqlite_or_av():
    code = (
        "import sys\n"
        "import evidence_store\n"
        "assert not {'sqlite3', '_sqlite3', 'av'} & set(sys.modules), 'evidence_store'\n"
        "import evidence_store.clip.age, evidence_store.clip.outbox, evidence_store.clip.manifest, evidence_store.clip.journal\n"
        "heavy = {'sqlite3', '_sqlite3', 'av', 'numpy'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_layering_camera_never_loads_redaction_or_its_opencv():
    """Redaction (OpenCV's DNN, the detector's weights) runs on the store's machine: the camera's
    modules import none of it, and neither the clip format nor the CLI's start loads cv2."""
    for path in sorted((ROOT / "device").rglob("*.py")):
        source = path.read_text()
        for line, name in imports_of(source, module_name(path), path.name == "__init__.py"):
            assert not _within(name, "evidence_store.redact") and not _within(name, "evidence_store.release"), \
                f"{path}:{line} imports {name}"
    code = (
        "import sys\n"
        "import evidence_store, evidence_store.clip.age, evidence_store.clip.manifest, evidence_store.cli\n"
        "assert 'cv2' not in sys.modules, 'cv2 loaded'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
