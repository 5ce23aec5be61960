"""Tables for the Compare page: every run with its quality and cost, read from the run directories."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from core import runs
from core.events import read_events
from ui.runview import eval_frame, short_label, step_frame

COSTS = {"trainable %": "trainable_percent", "train time (s)": "train_s", "peak memory (MB)": "peak_memory_mb",
         "saved model (MB)": "saved_model_mb"}


def run_row(summary: runs.RunSummary) -> dict[str, Any]:
    """One table row: the index summary plus cost facts from report.json (None while unfinished)."""
    report = runs.read_json(Path(summary.path) / runs.REPORT) or {}
    strategy = report.get("strategy") or {}
    timings = report.get("timings") or {}
    made_from = f"{summary.derived_method} of {', '.join(summary.parents)}" if summary.derived_method else None
    # a student's model is a folder inside its own run (core.student): its depth says more than the path
    model = (f"{(report.get('model') or {}).get('layers', '?')}-layer student" if made_from and summary.model.endswith("/student")
             else summary.model)
    return {
        "run": summary.run_id, "name": summary.name, "task": summary.task, "strategy": summary.strategy,
        "made_from": made_from, "model": model, "state": summary.state, "metric": summary.headline_name, "value": summary.headline_value,
        "trainable_percent": strategy.get("trainable_percent"), "train_s": timings.get("train_s"),
        "peak_memory_mb": report.get("peak_memory_mb"), "saved_model_mb": report.get("saved_model_mb"),
        "created": pd.Timestamp(summary.created, unit="s", tz="UTC").strftime("%Y-%m-%d %H:%M"),
    }


def runs_table(root: str | Path) -> pd.DataFrame:
    rows = [run_row(s) for s in runs.list_runs(root)]
    return pd.DataFrame(rows, columns=["run", "name", "task", "strategy", "made_from", "model", "state", "metric", "value",
                                       "trainable_percent", "train_s", "peak_memory_mb", "saved_model_mb", "created"])


def display_table(shown: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The runs table as drawn, and the facts every shown run shares.

    The long run id becomes ``name · time · suffix`` (rows stay in order, so a selection still indexes
    ``shown``); task, model and metric columns that hold one value for every row (of two or more) are
    dropped and returned, to be said once above the table: that is what lets the table fit at 1280 px.
    """
    table = shown.assign(run=[short_label(r, n) for r, n in zip(shown["run"], shown["name"], strict=True)])
    table = table.drop(columns=["name", "created"])
    if "made_from" in table and table["made_from"].isna().all():  # no derived run among them: no empty column
        table = table.drop(columns=["made_from"])
    shared = {c: table[c].iloc[0] for c in ("task", "model", "metric") if len(table) > 1 and table[c].nunique(dropna=False) == 1}
    return table.drop(columns=list(shared)), shared


def filter_runs(table: pd.DataFrame, *, tasks: list[str] | None = None, strategies: list[str] | None = None,
                states: list[str] | None = None, text: str = "") -> pd.DataFrame:
    out = table
    if tasks:
        out = out[out["task"].isin(tasks)]
    if strategies:
        out = out[out["strategy"].isin(strategies)]
    if states:
        out = out[out["state"].isin(states)]
    if text.strip():
        needle = text.strip().lower()
        out = out[out["run"].str.lower().str.contains(needle, regex=False) | out["name"].str.lower().str.contains(needle, regex=False)]
    return out.reset_index(drop=True)


def curves(root: str | Path, run_ids: list[str]) -> tuple[dict[str, pd.DataFrame], dict[str, pd.DataFrame]]:
    """(training-loss steps, validation evals) per run id, for overlay charts."""
    losses, evals = {}, {}
    for run_id in run_ids:
        events = read_events(Path(root) / run_id / runs.EVENTS)[0]
        losses[run_id] = step_frame(events)
        evals[run_id] = eval_frame(events)
    return losses, evals


def fusion_rows(root: str | Path, run_ids: list[str]) -> pd.DataFrame:
    """The fused runs among ``run_ids`` beside their members: headline, its change to the best and to the mean
    member, and the cost (weights MB, one-text latency, and batch speed against the first member measured beside it)."""
    rows = []
    for run_id in run_ids:
        report = runs.read_json(Path(root) / run_id / runs.REPORT) or {}
        fusion, derived = report.get("fusion"), report.get("derived") or {}
        if not fusion:
            continue
        speed, first = derived.get("speed") or {}, derived.get("parent_speed") or {}
        rate, first_rate = speed.get("batch32_texts_per_s"), first.get("batch32_texts_per_s")
        rows.append({"run": run_id, "method": derived.get("method"), "members": len(fusion.get("members") or []),
                     "value": (derived.get("headline") or {}).get("value"), "vs_best": fusion.get("vs_best"),
                     "vs_mean": fusion.get("vs_mean"), "weights_mb": derived.get("weights_mb"),
                     "p50_ms": speed.get("p50_ms"), "speed_vs_member": rate / first_rate if rate and first_rate else None})
    return pd.DataFrame(rows, columns=["run", "method", "members", "value", "vs_best", "vs_mean", "weights_mb", "p50_ms",
                                       "speed_vs_member"])
