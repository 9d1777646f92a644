"""Runbooks find faults the way an on-call engineer would: through public APIs, logs and
data. No runbook module or notebook imports the sandbox, and outside the sandbox itself
only the proving side (drills, the sandbox CLI) may touch the fault registry."""

from __future__ import annotations

import ast
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LIB = ROOT / "lib" / "opsbook"
PROVING_SIDE = {"drill.py", "drill_report.py", "cli/drill.py", "cli/sandbox.py"}


def imported_modules(source: str, package: str) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # resolve relative imports against the module's package
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def module_package(path: Path) -> str:
    rel = path.relative_to(LIB.parent).with_suffix("")
    return ".".join(rel.parts[:-1])


def test_runbook_modules_never_import_the_sandbox() -> None:
    offenders = []
    for path in (LIB / "runbooks").glob("*.py"):
        mods = imported_modules(path.read_text(), module_package(path))
        if any(m == "opsbook.sandbox" or m.startswith("opsbook.sandbox.") for m in mods):
            offenders.append(path.name)
    assert not offenders, f"runbook modules import opsbook.sandbox: {offenders}"


def test_notebooks_never_import_the_sandbox() -> None:
    offenders = []
    for path in (ROOT / "notebooks").glob("*.ipynb"):
        nb = json.loads(path.read_text())
        code = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
        if "opsbook.sandbox" in code or "from opsbook import sandbox" in code:
            offenders.append(path.name)
    assert not offenders, f"notebooks import the sandbox: {offenders}"


def test_only_the_proving_side_reads_the_fault_registry() -> None:
    offenders = []
    for path in LIB.rglob("*.py"):
        rel = path.relative_to(LIB).as_posix()
        if rel.startswith("sandbox/") or rel in PROVING_SIDE:
            continue
        mods = imported_modules(path.read_text(), module_package(path))
        if any(m.startswith(("opsbook.sandbox.faults", "opsbook.sandbox.faultctl")) for m in mods):
            offenders.append(rel)
    assert not offenders, f"outside the sandbox and drills, these read the fault table: {offenders}"


def test_the_checker_sees_relative_imports() -> None:
    mods = imported_modules("from ..sandbox import faultctl\n", "opsbook.runbooks")
    assert "opsbook.sandbox.faultctl" in mods
