"""A run's curves mirrored to a tracker through accelerate (TensorBoard here; MLflow and W&B take the same path)."""

from __future__ import annotations

import struct

import pytest

from core import runs
from core.config import from_dict
from core.events import read_events
from core.recipe import RunFailed, run_training

pytestmark = pytest.mark.slow


def tiny(root, report_to: str):
    return from_dict({"name": "tracked", "data": {"source": "sample:bbc_news", "max_train_samples": 48, "max_eval_samples": 16},
                      "model": {"num_layers": 2, "max_length": 32},
                      "train": {"epochs": 1, "batch_size": 16, "eval_every": 1, "log_every": 1, "report_to": report_to},
                      "output_dir": str(root)})


def scalars(folder) -> dict[str, dict[int, float]]:
    """Every scalar in the TensorBoard event files under ``folder`` (TFRecord: length, crc, Event proto, crc)."""
    from tensorboardX.proto.event_pb2 import Event

    out: dict[str, dict[int, float]] = {}
    for path in folder.rglob("events.out.tfevents.*"):
        data = path.read_bytes()
        at = 0
        while at < len(data):
            (length,) = struct.unpack("<Q", data[at : at + 8])
            event = Event.FromString(data[at + 12 : at + 12 + length])
            at += 12 + length + 4
            for value in event.summary.value:
                out.setdefault(value.tag, {})[event.step] = value.simple_value
    return out


def test_tensorboard_gets_the_same_curves_as_the_events_file(tmp_path):
    outcome = run_training(tiny(tmp_path, "tensorboard"), None)
    logged = scalars(outcome.run_dir / "trackers")
    events = read_events(outcome.run_dir / runs.EVENTS)[0]
    steps = {e["step"]: e["loss"] for e in events if e["type"] == "step"}
    evals = {e["step"]: e["metrics"]["accuracy"] for e in events if e["type"] == "eval"}
    assert len(steps) == 3 and logged["train/loss"] == pytest.approx(steps, rel=1e-6)
    assert logged["validation/accuracy"] == pytest.approx(evals, rel=1e-6)


def test_a_tracker_that_is_not_installed_is_refused_saying_what_to_install(tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    with pytest.raises(RunFailed, match="wandb is not installed here: pip install wandb"):
        run_training(tiny(tmp_path, "wandb"), None)
