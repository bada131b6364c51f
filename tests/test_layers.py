"""Worker processes read no global settings: the engine, the models and a job's work get all they need passed in."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import oldphoto

PACKAGE = Path(oldphoto.__file__).parent
# What a worker process runs: nothing here may reach for `oldphoto.settings`, at import or later.
PASSED_IN = [*sorted((PACKAGE / "engine").rglob("*.py")), *sorted((PACKAGE / "models").rglob("*.py")), PACKAGE / "jobs" / "work.py"]


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at its top or inside a function, absolute or relative."""
    package = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1])
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            module = ".".join(part for part in (base, node.module or "") if part)
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def test_no_engine_model_or_work_module_imports_the_settings() -> None:
    offenders = [str(p.relative_to(PACKAGE)) for p in PASSED_IN if any(m == "oldphoto.settings" or m.startswith("oldphoto.settings.") for m in imported_modules(p))]
    assert offenders == []


def test_a_worker_processs_modules_do_not_load_the_settings() -> None:
    # A fresh interpreter: this one has the settings loaded by other tests.
    code = (
        "import sys, oldphoto.jobs.workers, oldphoto.jobs.work, oldphoto.engine.nodes, oldphoto.models.realesrgan;"
        "print('oldphoto.settings' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert result.stdout.strip() == "False"
