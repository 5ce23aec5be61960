"""Shared fixtures. Tests never reach the Hugging Face hub; the bundled MiniLM is the real model."""

from __future__ import annotations

import importlib.util
import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

# Under pytest-xdist each worker gets its share of the cores, and so does every process it starts
# (trainers, pre-flights, Streamlit servers inherit OMP_NUM_THREADS): two workers' trainers with two
# spinning OpenMP threads each on a 2-core machine ran ten times slower.
_workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
THREADS = max(1, min(2, (os.cpu_count() or 1) // _workers))
os.environ["OMP_NUM_THREADS"] = str(THREADS)
torch.set_num_threads(THREADS)


@pytest.fixture
def runs_root(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "runs"
    monkeypatch.setenv("TUNEBOARD_HOME", str(root))
    return root


@pytest.fixture(scope="session")
def tokenizer():
    from core.config import ModelConfig
    from core.models import load_tokenizer

    return load_tokenizer(ModelConfig())


# Under pytest-xdist (`make test` runs two workers): a file's tests share its module fixtures, so a file
# goes to one worker as a unit; the browser tests go as two units, each a walk and its share of the
# rest, each unit with its own Streamlit server; the strategy and job tests, independent and long,
# spread one by one. Units are handed out in collection order (the long browser units first), not
# xdist's default of the most tests first. (pytest 9 computes node ids itself, so xdist's own
# `--dist loadgroup` can no longer regroup tests: this scheduler does.)
_SPREAD = {"test_strategies.py", "test_jobs.py"}


def _unit(nodeid: str) -> str:
    path = nodeid.split("::", 1)[0]
    if path.startswith("tests/browser/"):
        second = "[1600]" in nodeid or path.endswith("test_newcomer.py") or "test_a_conll_file" in nodeid
        return "tests/browser (b)" if second else "tests/browser (a)"
    return nodeid if path.rsplit("/", 1)[-1] in _SPREAD else path


# The longest units first, the short ones after them to fill the gaps (longest processing time first): in
# collection order a long unit handed out last kept one worker busy ~40 s after the other had finished.
# Seconds of one worker, measured in `make test` (tests/browser/* and the files below; the rest are short).
_LONGEST_FIRST = ("tests/browser/", "tests/core/test_compress.py", "tests/core/test_strategies.py", "tests/core/test_fuse.py",
                  "tests/core/test_jobs.py", "tests/core/test_faults.py", "tests/core/test_recipe.py",
                  "tests/core/test_sweep.py", "tests/core/test_explain.py", "tests/app/test_apptest_pages.py",
                  "tests/core/test_distributed.py", "tests/core/test_equivalence.py", "tests/core/test_preflight.py")


def _rank(item: pytest.Item) -> int:
    path = item.nodeid.split("::", 1)[0]
    if path.startswith("tests/browser/"):  # the unit of the 1600 walk is the second longest
        return 0 if _unit(item.nodeid) == "tests/browser (a)" else 1
    return next((i + 1 for i, p in enumerate(_LONGEST_FIRST) if path.startswith(p)), len(_LONGEST_FIRST) + 1)


def pytest_collection_modifyitems(config, items):
    items.sort(key=_rank)  # stable: each file's tests keep their order


if importlib.util.find_spec("xdist"):
    def pytest_xdist_make_scheduler(config, log):
        from xdist.scheduler import LoadScopeScheduling

        class ByUnit(LoadScopeScheduling):
            def _split_scope(self, nodeid: str) -> str:
                return _unit(nodeid)

            def _reschedule(self, node) -> None:
                # A worker takes its next unit when one test is left, not three: a long unit grabbed while the
                # worker still ran a walk waited there while the other worker sat idle.
                if node.shutting_down:
                    return
                if not self.workqueue:
                    node.shutdown()
                    return
                if self._pending_of(self.assigned_work[node]) > 1:
                    return
                self._assign_work_unit(node)

        config.option.loadscopereorder = False
        return ByUnit(config, log)
