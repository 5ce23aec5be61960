"""A runs folder seeded once per test process: one real tiny run plus the awkward cases a page must survive."""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import tempfile
import time
from pathlib import Path

from core import runs
from core.events import EventWriter
from tests.support.tiny import tiny_config


@functools.lru_cache(maxsize=1)
def seeded_root() -> dict[str, str]:
    """Train one real run (seconds) and add failed, half-written and running ones. Returns {kind: run_id, "root": path}."""
    root = Path(tempfile.mkdtemp(prefix="tuneboard-seeded-")) / "runs"
    atexit.register(shutil.rmtree, root.parent, True)
    from core.recipe import run_training

    config = tiny_config(root, "seeded", train_rows=128, eval_rows=80, learning_rate=1e-4)
    done = run_training(config).run_dir.name

    failed = runs.create_run_dir(root, "broken-data", config.to_dict())
    runs.write_status(failed, state="failed", error="data.csv, row 7, column 'label': the label is empty. Fix: fill it in.",
                      finished=time.time())

    half = root / "20200101-000000-half-written-0000"  # a crash between mkdir and the first write
    half.mkdir(parents=True)
    (half / runs.STATUS).write_text('{"state": "runn')

    running = runs.create_run_dir(root, "live", config.to_dict())
    runs.write_status(running, state="running", pid=os.getpid(), started=time.time())
    with EventWriter(running / runs.EVENTS) as events:
        events({"type": "start", "total_steps": 40, "train_size": 640})
        for step in range(1, 11):
            events({"type": "step", "step": step, "epoch": step / 40, "loss": 0.7 - step * 0.01, "lr": 5e-5,
                    "samples_per_s": 50.0})
    runs.refresh_index(root)
    return {"root": str(root), "completed": done, "failed": failed.name, "half": half.name, "running": running.name}


def three_class_run(root: str | Path, source_run: str, name: str = "three-class", labels: tuple[str, str, str] | None = None,
                    text_prefix: str = "") -> str:
    """A completed 3-class run for the confusion-matrix drill-down: the seeded run's model and config,
    with a report and predictions computed by core.metrics from seeded scores that put examples in
    every cell (a tiny real model predicts the class prior; the drill-down is what is under test).
    ``labels`` renames the three classes and ``text_prefix`` starts every text (hostile-text tests)."""
    import numpy as np

    from core.data import load_sample
    from core.metrics import build_report, predictions_frame
    from core.recipe import write_parquet

    root = Path(root)
    frame, _ = load_sample("rotten_tomatoes_3way")
    frame = frame.sample(90, random_state=3).reset_index(drop=True)
    names = tuple(sorted(frame["label"].astype(str).unique()))
    gold = np.asarray([names.index(v) for v in frame["label"].astype(str)])
    names = labels or names
    rng = np.random.default_rng(7)
    scores = rng.normal(size=(len(gold), len(names)))
    scores[np.arange(len(gold)), gold] += 1.0  # right more often than not, wrong in every direction
    texts = [text_prefix + t for t in frame["text"].astype(str)]
    config = runs.read_json(root / source_run / runs.CONFIG)
    config = {**config, "name": name, "data": {**config["data"], "source": "sample:rotten_tomatoes_3way"}}
    run_dir = runs.create_run_dir(root, name, config)
    report = build_report("single_label", names, gold, scores, texts=texts)
    table = predictions_frame("single_label", names, gold, scores, texts=texts)
    table.insert(0, "row", np.arange(2, len(table) + 2))
    write_parquet(table, run_dir / runs.PREDICTIONS)
    full = {**runs.read_json(root / source_run / runs.REPORT), "run_id": run_dir.name, "labels": list(names),
            "eval_split": "test", "test": report, "validation": report}
    runs.atomic_write_json(run_dir / runs.REPORT, full)
    shutil.copytree(root / source_run / runs.MODEL_DIR, run_dir / runs.MODEL_DIR)
    runs.write_status(run_dir, state="completed", finished=time.time())
    runs.index_run(root, run_dir)
    return run_dir.name
