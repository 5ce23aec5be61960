"""One run trained by two processes (torchrun, gloo on the CPU) against one process with the same global batch."""

from __future__ import annotations

import os
import subprocess
import sys

import pandas as pd
import pytest

from core import runs
from core.config import from_dict
from core.events import read_events
from core.recipe import run_training
from tests.support.paths import REPO

pytestmark = pytest.mark.slow


def config(root, batch_size: int):
    return from_dict({"name": "ddp", "data": {"source": "sample:bbc_news", "max_train_samples": 96, "max_eval_samples": 32},
                      "model": {"num_layers": 2, "max_length": 64},
                      "train": {"epochs": 1, "batch_size": batch_size, "learning_rate": 5e-4, "eval_every": 3, "log_every": 1},
                      "output_dir": str(root)})


def curves(run_dir):
    events = read_events(run_dir / runs.EVENTS)[0]
    return ([e for e in events if e["type"] == "start"], [e["loss"] for e in events if e["type"] == "step"],
            [e["metrics"]["loss"] for e in events if e["type"] == "eval"])


def test_two_processes_train_the_run_one_process_trains_with_the_same_global_batch(tmp_path):
    import yaml

    two_root, one_root = tmp_path / "two", tmp_path / "one"
    spec = tmp_path / "two.yaml"
    spec.write_text(yaml.safe_dump(config(two_root, 8).to_dict()))  # 8 rows on each of 2 processes
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "core", "train",
                           "--config", str(spec)], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    one = run_training(config(one_root, 16), None).run_dir  # 16 rows in one process

    made = [p for p in two_root.iterdir() if p.is_dir() and not p.name.startswith(".")]
    assert len(made) == 1, f"one run directory for the two processes, not {made}"
    two = made[0]
    assert runs.read_status(two)["state"] == "completed" and done.stdout.count("completed ") == 1
    assert not (two / "checkpoints").exists() and (two / runs.MODEL_DIR / "config.json").exists()
    (two_starts, two_steps, two_evals), (one_starts, one_steps, one_evals) = curves(two), curves(one)
    assert len(two_starts) == 1 and two_starts[0]["total_steps"] == one_starts[0]["total_steps"] == 6, "one set of events"
    assert len(two_steps) == len(one_steps) == 6 and len(two_evals) == len(one_evals) == 2
    # The same rows make each step in both; only dropout's masks differ. Stated tolerance: 0.02 on a step's
    # training loss, 0.005 on the validation loss (measured: at most 0.006 and 0.0001).
    assert max(abs(a - b) for a, b in zip(two_steps, one_steps, strict=True)) < 0.02, (two_steps, one_steps)
    assert max(abs(a - b) for a, b in zip(two_evals, one_evals, strict=True)) < 0.005, (two_evals, one_evals)
    assert two_evals[0] != two_evals[1], "the schedule must not run out early (accelerate steps it once per process)"
    two_report, one_report = runs.read_json(two / runs.REPORT), runs.read_json(one / runs.REPORT)
    assert two_report["validation"]["metrics"]["loss"] == pytest.approx(one_report["validation"]["metrics"]["loss"], abs=0.005)
    for name in (runs.PREDICTIONS, runs.VALIDATION_PREDICTIONS):  # every held-out row once, gathered from both processes
        two_rows, one_rows = pd.read_parquet(two / name)["row"], pd.read_parquet(one / name)["row"]
        assert two_rows.is_unique and sorted(two_rows) == sorted(one_rows)
