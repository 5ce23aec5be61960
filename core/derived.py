"""Derived runs: a model made from finished runs (compressed now; fused later) that is a run like any other.

A derived run has its own directory under the same root, laid out as a training run's (DESIGN.md,
"Derived runs"): ``config.json`` is the parent's config with its own ``name`` and a ``derived``
section (method, options, parent run ids); ``status.json``; ``events.jsonl`` (start, end);
``model/``; ``report.json`` with the metrics, per-class report and confusion matrix computed on the
**parent's** validation and test splits (rebuilt from the parent's data config: same rows, same
seed) plus a ``derived`` block (the parent's headline beside this one's, sizes); and
``predictions.parquet``. So the Evaluation page, the try-it box, ``core eval`` and ``core predict``
read it as they read any run.

The parent is never written to: ``model/`` files are hard links to the parent's (or copies where the
file system has none), and the one file that differs, ``model/config.json``, is written as a new file.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core import compress, runs
from core.events import EventWriter


class DerivedRunError(ValueError):
    """The parent run can't be used for this method; the message says why and what to do."""


@dataclass(frozen=True)
class DerivedOutcome:
    run_dir: Path
    report: dict[str, Any]


def check_parent(parent_dir: Path, method_name: str) -> dict[str, Any]:
    """The parent's config as a dict, or DerivedRunError before any work is done."""
    method = compress.method(method_name)
    status = runs.read_status(parent_dir)
    if status.get("state") != "completed":
        raise DerivedRunError(f"run {parent_dir.name} is {status.get('state') or 'broken'}, not completed: only a "
                              "completed run has a final model to compress. Finish or resume it first.")
    config = runs.read_json(parent_dir / runs.CONFIG)
    model_config = runs.read_json(parent_dir / runs.MODEL_DIR / "config.json")
    if not config or not model_config or not any((parent_dir / runs.MODEL_DIR).glob("*.safetensors")):
        raise DerivedRunError(f"run {parent_dir.name} has no complete saved model ({parent_dir / runs.MODEL_DIR} is "
                              "missing or has no weights); train it again to get one.")
    if config.get("task") not in method.tasks:
        raise DerivedRunError(f"{method.name} can't compress a {config.get('task')} model; it takes "
                              f"{', '.join(method.tasks)}.")
    earlier = (model_config.get(compress.MARKER) or {}).get("method")
    if earlier == method.name:
        raise DerivedRunError(f"run {parent_dir.name} is already {earlier}; compress its parent instead.")
    return config


def link_or_copy_tree(source: Path, target: Path) -> None:
    """``target`` as a copy of ``source`` whose files are hard links where the file system allows."""
    for path in source.rglob("*"):
        out = target / path.relative_to(source)
        if path.is_dir():
            out.mkdir(parents=True, exist_ok=True)
            continue
        out.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(path, out)
        except OSError:  # another file system, or links not allowed: a real copy
            shutil.copy2(path, out)


def folder_mb(path: Path) -> float:
    """Size on disk of a folder, each file counted once even when hard-linked from elsewhere."""
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


def compress_run(parent_dir: str | Path, method_name: str, *, name: str | None = None) -> DerivedOutcome:
    """Make the derived run of ``parent_dir`` compressed with ``method_name``, evaluate it and return it.

    Raises DerivedRunError (or CompressionError) before any work when the parent can't be used; once the
    derived run exists, a failure is recorded in its status and re-raised, and the parent stays as it was.
    """
    from core.evaluate import evaluate_splits

    parent_dir = Path(parent_dir)
    parent_config = check_parent(parent_dir, method_name)
    root = parent_dir.parent
    config = {**parent_config, "name": name or f"{parent_config.get('name', 'run')}-{method_name}",
              "derived": {"method": method_name, "options": {}, "parents": [parent_dir.name]}}
    run_dir = runs.create_run_dir(root, config["name"], config)
    t0 = time.monotonic()
    try:
        with EventWriter(run_dir / runs.EVENTS) as events:
            events({"type": "start", "derived": config["derived"]})
            runs.write_status(run_dir, state="running", started=time.time())
            model_dir = run_dir / runs.MODEL_DIR
            link_or_copy_tree(parent_dir / runs.MODEL_DIR, model_dir)
            model_config = runs.read_json(model_dir / "config.json") or {}
            (model_dir / "config.json").unlink()  # a hard link to the parent's: replaced, never written through
            runs.atomic_write_json(model_dir / "config.json", {**model_config, compress.MARKER: {"method": method_name, "options": {}}})
            evaluated = evaluate_splits(run_dir)
            report = derived_report(run_dir, parent_dir, config, evaluated, time.monotonic() - t0)
            runs.atomic_write_json(run_dir / runs.REPORT, report)
            events({"type": "end", "state": "completed", "test_headline": report[report["eval_split"]]["headline"]})
        runs.write_status(run_dir, state="completed", finished=time.time())
    except BaseException as exc:
        runs.write_status(run_dir, state="failed", finished=time.time(), error=f"{type(exc).__name__}: {exc}")
        shutil.rmtree(run_dir / runs.MODEL_DIR, ignore_errors=True)  # links or a copy: the parent keeps its own
        runs.index_run(root, run_dir)
        raise
    runs.index_run(root, run_dir)
    return DerivedOutcome(run_dir, report)


def derived_report(run_dir: Path, parent_dir: Path, config: dict[str, Any], evaluated: dict[str, Any],
                   seconds: float) -> dict[str, Any]:
    """report.json of a derived run: the parent's report with this model's evaluations, sizes and lineage."""
    from core.inference import Predictor

    parent_report = runs.read_json(parent_dir / runs.REPORT) or {}
    eval_split = evaluated["eval_split"]
    parent_headline = (parent_report.get(eval_split) or {}).get("headline") or {}
    size_mb = compress.serialized_mb(Predictor(run_dir / runs.MODEL_DIR).model)
    parent_size_mb = compress.serialized_mb(Predictor(parent_dir / runs.MODEL_DIR).model)
    report = {**parent_report, "run_id": run_dir.name, "eval_split": eval_split, "validation": evaluated["validation"],
              "test": evaluated.get("test"), "history": [], "best_step": None,
              "timings": {"eval_s": seconds}, "saved_model_mb": folder_mb(run_dir / runs.MODEL_DIR)}
    report["derived"] = {
        **config["derived"], "parent_headline": parent_headline, "headline": evaluated[eval_split]["headline"],
        "weights_mb": size_mb, "parent_weights_mb": parent_size_mb,
    }
    return report


def lineage(report: dict[str, Any]) -> dict[str, Any] | None:
    """What a page says about a derived run: method, parent, the headline beside the parent's, weight sizes.

    None for a training run. ``change`` is None when the parent's report had no headline.
    """
    derived = report.get("derived")
    if not derived:
        return None
    mine, theirs = derived.get("headline") or {}, derived.get("parent_headline") or {}
    value, parent_value = mine.get("value"), theirs.get("value")
    return {"method": derived.get("method"), "parents": list(derived.get("parents") or []), "metric": mine.get("name"),
            "value": value, "parent_value": parent_value,
            "change": value - parent_value if value is not None and parent_value is not None else None,
            "weights_mb": derived.get("weights_mb"), "parent_weights_mb": derived.get("parent_weights_mb")}
