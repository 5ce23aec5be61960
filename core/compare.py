"""Strategy comparison: the same data split and seeds, one normal run per strategy and seed, one table.

Each run goes through ``core.recipe.run_training`` and so has its own run directory; the comparison
itself is written to ``<runs_root>/comparisons/<id>/comparison.{json,csv}``.

Learning rates: strategies that train few parameters want a much larger learning rate than full
fine-tuning, so one shared rate would make the comparison measure the rate, not the strategy. Each
kind therefore runs at its registry default (``core.strategy_registry``; :data:`DEFAULT_LEARNING_RATES`
here) unless the caller pins rates (``learning_rates`` per kind, or ``same_learning_rate`` for the
base config's rate everywhere). The table shows the rate each used.
"""

from __future__ import annotations

import csv
import dataclasses
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core import runs
from core.config import STRATEGY_KINDS, ConfigError, RunConfig
from core.events import EventSink
from core.strategy_registry import STRATEGIES

# kind -> its default rate; None: the base config's train.learning_rate (see core.strategy_registry).
DEFAULT_LEARNING_RATES: dict[str, float | None] = {kind: spec.default_learning_rate for kind, spec in STRATEGIES.items()}
COLUMNS = ("strategy", "metric", "mean", "std", "runs", "learning_rate", "lr_source", "trainable_percent",
           "wall_s", "train_s", "samples_per_s", "peak_memory_mb", "saved_model_mb", "run_ids", "errors")


@dataclass
class ComparisonResult:
    comparison_id: str
    directory: Path
    rows: list[dict[str, Any]]  # one per strategy, COLUMNS
    runs: list[dict[str, Any]] = field(default_factory=list)  # one per (strategy, seed)

    def table(self) -> str:
        """A fixed-width text table for the terminal."""
        header = (f"{'strategy':17} {'metric':>18} {'lr':>9} {'trainable':>10} {'wall s':>8} {'samples/s':>10} "
                  f"{'peak MB':>9} {'saved MB':>9}  runs")
        lines = [header, "-" * len(header)]
        for r in self.rows:
            metric = (f"{r['mean']:.4f} ± {r['std']:.4f}" if r["mean"] is not None else "failed")
            lr = f"{r['learning_rate']:.0e}" + ("*" if r["lr_source"] == "default" else " ")
            lines.append(
                f"{r['strategy']:17} {metric:>18} {lr:>9} {_num(r['trainable_percent'], '.2f', '%'):>10} "
                f"{_num(r['wall_s'], '.1f'):>8} {_num(r['samples_per_s'], '.1f'):>10} {_num(r['peak_memory_mb'], '.0f'):>9} "
                f"{_num(r['saved_model_mb'], '.1f'):>9}  {r['run_ids']}"
            )
            if r["errors"]:
                lines.append(f"{'':17} error: {r['errors']}")
        metric_name = next((r["metric"] for r in self.rows if r["metric"]), "metric")
        lines.append(f"metric: {metric_name} on the held-out split (mean ± std over seeds); "
                     "lr*: the strategy's default learning rate (see core.compare.DEFAULT_LEARNING_RATES)")
        return "\n".join(lines)


def _num(value: float | None, fmt: str, suffix: str = "") -> str:
    return "-" if value is None else format(value, fmt) + suffix


def resolve_seeds(base: RunConfig, seeds: list[int] | int) -> list[int]:
    """An int n means n seeds counting up from the base config's train.seed."""
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        if seeds < 1:
            raise ConfigError("seeds", f"{seeds}: run at least one seed")
        return [base.train.seed + i for i in range(seeds)]
    chosen = list(dict.fromkeys(seeds))
    if not chosen or any(not isinstance(s, int) or s < 0 for s in chosen):
        raise ConfigError("seeds", f"{seeds!r}: give a number of seeds or a list of non-negative integers")
    return chosen


def learning_rate_for(kind: str, base: RunConfig, pinned: dict[str, float], same: bool) -> tuple[float, str]:
    """(rate, source): 'pinned' by the caller, 'base' config, or the kind's 'default'."""
    if kind in pinned:
        return pinned[kind], "pinned"
    default = DEFAULT_LEARNING_RATES.get(kind)
    if same or default is None:
        return base.train.learning_rate, "base"
    return default, "default"


def run_config(base: RunConfig, kind: str, seed: int, lr: float) -> RunConfig:
    """The base config with one strategy kind, training seed and rate; the data split (data.seed) is kept."""
    return base.replace(
        name=f"{base.name}-{kind}-s{seed}",
        strategy=dataclasses.replace(base.strategy, kind=kind),
        train=dataclasses.replace(base.train, seed=seed, learning_rate=lr),
    )


def compare(base_config: RunConfig, strategies: list[str], seeds: list[int] | int = 1, echo: EventSink | None = None,
            *, learning_rates: dict[str, float] | None = None, same_learning_rate: bool = False) -> ComparisonResult:
    """Run every strategy on the same split for each seed, one after another; write and return the comparison.

    A run that fails (a strategy refused for the model, say) is recorded with its message and the
    comparison goes on. Raises ConfigError for an unknown strategy or bad seeds, before any run starts.
    """
    from core.recipe import RunFailed, run_training

    kinds = list(dict.fromkeys(s.strip() for s in strategies if s.strip()))
    unknown = [k for k in kinds if k not in STRATEGY_KINDS]
    if not kinds or unknown:
        problem = f"unknown strategy {', '.join(map(repr, unknown))}" if unknown else "name at least one strategy"
        raise ConfigError("strategies", f"{problem}; choose from {', '.join(STRATEGY_KINDS)}")
    pinned = dict(learning_rates or {})
    bad = [k for k in pinned if k not in STRATEGY_KINDS]
    if bad:
        raise ConfigError("learning_rates", f"unknown strategy {', '.join(map(repr, bad))}")
    seed_list = resolve_seeds(base_config, seeds)
    comparison_id = runs.new_run_id(base_config.name)
    directory = base_config.runs_root / "comparisons" / comparison_id
    directory.mkdir(parents=True, exist_ok=True)

    records: list[dict[str, Any]] = []
    for kind in kinds:
        lr, source = learning_rate_for(kind, base_config, pinned, same_learning_rate)
        for seed in seed_list:
            record: dict[str, Any] = {"strategy": kind, "seed": seed, "learning_rate": lr, "lr_source": source}
            started = time.monotonic()
            try:
                outcome = run_training(run_config(base_config, kind, seed, lr), echo=echo)
                record.update(_facts(outcome.report or {}), run_id=outcome.run_dir.name, state=outcome.state)
            except RunFailed as exc:
                record.update(run_id=exc.run_dir.name, state="failed", error=str(exc))
            record["wall_s"] = time.monotonic() - started
            records.append(record)
            _write(directory, comparison_id, base_config, seed_list, records)  # partial results survive a crash
    return _write(directory, comparison_id, base_config, seed_list, records)


def _facts(report: dict[str, Any]) -> dict[str, Any]:
    headline = report[report["eval_split"]]["headline"]
    return {"metric": headline["name"], "value": headline["value"],
            "trainable_percent": report["strategy"]["trainable_percent"],
            "train_s": report["timings"]["train_s"], "samples_per_s": report["timings"]["samples_per_s"],
            "peak_memory_mb": report["peak_memory_mb"], "saved_model_mb": report["saved_model_mb"]}


def summarize(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per strategy: headline mean ± std over its completed seeds, and mean costs."""
    rows = []
    for kind in dict.fromkeys(r["strategy"] for r in records):
        mine = [r for r in records if r["strategy"] == kind]
        done = [r for r in mine if r.get("value") is not None]

        def mean(key: str, rs: list[dict[str, Any]] = done) -> float | None:
            return statistics.fmean(r[key] for r in rs) if rs else None

        values = [r["value"] for r in done]
        rows.append({
            "strategy": kind, "metric": done[0]["metric"] if done else None,
            "mean": statistics.fmean(values) if values else None,
            "std": statistics.stdev(values) if len(values) > 1 else 0.0, "runs": len(done),
            "learning_rate": mine[0]["learning_rate"], "lr_source": mine[0]["lr_source"],
            "trainable_percent": mean("trainable_percent"), "wall_s": mean("wall_s", mine), "train_s": mean("train_s"),
            "samples_per_s": mean("samples_per_s"), "peak_memory_mb": max((r["peak_memory_mb"] for r in done), default=None),
            "saved_model_mb": mean("saved_model_mb"), "run_ids": " ".join(r["run_id"] for r in mine),
            "errors": "; ".join(r["error"] for r in mine if r.get("error")),
        })
    return rows


def _write(directory: Path, comparison_id: str, base: RunConfig, seeds: list[int], records: list[dict[str, Any]]) -> ComparisonResult:
    rows = summarize(records)
    runs.atomic_write_json(directory / "comparison.json", {
        "id": comparison_id, "base_config": base.to_dict(), "seeds": seeds, "rows": rows, "runs": records,
        "note": "learning rates: lr_source 'default' = core.compare.DEFAULT_LEARNING_RATES, 'base' = the base config's, "
                "'pinned' = given by the caller"})
    tmp = directory / "comparison.csv.tmp"
    with tmp.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(directory / "comparison.csv")
    return ComparisonResult(comparison_id, directory, rows, records)
