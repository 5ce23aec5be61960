"""A run's curves also logged to the trackers people already use, through accelerate's tracker interface.

``train.report_to``: ``tensorboard`` writes under ``<run>/trackers/<run id>/`` (tensorboard's own writer, or
tensorboardX's when tensorboard is not installed), ``mlflow`` to ``MLFLOW_TRACKING_URI`` or a SQLite store
``<runs root>/mlflow.db``, ``wandb`` in offline mode unless ``WANDB_MODE`` says otherwise (its files under the run).
Each is an optional extra, off by default: the events file stays the run's own record, and a tracker only mirrors
the step and evaluation events (``train/loss``, ``train/lr``, ``train/samples_per_s``, ``validation/<metric>``).
Only the main process logs (accelerate's trackers do so by themselves).
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from core.config import ConfigError, RunConfig

TRACKER_DIR = "trackers"
_PACKAGES = {"tensorboard": ("tensorboard", "tensorboardX"), "mlflow": ("mlflow",), "wandb": ("wandb",)}


def check_installed(kind: str) -> None:
    """Refuse a tracker whose package is missing, before any work, saying what to install."""
    if kind == "none":
        return
    if not any(importlib.util.find_spec(p) for p in _PACKAGES[kind]):
        raise ConfigError("train.report_to", f"{kind} is not installed here: pip install {_PACKAGES[kind][-1]} "
                                             "(or set train.report_to to none)")


def accelerator_options(config: RunConfig, run_dir: Path) -> dict[str, Any]:
    """What the run's Accelerator needs to carry the tracker: ``log_with`` and where its files go."""
    kind = config.train.report_to
    if kind == "none":
        return {}
    check_installed(kind)
    if kind == "mlflow":
        os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{Path(config.runs_root).resolve() / 'mlflow.db'}")
    if kind == "wandb":
        os.environ.setdefault("WANDB_MODE", "offline")  # no network needed; `wandb sync` uploads later
        os.environ.setdefault("WANDB_DIR", str(run_dir / TRACKER_DIR))
    (run_dir / TRACKER_DIR).mkdir(parents=True, exist_ok=True)
    return {"log_with": kind, "project_dir": str(run_dir / TRACKER_DIR)}


def hyperparameters(config: RunConfig) -> dict[str, Any]:
    """The config as flat ``section.field`` values a tracker can store (numbers, text and booleans only)."""
    flat: dict[str, Any] = {}
    for key, value in config.to_dict().items():
        if isinstance(value, dict):
            for name, inner in value.items():
                flat[f"{key}.{name}"] = inner if isinstance(inner, (int, float, str, bool)) else str(inner)
        else:
            flat[key] = value if isinstance(value, (int, float, str, bool)) else str(value)
    return flat


def start(config: RunConfig, run_dir: Path, accelerator: Any) -> Callable[[dict[str, Any]], None] | None:
    """Open the tracker of the run (None when ``report_to`` is none) and return the event sink that feeds it."""
    if config.train.report_to == "none":
        return None
    accelerator.init_trackers(run_dir.name, config=hyperparameters(config),
                              init_kwargs={"wandb": {"name": run_dir.name}, "mlflow": {"run_name": run_dir.name}})

    def log(event: dict[str, Any]) -> None:
        if event.get("type") == "step":
            accelerator.log({"train/loss": event["loss"], "train/lr": event["lr"],
                             "train/samples_per_s": event["samples_per_s"]}, step=event["step"])
        elif event.get("type") == "eval":
            accelerator.log({f"validation/{k}": v for k, v in event["metrics"].items() if isinstance(v, (int, float))},
                            step=event["step"])

    return log
