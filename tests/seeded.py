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
from tests.tiny import tiny_config


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
