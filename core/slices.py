"""Where the model fails: the evaluated split's metrics by text length, by confidence and by any extra column.

Each example gets a score: 1/0 for a right/wrong prediction (single-label, pair, multi-label: the whole
label set; NER: the share of words tagged right), or the absolute error (regression). A slice's score
is their mean, with a 95% interval: Wilson's for a share of right answers, the normal one for a mean
error or a mean share. A slice is flagged *significantly worse* when the whole split's score lies
outside the slice's interval on the good side: a bare difference on a handful of examples is not
flagged. Classification slices also report macro-F1 (over the labels present in the slice).

Slicings: token-count buckets (the run's own tokenizer counts), confidence buckets, and every
``extra:<name>`` column of ``predictions.parquet`` (core.data.canonical): a column with at most
``MAX_GROUPS`` values is sliced by value, a numeric one with more by quartile; others (free text, ids)
are skipped, and the result says so.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core import runs
from core.data.canonical import EXTRA_PREFIX

MAX_GROUPS = 20
MIN_SLICE = 5  # a slice of fewer examples is listed but never flagged
Z95 = 1.959963984540054
CONFIDENCE_EDGES = (0.0, 0.5, 0.7, 0.9, 1.0)


@dataclass(frozen=True)
class Slice:
    """One group of a slicing: its examples' mean score, its 95% interval, and whether it is significantly worse."""

    slicing: str
    name: str
    examples: int
    score: float
    low: float
    high: float
    worse: bool
    f1_macro: float | None = None
    order: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Slicing:
    """Every slice of one way of grouping the split, and the score of the whole split to compare with."""

    name: str
    metric: str
    greater_is_better: bool
    overall: float
    slices: tuple[Slice, ...]
    note: str = ""


def wilson(successes: float, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson's score interval of a proportion (95% by default; sound for small n and shares near 0 or 1)."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    denominator = 1 + z**2 / n
    centre = (p + z**2 / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z**2 / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def mean_interval(values: np.ndarray, z: float = Z95) -> tuple[float, float]:
    """The normal interval of a mean (95% by default)."""
    if len(values) < 2:
        return -math.inf, math.inf
    half = z * float(np.std(values, ddof=1)) / math.sqrt(len(values))
    mean = float(np.mean(values))
    return mean - half, mean + half


def example_scores(predictions: pd.DataFrame, task: str) -> tuple[np.ndarray, str, bool]:
    """Per example: the score, the metric's name, and whether higher is better."""
    if task == "regression":
        return (predictions["predicted"].astype(float) - predictions["gold"].astype(float)).abs().to_numpy(), "mean absolute error", False
    if task == "token":
        shares = [float(np.mean([g == p for g, p in zip(gold, pred, strict=True)])) if len(gold) else 1.0
                  for gold, pred in zip(predictions["gold"], predictions["predicted"], strict=True)]
        return np.asarray(shares), "word accuracy", True
    return predictions["correct"].astype(bool).to_numpy().astype(float), "accuracy", True


def _f1_macro(part: pd.DataFrame, task: str) -> float | None:
    if task not in ("single_label", "pair") or part.empty:
        return None
    from sklearn.metrics import f1_score

    return float(f1_score(part["gold"].astype(str), part["predicted"].astype(str), average="macro", zero_division=0))


def _groups(values: pd.Series) -> tuple[list[tuple[str, np.ndarray, int]], str]:
    """(name, mask, order) of each group of a column, or ([], why) for a column not worth slicing."""
    present = values.notna().to_numpy()
    distinct = values[present].unique()
    numeric = pd.api.types.is_numeric_dtype(values)
    if len(distinct) <= 1:
        return [], "one value only"
    if len(distinct) <= MAX_GROUPS:
        ordered = sorted(distinct, key=lambda v: (float(v) if numeric else 0, str(v)))
        groups = [(_format(v), (values == v).to_numpy(), i) for i, v in enumerate(ordered)]
    elif numeric:
        groups = _buckets(values.astype(float).to_numpy(), quantiles=4, unit="")
    else:
        return [], f"{len(distinct)} different values (free text or ids)"
    if not present.all():
        groups.append(("(empty)", ~present, len(groups)))
    return groups, ""


def _format(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _buckets(values: np.ndarray, *, quantiles: int, unit: str) -> list[tuple[str, np.ndarray, int]]:
    """Quantile buckets of a numeric column: ``≤ a``, ``a–b``, ``> b`` with edges from the data."""
    finite = values[np.isfinite(values)]
    edges = np.quantile(finite, np.linspace(0, 1, quantiles + 1)[1:-1])
    whole = bool(np.all(finite == np.round(finite)))  # counts, years: edges at whole numbers
    edges = sorted(set((np.floor(edges) if whole else edges.round(6)).tolist()))
    groups = []
    lower = -math.inf
    for i, upper in enumerate([*edges, math.inf]):
        mask = (values > lower) & (values <= upper)
        if upper == math.inf:
            name = f"≥ {_format(lower + 1)}{unit}" if whole else f"> {_format(lower)}{unit}"
        elif lower == -math.inf:
            name = f"≤ {_format(upper)}{unit}"
        else:  # (lower, upper]: whole numbers read from lower + 1
            name = f"{_format(lower + 1 if whole else lower)}–{_format(upper)}{unit}"
        groups.append((name, mask, i))
        lower = upper
    return groups


def slicing(name: str, groups: Sequence[tuple[str, np.ndarray, int]], scores: np.ndarray, predictions: pd.DataFrame,
            task: str, metric: str, higher_better: bool, note: str = "") -> Slicing:
    """Score every group against the whole split, flagging the significantly worse ones."""
    from scipy.stats import norm

    overall = float(np.mean(scores)) if len(scores) else math.nan
    binary = task in ("single_label", "pair", "multi_label")
    tested = sum(int(mask.sum()) >= MIN_SLICE for _, mask, _ in groups)
    z_flag = float(norm.ppf(1 - 0.05 / (2 * max(1, tested))))  # Bonferroni: 5% for the whole slicing
    out = []
    for group, mask, order in groups:
        n = int(mask.sum())
        if n == 0:
            continue
        values = scores[mask]
        low, high = wilson(float(values.sum()), n) if binary else mean_interval(values)
        strict_low, strict_high = wilson(float(values.sum()), n, z_flag) if binary else mean_interval(values, z_flag)
        worse = n >= MIN_SLICE and (strict_high < overall if higher_better else strict_low > overall)
        out.append(Slice(name, group, n, float(values.mean()), low, high, bool(worse),
                         _f1_macro(predictions[mask], task), order))
    return Slicing(name, metric, higher_better, overall, tuple(out), note)


def slice_predictions(predictions: pd.DataFrame, task: str, token_counts: Sequence[int] | None = None) -> list[Slicing]:
    """Every slicing of a run's evaluated split (``predictions.parquet``); ``token_counts`` per example, if known."""
    scores, metric, higher_better = example_scores(predictions, task)
    out = []
    if token_counts is not None and len(token_counts) == len(predictions):
        counts = np.asarray(token_counts, dtype=float)
        out.append(slicing("text length", _buckets(counts, quantiles=4, unit=" tokens"), scores, predictions, task,
                           metric, higher_better))
    if "confidence" in predictions and predictions["confidence"].notna().any():
        confidence = predictions["confidence"].astype(float).to_numpy()
        groups = []
        for i, (low, high) in enumerate(zip(CONFIDENCE_EDGES, CONFIDENCE_EDGES[1:], strict=False)):
            mask = (confidence >= low) & ((confidence < high) if high < 1.0 else (confidence <= high))
            groups.append((f"{low:.1f}–{high:.1f}", mask, i))
        out.append(slicing("confidence", groups, scores, predictions, task, metric, higher_better))
    for column in predictions.columns:
        if not str(column).startswith(EXTRA_PREFIX):
            continue
        groups, why = _groups(predictions[column])
        title = str(column)[len(EXTRA_PREFIX):]
        out.append(slicing(title, groups, scores, predictions, task, metric, higher_better,
                           note=f"not sliced: {why}" if why else ""))
    return out


def token_counts(tokenizer: Any, predictions: pd.DataFrame) -> list[int]:
    """How many tokens the run's tokenizer makes of each example (both texts of a pair)."""
    if "tokens" in predictions:
        enc = tokenizer([list(t) for t in predictions["tokens"]], is_split_into_words=True, verbose=False)
    else:
        pairs = predictions["text_pair"].astype(str).tolist() if "text_pair" in predictions else None
        enc = tokenizer(predictions["text"].astype(str).tolist(), pairs, verbose=False)  # counts past 512 are the point
    return [len(ids) for ids in enc["input_ids"]]


def run_slices(run_dir: str | Path) -> list[Slicing]:
    """The slicings of a run's evaluated split, token counts by the run's own tokenizer.

    Raises:
        FileNotFoundError: the run has no readable predictions.parquet.
    """
    from transformers import AutoTokenizer

    run_dir = Path(run_dir)
    report = runs.read_json(run_dir / runs.REPORT) or {}
    try:
        predictions = pd.read_parquet(run_dir / runs.PREDICTIONS)
    except (OSError, ValueError) as exc:
        raise FileNotFoundError(f"run {run_dir.name} has no readable {runs.PREDICTIONS}: {exc}") from None
    counts = None
    model_dir = run_dir / runs.MODEL_DIR
    if (model_dir / "tokenizer.json").exists() or (model_dir / "tokenizer_config.json").exists():
        counts = token_counts(AutoTokenizer.from_pretrained(model_dir), predictions)
    return slice_predictions(predictions, report.get("task", "single_label"), counts)
