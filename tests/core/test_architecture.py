"""Architecture rules from DESIGN.md that a refactor could silently break."""

import ast
import subprocess
import sys
from pathlib import Path

from tests.support.paths import REPO


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
    offenders = [p.name for p in (REPO / "core").rglob("*.py") if "streamlit" in imported_modules(p)]
    assert offenders == []


def test_core_cli_runs_without_streamlit_loaded():
    # Importing every core module and running the CLI's parser must not pull streamlit in.
    code = (
        "import sys, pkgutil, importlib, core\n"
        "for m in pkgutil.iter_modules(core.__path__):\n"
        "    importlib.import_module('core.' + m.name)\n"
        "assert 'streamlit' not in sys.modules, 'core imported streamlit'\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, env={"HF_HUB_OFFLINE": "1", "PATH": ""})


def test_a_full_fine_tuning_trainer_loads_no_peft_and_no_metrics_libraries_before_it_trains():
    # peft (1.7 s of start-up) is for the peft strategies only; transformers.optimization used to pull it
    # in. scikit-learn, seqeval and scipy (0.6 s) wait for the first evaluation (core.metrics._OnFirstUse).
    code = (
        "import sys\n"
        "from core.recipe import run_training\n"
        "from core.strategies import build_strategy\n"
        "loaded = {m.split('.')[0] for m in sys.modules} & {'peft', 'sklearn', 'seqeval', 'scipy'}\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, env={"HF_HUB_OFFLINE": "1", "PATH": ""})


def test_core_never_imports_scattertext_or_snownlp():
    for p in (REPO / "core").rglob("*.py"):
        assert not {"scattertext", "snownlp"} & imported_modules(p), p.name


# --- no import circles among core's modules ----------------------------------------------------------
# Function-level (lazy) imports count as edges too. They run as surely as top-level ones, only later, so
# a circle through one still means neither module can be read, changed or tested without the other, and
# hoisting that import to the top (a routine tidy-up) turns it into an ImportError at start-up. Both
# circles this test was written for went through lazy imports (loop -> strategies -> peft_strategies ->
# loop for AdaLoRA's plan_steps; adapters <-> models for the adapter marker and restore). Imports under
# ``if TYPE_CHECKING:`` never run and don't count.


def core_module_name(path: Path, top: Path) -> str:
    """``core/loop.py`` -> ``core.loop``; a package's ``core/data/__init__.py`` -> ``core.data`` (``top``: core's parent)."""
    parts = list(path.relative_to(top).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _import_nodes(tree: ast.AST):
    """Every Import/ImportFrom node, at any depth, except those under ``if TYPE_CHECKING:``."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def core_imports(path: Path, modules: set[str], top: Path) -> set[str]:
    """The core modules ``path`` imports (``from core.x import name`` is core.x; ``from core import x`` is core.x)."""
    name = core_module_name(path, top)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def resolve(dotted: str) -> str | None:
        # The longest prefix that is a module of ours: ``core.data.readers.Reader`` -> ``core.data.readers``.
        parts = dotted.split(".")
        for end in range(len(parts), 0, -1):
            candidate = ".".join(parts[:end])
            if candidate in modules:
                return candidate
        return None

    for node in _import_nodes(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            base = node.module or ""
            if node.level:  # relative: from . import x / from .x import y
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            # ``from core import runs`` imports core.runs; ``from core.loop import train`` only core.loop.
            subs = [f"{base}.{alias.name}" for alias in node.names]
            targets = [t if t in modules else base for t in subs]
        for target in targets:
            module = resolve(target)
            if module is not None and module != name:
                found.add(module)
    return found


def import_graph(root: Path) -> dict[str, set[str]]:
    paths = sorted(root.rglob("*.py"))
    modules = {core_module_name(p, root.parent) for p in paths}
    return {core_module_name(p, root.parent): core_imports(p, modules, root.parent) for p in paths}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle as [a, b, ..., a], or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt):], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def test_import_graph_reader_sees_packages_relative_and_lazy_imports(tmp_path):
    pkg = tmp_path / "core"
    (pkg / "data").mkdir(parents=True)
    files = {
        "__init__.py": "",
        "a.py": "from core.data import load\nfrom typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from core import c\n",
        "b.py": "def f():\n    from core import a\n    import core.data.readers\n",
        "c.py": "from core.b import f\n",
        "data/__init__.py": "from .readers import load\n",
        "data/readers.py": "import core.c as c\n",
    }
    for name, text in files.items():
        (pkg / name).write_text(text)
    graph = import_graph(pkg)
    assert graph["core.a"] == {"core.data"}  # the TYPE_CHECKING import doesn't count
    assert graph["core.b"] == {"core.a", "core.data.readers"}  # lazy imports do
    assert graph["core.data"] == {"core.data.readers"}
    assert find_cycle(graph) == ["core.a", "core.data", "core.data.readers", "core.c", "core.b", "core.a"]
    (pkg / "c.py").write_text("")
    assert find_cycle(import_graph(pkg)) is None


def test_core_has_no_import_circles():
    cycle = find_cycle(import_graph(REPO / "core"))
    assert cycle is None, "import circle: " + " -> ".join(cycle)


# --- pages lay out widgets and call core -----------------------------------------------------------------
# What a page must not do itself: import the ML stack, or reach for the primitives that load a model,
# tokenize, build a strategy or train (core.evaluate, core.preflight, core.jobs and core.tokenize's
# summaries are the calls a page makes instead). Both drifted copies that issue #10 removed (a second
# training loop for pre-flight, the Evaluation page's own inference) would fail this.
ML_STACK = {"torch", "transformers", "peft", "accelerate", "datasets", "tokenizers", "safetensors"}
CORE_PRIMITIVES = {"train", "run_training", "build_strategy", "load_model", "encode_split", "Predictor", "predict",
                   "make_loss", "PaddingCollator"}


def page_files() -> list[Path]:
    return [REPO / "streamlit_app.py", *sorted((REPO / "app_pages").glob("*.py"))]


def page_violations(path: Path) -> list[str]:
    """What ``path`` does that a page must leave to core."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in _import_nodes(tree):
        modules = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
        found += [f"imports {m}" for m in modules if m.split(".")[0] in ML_STACK]
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("core"):
            found += [f"imports {node.module}.{a.name}" for a in node.names if a.name in CORE_PRIMITIVES]
    found += [f"calls .{n.func.attr}()" for n in ast.walk(tree)
              if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr in {"from_pretrained", "backward"}]
    return found


def test_pages_load_no_model_and_train_nothing_themselves():
    assert {p.name: v for p in page_files() if (v := page_violations(p))} == {}


def test_the_page_rule_sees_a_page_that_trains(tmp_path):
    page = tmp_path / "bad.py"
    page.write_text("import torch\n\ndef go(m):\n    from core.loop import train\n    m.from_pretrained('x')\n", encoding="utf-8")
    assert sorted(page_violations(page)) == ["calls .from_pretrained()", "imports core.loop.train", "imports torch"]


# Every state-changing action goes through core.actions (the role check, the limits, the audit line):
# a page that called core.jobs or core.uploads directly would skip all three.
GUARDED = {("jobs", "submit"), ("jobs", "cancel"), ("jobs", "resume"), ("jobs", "delete"), ("uploads", "save_upload"),
           ("users", "add"), ("users", "set_role"), ("users", "remove"), ("users", "set_password"),
           ("users", "set_group"), ("users", "end_sessions")}


def unguarded_actions(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = [f"{n.func.value.id}.{n.func.attr}()" for n in ast.walk(tree)
             if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and isinstance(n.func.value, ast.Name)
             and (n.func.value.id, n.func.attr) in GUARDED]
    for node in _import_nodes(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("core."):
            found += [f"imports {node.module}.{a.name}" for a in node.names if (node.module.split(".")[-1], a.name) in GUARDED]
    return found


def test_pages_change_state_only_through_core_actions():
    dashboard = [*page_files(), *sorted((REPO / "ui").glob("*.py"))]
    assert {p.name: v for p in dashboard if (v := unguarded_actions(p))} == {}


def test_the_actions_rule_sees_a_page_that_skips_the_check(tmp_path):
    page = tmp_path / "bad.py"
    page.write_text("from core import jobs\nfrom core.uploads import save_upload\njobs.delete('r', '/x')\n", encoding="utf-8")
    assert sorted(unguarded_actions(page)) == ["imports core.uploads.save_upload", "jobs.delete()"]


def test_scikit_learn_is_loaded_for_a_split_to_make_and_not_when_every_split_is_given(tmp_path):
    # sklearn.model_selection is 0.7 s of a run's start-up; a run given its three files has no split to make.
    for split in ("train", "validation", "test"):
        (tmp_path / f"{split}.csv").write_text("text,label\n" + "".join(f"{split} text {i},{'ab'[i % 2]}\n" for i in range(20)))
    code = (
        "import sys\n"
        "from core.config import DataConfig\n"
        "from core.data.bundle import load_bundle\n"
        f"given = DataConfig(source={str(tmp_path / 'train.csv')!r}, validation_source={str(tmp_path / 'validation.csv')!r},"
        f" test_source={str(tmp_path / 'test.csv')!r})\n"
        "load_bundle(given, 'single_label')\n"
        "assert 'sklearn' not in sys.modules, 'scikit-learn loaded though every split was given'\n"
        f"load_bundle(DataConfig(source={str(tmp_path / 'train.csv')!r}), 'single_label')\n"
        "assert 'sklearn.model_selection' in sys.modules, 'the split was made without scikit-learn?'\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, env={"HF_HUB_OFFLINE": "1", "PATH": ""})
