"""Architecture rules from DESIGN.md that a refactor could silently break."""

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_core_never_imports_streamlit_statically():
    offenders = [p.name for p in (ROOT / "core").rglob("*.py") if "streamlit" in imported_modules(p)]
    assert offenders == []


def test_core_cli_runs_without_streamlit_loaded():
    # Importing every core module and running the CLI's parser must not pull streamlit in.
    code = (
        "import sys, pkgutil, importlib, core\n"
        "for m in pkgutil.iter_modules(core.__path__):\n"
        "    importlib.import_module('core.' + m.name)\n"
        "assert 'streamlit' not in sys.modules, 'core imported streamlit'\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, env={"HF_HUB_OFFLINE": "1", "PATH": ""})


def test_core_never_imports_scattertext_or_snownlp():
    for p in (ROOT / "core").rglob("*.py"):
        assert not {"scattertext", "snownlp"} & imported_modules(p), p.name
