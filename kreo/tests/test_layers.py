"""The apps on top (monitoring, status, compliance) stay on top.

They read the apps below only through those apps' selectors or health
checks and write only through ``kreo`` and ``audit``; no app below imports
them. A shortcut into another app's models or services fails here, before
it becomes a dependency nobody meant.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BELOW = ("kreo", "accounts", "projects", "audit", "backups", "privacy")
ON_TOP = ("monitoring", "status", "compliance")
# What an app on top may import from an app below, besides kreo and audit.
READ_ONLY = ("selectors", "health")
# Writes an app on top makes through another app on top, each asked for by an
# issue: compliance raises a control that went from pass to fail as a
# monitoring alert (#19), so it is mailed and handled like every alert.
ON_TOP_WRITES = {"compliance": ("monitoring.services", "monitoring.rules")}


def _imports(path: Path):
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module
            for alias in node.names:
                yield node.lineno, f"{node.module}.{alias.name}"


def _sources(app: str):
    return sorted(p for p in (ROOT / app).rglob("*.py") if "tests" not in p.parts)


@pytest.mark.parametrize("app", BELOW)
def test_no_app_below_imports_an_app_on_top(app):
    """No module of an app below names monitoring, status or compliance."""
    found = [
        f"{path.relative_to(ROOT)}:{line} imports {name}"
        for path in _sources(app)
        for line, name in _imports(path)
        if name.split(".")[0] in ON_TOP
    ]
    assert found == []


@pytest.mark.parametrize("app", ON_TOP)
def test_an_app_on_top_reads_others_only_through_selectors(app):
    """Apps on top import other apps' selectors or health checks only."""
    found = []
    for path in _sources(app):
        for line, name in _imports(path):
            parts = name.split(".")
            top = parts[0]
            if top in ("kreo", "audit", app) or top not in BELOW + ON_TOP:
                continue
            if top in ON_TOP and len(parts) > 1 and parts[1] in READ_ONLY:
                continue
            if ".".join(parts[:2]) in ON_TOP_WRITES.get(app, ()):
                continue
            if top in BELOW and len(parts) > 1 and parts[1] in READ_ONLY:
                continue
            if len(parts) == 1:
                # "from projects import selectors" yields both "projects" and
                # "projects.selectors"; the second one is judged.
                continue
            found.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    assert found == []


def test_the_check_sees_a_forbidden_import(tmp_path):
    """A module that imports another app's services is reported."""
    module = tmp_path / "bad.py"
    module.write_text("from projects.services import project_create\n")
    names = [name for _, name in _imports(module)]
    assert "projects.services" in names
