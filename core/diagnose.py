"""What went wrong with a run, in plain words: warnings with their evidence and a fix to try.

Computed from the run's events (the training and validation losses as they were logged) and, once it
has them, its report and predictions. Each check is a small function of that evidence; each finding
names its numbers and one or two concrete changes. The Training and Evaluation pages and the CLI
show the same findings (:func:`diagnose_run`).

The checks, in the order a user should act on them:

- ``nan_loss``: the training loss became NaN or infinite.
- ``loss_spikes``: a logged loss far above the ones just before it.
- ``loss_flat``: the training loss did not fall.
- ``overfitting``: the validation loss rose while the training loss fell; says where the best was.
- ``one_class``: (almost) every example predicted as one class.
- ``majority``: accuracy no better than always answering the most common class.
- ``dead_class``: a class of the evaluated split that was never predicted right.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ONE_CLASS_SHARE = 0.9  # predictions of one class at least this share of the split ...
ONE_CLASS_GOLD_MARGIN = 0.1  # ... while the gold labels' most common class is this much rarer
FLAT_RATIO = 0.95  # the last tenth of logged losses at least this share of the first tenth: not falling
SPIKE_FACTOR = 3.0  # a logged loss this many times the median of the ones before it ...
SPIKE_SPREADS = 8.0  # ... and this many median absolute deviations above it
OVERFIT_RISE = 1.10  # validation loss 10% above its best at the end
MIN_STEP_EVENTS = 6


@dataclass(frozen=True)
class Finding:
    """One warning: a short title, the evidence (numbers), and what to change."""

    code: str
    title: str
    evidence: str
    fixes: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def text(self) -> str:
        return f"{self.title}. {self.evidence} Try: " + "; ".join(self.fixes) + "."


def _rate_advice(config: dict[str, Any] | None, higher: bool) -> str:
    """A learning-rate change for this run's strategy, in numbers."""
    strategy = ((config or {}).get("strategy") or {}).get("kind", "full")
    rate = ((config or {}).get("train") or {}).get("learning_rate")
    try:
        from core.strategy_registry import spec

        proposed = spec(strategy).form_learning_rate
    except (KeyError, ValueError):
        proposed = None
    if higher:
        suggestion = max(proposed or 0.0, (rate or 0.0) * 5) or 1e-4
        now = f" (it is {rate:g})" if rate else ""
        return f"a higher learning rate for {strategy}{now}, e.g. {suggestion:.0e}"
    suggestion = (rate or 5e-5) / 5
    return f"a lower learning rate, e.g. {suggestion:.0e}{f' (it is {rate:g})' if rate else ''}, or more warmup"


def _step_losses(events: Sequence[dict[str, Any]]) -> list[tuple[int, float | None]]:
    return [(int(e.get("step", 0)), e.get("loss")) for e in events if e.get("type") == "step" and "loss" in e]


def _eval_losses(events: Sequence[dict[str, Any]]) -> list[tuple[int, float]]:
    out = []
    for e in events:
        if e.get("type") == "eval":
            loss = (e.get("metrics") or {}).get("loss")
            if isinstance(loss, (int, float)) and math.isfinite(loss):
                out.append((int(e.get("step", 0)), float(loss)))
    return out


def check_nan(events: Sequence[dict[str, Any]], config: dict[str, Any] | None = None) -> Finding | None:
    bad = [step for step, loss in _step_losses(events) if loss is None or not math.isfinite(loss)]
    if not bad:
        return None
    return Finding("nan_loss", "The training loss became NaN",
                   f"The loss logged at step {bad[0]} is not a number ({len(bad)} logged steps in all): the weights diverged.",
                   (_rate_advice(config, higher=False), "train in fp32 if the run used fp16"))


def check_spikes(events: Sequence[dict[str, Any]], config: dict[str, Any] | None = None) -> Finding | None:
    losses = [(s, v) for s, v in _step_losses(events) if v is not None and math.isfinite(v)]
    if len(losses) < MIN_STEP_EVENTS:
        return None
    spikes = []
    for i in range(5, len(losses)):
        # per-step losses of small batches are noisy (0.1 to 1.5 around a median of 0.5 is normal): a spike is far
        # outside the recent spread (median absolute deviation), not merely a few times the median
        recent = np.array([v for _, v in losses[max(0, i - 20):i]])
        before = float(np.median(recent))
        spread = float(np.median(np.abs(recent - before)))
        if before > 0 and losses[i][1] > max(SPIKE_FACTOR * before, before + SPIKE_SPREADS * spread):
            spikes.append((losses[i][0], losses[i][1], before))
    if not spikes:
        return None
    step, value, before = spikes[0]
    return Finding("loss_spikes", "The training loss spiked",
                   f"At step {step} the loss was {value:.3f}, {value / before:.1f}× the {before:.3f} of the steps before it "
                   f"({len(spikes)} such spike{'s' if len(spikes) > 1 else ''}).",
                   (_rate_advice(config, higher=False), "a larger batch"))


def _early(events: Sequence[dict[str, Any]]) -> bool:
    """A run still in its first third: too soon to say its loss does not fall."""
    if any(e.get("type") == "end" for e in events):
        return False
    total = max((int(e.get("total_steps") or 0) for e in events if e.get("type") == "start"), default=0)
    last = max((int(e.get("step", 0)) for e in events if e.get("type") == "step"), default=0)
    return bool(total) and last < total / 3


def check_flat(events: Sequence[dict[str, Any]], config: dict[str, Any] | None = None) -> Finding | None:
    losses = [v for _, v in _step_losses(events) if v is not None and math.isfinite(v)]
    if len(losses) < MIN_STEP_EVENTS or _early(events):
        return None
    tenth = max(1, len(losses) // 10)
    first, last = float(np.mean(losses[:tenth])), float(np.mean(losses[-tenth:]))
    if last < FLAT_RATIO * first:
        return None
    return Finding("loss_flat", "The training loss did not fall",
                   f"It averaged {first:.3f} over the first logged steps and {last:.3f} over the last "
                   f"({len(losses)} logged steps): the model learned little.",
                   (_rate_advice(config, higher=True), "more epochs", "check that the label column is the label"))


def check_overfitting(events: Sequence[dict[str, Any]], config: dict[str, Any] | None = None) -> Finding | None:
    evals = _eval_losses(events)
    if len(evals) < 3:
        return None
    best_at = int(np.argmin([v for _, v in evals]))
    best_step, best = evals[best_at]
    last_step, last = evals[-1]
    if best_at == len(evals) - 1 or last < OVERFIT_RISE * best:
        return None
    train = [(s, v) for s, v in _step_losses(events) if v is not None and math.isfinite(v)]
    near_best = [v for s, v in train if s <= best_step][-3:]
    at_end = [v for _, v in train][-3:]
    if not near_best or not at_end or np.mean(at_end) >= np.mean(near_best):
        return None
    return Finding("overfitting", "The model over-fitted",
                   f"Validation loss was lowest ({best:.3f}) at step {best_step} and rose to {last:.3f} by step {last_step}, "
                   f"while the training loss fell from {np.mean(near_best):.3f} to {np.mean(at_end):.3f}. The saved model is "
                   "the best checkpoint by the run's metric, not the last.",
                   (f"fewer epochs (the best was at step {best_step})", "early stopping (train.early_stopping_patience 1–2)",
                    "more weight decay or dropout, or a parameter-efficient strategy such as lora"))


def _class_counts(values: pd.Series) -> pd.Series:
    return values.astype(str).value_counts()


def check_one_class(predictions: pd.DataFrame | None, task: str, config: dict[str, Any] | None = None) -> Finding | None:
    if predictions is None or task not in ("single_label", "pair") or len(predictions) < 10:
        return None
    predicted, gold = _class_counts(predictions["predicted"]), _class_counts(predictions["gold"])
    top, count = str(predicted.index[0]), int(predicted.iloc[0])
    share, gold_share = count / len(predictions), float(gold.iloc[0]) / len(predictions)
    if share < ONE_CLASS_SHARE or share - gold_share < ONE_CLASS_GOLD_MARGIN:
        return None
    return Finding("one_class", f"The model predicts {top!r} for almost everything",
                   f"{count} of {len(predictions)} evaluated examples ({share:.0%}) are predicted {top!r}, while the most common "
                   f"gold label is {gold_share:.0%} of them.",
                   ("more epochs", _rate_advice(config, higher=True), "more trained layers (a full fine-tune, or fewer frozen ones)",
                    "class weights (strategy.class_weights: balanced) if the classes are unbalanced"))


def check_majority(report: dict[str, Any] | None, predictions: pd.DataFrame | None, task: str,
                   config: dict[str, Any] | None = None) -> Finding | None:
    if report is None or predictions is None or task not in ("single_label", "pair") or len(predictions) < 10:
        return None
    accuracy = (report.get("metrics") or {}).get("accuracy")
    if accuracy is None:
        return None
    gold = _class_counts(predictions["gold"])
    majority = float(gold.iloc[0]) / len(predictions)
    if accuracy > majority + 0.01:
        return None
    return Finding("majority", "No better than always answering the most common class",
                   f"Accuracy is {accuracy:.3f}; answering {gold.index[0]!r} for every example would score {majority:.3f}.",
                   ("more epochs", _rate_advice(config, higher=True), "more training rows"))


def check_dead_classes(report: dict[str, Any] | None, task: str) -> Finding | None:
    if report is None or task not in ("single_label", "pair"):
        return None
    dead = [row for row in report.get("per_class") or []
            if row.get("label") not in ("accuracy", "macro avg", "weighted avg", "micro avg")
            and (row.get("support") or 0) > 0 and (row.get("recall") or 0) == 0]
    if not dead:
        return None
    names = ", ".join(f"{row['label']!r} ({int(row['support'])} examples)" for row in dead[:5])
    return Finding("dead_class", f"{len(dead)} class{'es' if len(dead) > 1 else ''} never predicted right",
                   f"No example of {names} was predicted correctly.",
                   ("class weights (strategy.class_weights: balanced)", "more training examples of those classes", "more epochs"))


def diagnose(events: Sequence[dict[str, Any]], report: dict[str, Any] | None = None,
             predictions: pd.DataFrame | None = None, config: dict[str, Any] | None = None) -> list[Finding]:
    """Every finding about a run: from its events alone while it trains, and from its evaluation once it has one.

    ``report``: the evaluated split's report (``report[report["eval_split"]]``); ``predictions``: that
    split's ``predictions.parquet``; ``config``: the run's config as a dict (for advice in numbers).
    """
    task = (report or {}).get("task") or ((config or {}).get("task")) or "single_label"
    found = [check_nan(events, config), check_spikes(events, config), check_flat(events, config),
             check_overfitting(events, config), check_one_class(predictions, task, config),
             check_majority(report, predictions, task, config), check_dead_classes(report, task)]
    found = [f for f in found if f is not None]
    if any(f.code == "nan_loss" for f in found):  # spikes and a flat loss are what NaN looks like
        found = [f for f in found if f.code not in ("loss_spikes", "loss_flat")]
    if any(f.code == "one_class" for f in found):  # the same fact seen twice
        found = [f for f in found if f.code != "majority"]
    return found


def diagnose_run(run_dir: str | Path) -> list[Finding]:
    """:func:`diagnose` of a run directory, whatever it has so far (events only while it trains)."""
    from core import runs
    from core.events import read_events

    run_dir = Path(run_dir)
    events = read_events(run_dir / runs.EVENTS)[0] if (run_dir / runs.EVENTS).exists() else []
    full = runs.read_json(run_dir / runs.REPORT) or None
    config = runs.read_json(run_dir / runs.CONFIG) or None
    report = predictions = None
    if full:
        report = {"task": full.get("task"), **(full.get(full.get("eval_split", "test")) or {})}
        try:
            predictions = pd.read_parquet(run_dir / runs.PREDICTIONS)
        except (OSError, ValueError):
            predictions = None
    return diagnose(events, report, predictions, config)
