"""A run directory read for display: what the pages show, and why a run can't be shown.

Everything tolerates half-written and deleted directories: a problem becomes a sentence in
``RunView.problem``, never an exception in a page.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from core import runs
from core.events import read_events

ACTIVE_STATES = ("queued", "running")


@dataclass
class RunView:
    run_id: str
    path: Path
    state: str  # a runs.STATES value, or "missing" / "broken"
    problem: str | None = None
    config: dict[str, Any] = field(default_factory=dict)
    status: dict[str, Any] = field(default_factory=dict)
    report: dict[str, Any] | None = None

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES

    @property
    def events_path(self) -> Path:
        return self.path / runs.EVENTS


def load_run(root: str | Path, run_id: str) -> RunView:
    """Read a run's config, status and report; say in words what is missing."""
    try:
        path = runs.run_path(root, run_id)
    except runs.RunIdError as exc:  # a hand-edited link: ?run=../..
        return RunView(str(run_id), Path(root), "missing", str(exc))
    if not path.is_dir():
        return RunView(run_id, path, "missing", f"Run {run_id!r} was not found in {Path(root).resolve()}: it was deleted, "
                                                "or the link comes from another machine or runs folder.")
    config = runs.read_json(path / runs.CONFIG)
    status = runs.read_status(path)
    report = runs.read_json(path / runs.REPORT)
    view = RunView(run_id, path, status.get("state") or "broken", config=config or {}, status=status,
                   report=report if isinstance(report, dict) else None)
    if not isinstance(config, dict):
        view.state = "broken"
        view.problem = (f"Run {run_id} is incomplete: config.json is missing or unreadable, so the directory was "
                        "half-written or partly deleted. Delete it from the Training page.")
    elif not status:
        view.state = "broken"
        view.problem = f"Run {run_id} is incomplete: status.json is missing or unreadable."
    elif view.state == "completed" and view.report is None:
        view.problem = f"Run {run_id} says completed but its report.json is missing or unreadable."
    return view


def step_frame(events: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per logged optimizer step (the last attempt's value wins after a resume)."""
    rows = [e for e in events if e.get("type") == "step"]
    frame = pd.DataFrame(rows, columns=["step", "epoch", "loss", "lr", "samples_per_s", "time"])
    if frame.empty:
        return frame
    return frame.drop_duplicates("step", keep="last").sort_values("step").reset_index(drop=True)


def eval_frame(events: list[dict[str, Any]]) -> pd.DataFrame:
    """Validation metrics per evaluation, long format: step, epoch, metric, value."""
    rows = []
    for e in events:
        if e.get("type") != "eval":
            continue
        for name, value in (e.get("metrics") or {}).items():
            if isinstance(value, (int, float)) and value is not None and math.isfinite(value):
                rows.append({"step": e.get("step"), "epoch": e.get("epoch"), "metric": name, "value": float(value)})
    frame = pd.DataFrame(rows, columns=["step", "epoch", "metric", "value"])
    return frame.drop_duplicates(["step", "metric"], keep="last").reset_index(drop=True)


def ema(values: list[float] | pd.Series, weight: float = 0.9) -> list[float]:
    """TensorBoard-style exponential smoothing with bias correction, so the first points are not dragged to 0."""
    out, avg = [], 0.0
    for i, v in enumerate(values, start=1):
        avg = weight * avg + (1 - weight) * float(v)
        out.append(avg / (1 - weight**i))
    return out


@dataclass(frozen=True)
class Progress:
    step: int
    total: int
    epoch: float
    elapsed_s: float
    eta_s: float | None
    samples_per_s: float | None

    @property
    def fraction(self) -> float:
        return min(1.0, self.step / self.total) if self.total else 0.0


def progress(events: list[dict[str, Any]]) -> Progress:
    """Where the run is and how long the rest will take, from the recent pace (not the startup)."""
    starts = [e for e in events if e.get("type") == "start"]
    total = int(starts[-1].get("total_steps") or 0) if starts else 0
    steps = [e for e in events if e.get("type") == "step" and isinstance(e.get("step"), int)]
    elapsed = max((float(e.get("time") or 0.0) for e in events), default=0.0)
    if not steps:
        return Progress(0, total, 0.0, elapsed, None, None)
    last = steps[-1]
    # The first step of an attempt includes model warm-up: measure the pace after it.
    window = steps[-20:]
    if len(window) > 1 and window[0]["step"] == steps[0]["step"]:
        window = window[1:] if len(window) > 2 else window
    eta = None
    if len(window) >= 2 and window[-1]["step"] > window[0]["step"]:
        per_step = (window[-1]["time"] - window[0]["time"]) / (window[-1]["step"] - window[0]["step"])
        eta = max(0.0, (total - last["step"]) * per_step)
    elif starts and isinstance(last.get("samples_per_s"), (int, float)) and last["samples_per_s"] > 0:
        # One logged window so far (log_every steps into the run): its own rate, rows per step from the start event.
        rows_per_step = (starts[-1].get("train_size") or 0) / max(int(starts[-1].get("steps_per_epoch") or 0), 1)
        if rows_per_step:
            eta = max(0.0, (total - last["step"]) * rows_per_step / last["samples_per_s"])
    rates = [e["samples_per_s"] for e in window if isinstance(e.get("samples_per_s"), (int, float))]
    sps = sum(rates) / len(rates) if rates else None
    return Progress(int(last["step"]), total, float(last.get("epoch") or 0.0), elapsed, eta, sps)


def fmt_duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "–"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def read_run_events(run: RunView, cache: dict[str, tuple[int, list[dict[str, Any]]]] | None = None) -> list[dict[str, Any]]:
    """The run's events. With ``cache`` (kept across redraws, e.g. in session state) each call parses only the
    lines added since the last one; a file that shrank (deleted, rewritten) is read again from the start."""
    if cache is None:
        return read_events(run.events_path)[0]
    offset, events = cache.get(run.run_id, (0, []))
    try:
        if run.events_path.stat().st_size < offset:
            offset, events = 0, []
    except OSError:
        offset, events = 0, []
    new, offset = read_events(run.events_path, offset)
    events = events + new if new else events
    cache[run.run_id] = (offset, events)
    return events


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"train": {"epochs": 2}}`` -> ``{"train.epochs": 2}`` (lists shown as text)."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, path + "."))
        else:
            out[path] = ", ".join(map(str, value)) if isinstance(value, list) else value
    return out


def config_diff(configs: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """Options whose values differ between runs: one row per option, one column per run."""
    flat = {run_id: flatten(c) for run_id, c in configs.items()}
    keys = sorted({k for f in flat.values() for k in f})
    rows = []
    for key in keys:
        values = [flat[r].get(key) for r in flat]
        if len({repr(v) for v in values}) > 1:
            rows.append({"option": key, **{r: ("" if v is None else str(v)) for r, v in zip(flat, values, strict=True)}})
    return pd.DataFrame(rows, columns=["option", *flat])


def short_label(run_id: str, name: str) -> str:
    """``rotten · 11:32 · fe1d`` for ``20261123-113215-rotten-fe1d``; the id itself if it has another shape."""
    parts = run_id.split("-")
    if len(parts) >= 3 and len(parts[0]) == 8 and len(parts[1]) == 6 and parts[0].isdigit() and parts[1].isdigit():
        t = parts[1]
        return f"{name} · {t[:2]}:{t[2:4]} · {parts[-1]}"
    return run_id


def live_cadence(cores: int | None = None) -> tuple[float, float]:
    """Seconds between the Training page's status redraws and chart redraws while a run is active.

    Watching costs the trainer CPU when the browser shares its cores (bench.polling, 2 cores, 4 pairs:
    status every 5 s and charts every 10 s slowed training by 9.8%, every 10 s / 20 s by 2.7%), so
    machines with up to 4 cores redraw at the slower pace. ``TUNEBOARD_STATUS_EVERY_S`` and
    ``TUNEBOARD_CHARTS_EVERY_S`` override either.
    """
    if cores is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    status, charts = (10.0, 20.0) if cores <= 4 else (5.0, 10.0)
    return (float(os.environ.get("TUNEBOARD_STATUS_EVERY_S", status)),
            float(os.environ.get("TUNEBOARD_CHARTS_EVERY_S", charts)))
