"""Evaluation maths: metrics per task, per-class reports, confusion matrices, calibration, predictions.

Numpy (or lists) in, plain Python numbers out: nothing here touches torch or a model, so every
function is testable on tiny fixed arrays and every result goes straight into ``json.dumps``.

Inputs by task (``scores`` are what the model produced, ``gold`` what the data says):

============== ============================= ==========================================
task           gold                          scores
============== ============================= ==========================================
single_label,  class ids, shape (n,)         logits, shape (n, k)
pair
multi_label    multi-hot, shape (n, k)       logits, shape (n, k); a label is chosen
                                             where ``sigmoid(logit) > threshold``
regression     floats, shape (n,)            predictions, shape (n,) or (n, 1)
token          tag sequences (BIO strings)   predicted tag sequences, aligned one tag
                                             per word (see :func:`token_tags`)
============== ============================= ==========================================

Averaging rule: a class with no gold and no predicted examples has undefined precision/recall/F1,
so it is left out of macro averages (as scikit-learn does when ``labels`` is not given, and as
seqeval does for entity types); it still gets a row with support 0 in the per-class report.
Micro and weighted averages are unaffected by such classes.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd


class _OnFirstUse:
    """A module imported the first time one of its names is used: scikit-learn, seqeval and scipy
    take 0.6 s to import, which a trainer needs at its first evaluation, not before its first step."""

    def __init__(self, name: str):
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        import importlib

        return getattr(importlib.import_module(self._name), attr)


skm = _OnFirstUse("sklearn.metrics")
seqeval_metrics = _OnFirstUse("seqeval.metrics")
stats = _OnFirstUse("scipy.stats")
special = _OnFirstUse("scipy.special")

# Kept in step with core.config.TASKS by a test, not by an import: metrics stays free of config.
METRIC_NAMES: dict[str, tuple[str, ...]] = {
    "single_label": (
        "accuracy",
        "precision_macro",
        "recall_macro",
        "f1_macro",
        "precision_micro",
        "recall_micro",
        "f1_micro",
        "precision_weighted",
        "recall_weighted",
        "f1_weighted",
    ),
    "multi_label": (
        "subset_accuracy",
        "f1_micro",
        "f1_macro",
        "f1_weighted",
        "precision_micro",
        "recall_micro",
        "hamming_loss",
    ),
    "regression": ("mse", "mae", "rmse", "pearson", "spearman", "r2"),
    "token": ("precision", "recall", "f1", "token_accuracy"),
}
METRIC_NAMES["pair"] = METRIC_NAMES["single_label"]
TASKS = tuple(METRIC_NAMES)

HEADLINE = {
    "single_label": "f1_macro",
    "pair": "f1_macro",
    "multi_label": "f1_micro",
    "regression": "mse",
    "token": "f1",
}
# Besides what compute_metrics returns, the loop reports the evaluation loss, so it may pick the best checkpoint.
EXTRA_METRICS = ("loss",)
LOWER_IS_BETTER = frozenset({"mse", "mae", "rmse", "loss", "hamming_loss"})
# How many of the most confident mistakes build_report keeps when it is given the texts.
TOP_ERRORS = 10


# ---------------------------------------------------------------------------------------------------------------------
# Names


def _check_task(task: str) -> None:
    if task not in METRIC_NAMES:
        raise ValueError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")


def headline_metric(task: str) -> str:
    """The metric a task is summarised by (and the default for picking the best checkpoint).

    Raises:
        ValueError: ``task`` is not a known task.
    """
    _check_task(task)
    return HEADLINE[task]


def greater_is_better(metric: str) -> bool:
    """Whether a higher value of ``metric`` is better: False for errors and losses, True otherwise."""
    return not (metric in LOWER_IS_BETTER or metric.endswith("_loss"))


def resolve_metric_for_best(task: str, configured: str) -> str:
    """Turn ``train.metric_for_best`` into a metric name that evaluation of ``task`` reports.

    ``"auto"`` means the task's headline metric; ``"loss"`` (the evaluation loss the loop adds) is
    always allowed.

    Raises:
        ValueError: unknown task, or a metric that ``compute_metrics`` does not return for it
            (the message lists the valid names).
    """
    _check_task(task)
    if configured == "auto":
        return HEADLINE[task]
    valid = METRIC_NAMES[task] + EXTRA_METRICS
    if configured not in valid:
        raise ValueError(
            f"metric_for_best {configured!r} is not reported for task {task!r}; "
            f"choose 'auto' or one of: {', '.join(valid)}"
        )
    return configured


# ---------------------------------------------------------------------------------------------------------------------
# Probabilities


def softmax(logits: Any) -> np.ndarray:
    """Row-wise softmax over the last axis (stable for large logits)."""
    return special.softmax(np.asarray(logits, dtype=np.float64), axis=-1)


def sigmoid(x: Any) -> np.ndarray:
    """Element-wise logistic function (stable for large |x|)."""
    return special.expit(np.asarray(x, dtype=np.float64))


# ---------------------------------------------------------------------------------------------------------------------
# Input checks and decoding


def _finite(value: float, fallback: float = 0.0) -> float:
    value = float(value)
    return value if math.isfinite(value) else fallback


def _logits(scores: Any, n: int, k: int) -> np.ndarray:
    arr = np.asarray(scores, dtype=np.float64)
    if arr.ndim != 2 or arr.shape != (n, k):
        raise ValueError(f"scores must have shape ({n}, {k}) (examples, labels); got {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError("scores contain NaN or infinity (did training diverge?)")
    return arr


def _single_label(label_names: Sequence[str], gold: Any, scores: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(gold ids, predicted ids, probabilities) of a single-label or pair task."""
    y = np.asarray(gold)
    if y.ndim != 1 or len(y) == 0:
        raise ValueError(f"gold must be a non-empty 1-D array of class ids; got shape {y.shape}")
    k = len(label_names)
    # Whole-valued floats (labels that went through a float tensor) are accepted as ids.
    whole = np.issubdtype(y.dtype, np.integer) or (np.issubdtype(y.dtype, np.floating) and (y == np.round(y)).all())
    if not whole or y.min() < 0 or y.max() >= k:
        raise ValueError(f"gold must hold class ids in [0, {k}); got {y.dtype} values in [{y.min()}, {y.max()}]")
    logits = _logits(scores, len(y), k)
    return y.astype(np.int64), logits.argmax(axis=1), softmax(logits)


def _multi_label(
    label_names: Sequence[str], gold: Any, scores: Any, threshold: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(gold multi-hot, predicted multi-hot, probabilities) of a multi-label task."""
    y = np.asarray(gold)
    k = len(label_names)
    if y.ndim != 2 or y.shape[1] != k or len(y) == 0:
        raise ValueError(f"gold must be a non-empty multi-hot array of shape (n, {k}); got {y.shape}")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("gold must be multi-hot (only 0 and 1)")
    probs = sigmoid(_logits(scores, len(y), k))
    return y.astype(np.int64), (probs > threshold).astype(np.int64), probs


def _regression(gold: Any, scores: Any) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(gold, dtype=np.float64)
    p = np.asarray(scores, dtype=np.float64)
    if p.ndim == 2 and p.shape[1] == 1:
        p = p[:, 0]
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1 or len(y) == 0 or p.shape != y.shape:
        raise ValueError(f"regression needs gold (n,) and scores (n,) or (n, 1); got {y.shape} and {p.shape}")
    if not (np.isfinite(y).all() and np.isfinite(p).all()):
        raise ValueError("regression gold or predictions contain NaN or infinity (did training diverge?)")
    return y, p


def _tag_seqs(seqs: Any, label_names: Sequence[str]) -> list[list[str]]:
    """Tag sequences as lists of strings; integer tags are looked up in ``label_names``."""
    out = []
    for seq in seqs:
        out.append([label_names[t] if isinstance(t, (int, np.integer)) else str(t) for t in seq])
    return out


def _token(label_names: Sequence[str], gold: Any, scores: Any) -> tuple[list[list[str]], list[list[str]]]:
    y, p = _tag_seqs(gold, label_names), _tag_seqs(scores, label_names)
    if not y or len(y) != len(p):
        raise ValueError(f"token needs as many predicted sequences as gold ones (at least one); got {len(y)}, {len(p)}")
    for i, (a, b) in enumerate(zip(y, p, strict=True)):
        if len(a) != len(b):
            raise ValueError(f"sequence {i}: {len(a)} gold tags but {len(b)} predicted tags")
    return y, p


def token_tags(
    label_ids: Any, predictions: Any, label_names: Sequence[str], *, ignore_index: int = -100
) -> tuple[list[list[str]], list[list[str]]]:
    """Sub-token labels and predictions of a padded batch → word-level (gold, predicted) tag sequences.

    Positions whose label is ``ignore_index`` (special tokens, continuation sub-tokens, padding) are
    dropped, which leaves one tag per word: the input :func:`compute_metrics` expects for ``token``.

    Args:
        label_ids: (n, seq) label ids with ``ignore_index`` where no label applies.
        predictions: (n, seq) predicted ids, or (n, seq, k) logits (argmax is taken).
        label_names: tag names indexed by id.
    """
    labels = np.asarray(label_ids)
    preds = np.asarray(predictions)
    if preds.ndim == labels.ndim + 1:
        preds = preds.argmax(axis=-1)
    if preds.shape != labels.shape:
        raise ValueError(f"label ids {labels.shape} and predictions {preds.shape} do not line up")
    gold_tags, pred_tags = [], []
    for row_labels, row_preds in zip(labels, preds, strict=True):
        keep = row_labels != ignore_index
        gold_tags.append([label_names[i] for i in row_labels[keep]])
        pred_tags.append([label_names[i] for i in row_preds[keep]])
    return gold_tags, pred_tags


# ---------------------------------------------------------------------------------------------------------------------
# Metrics


def _present(gold: np.ndarray, pred: np.ndarray, k: int) -> list[int]:
    """Classes with at least one gold or predicted example (the ones macro averages run over)."""
    if gold.ndim == 1:
        return sorted(set(gold.tolist()) | set(pred.tolist()))
    return [j for j in range(k) if gold[:, j].any() or pred[:, j].any()]


def _prf(gold: np.ndarray, pred: np.ndarray, labels: list[int], average: str) -> tuple[float, float, float]:
    if not labels:  # nothing to score: no gold and no predicted positives anywhere
        return 0.0, 0.0, 0.0
    p, r, f, _ = skm.precision_recall_fscore_support(gold, pred, labels=labels, average=average, zero_division=0)
    return float(p), float(r), float(f)


def compute_metrics(
    task: str, label_names: Sequence[str], gold: Any, scores: Any, *, threshold: float = 0.5
) -> dict[str, float]:
    """Evaluation metrics of one task, as plain floats without NaN (names: ``METRIC_NAMES[task]``).

    Args:
        task: one of ``TASKS``.
        label_names: class names (tag names for ``token``; unused for ``regression``).
        gold, scores: see the module docstring.
        threshold: multi-label decision threshold on the sigmoid probability.

    Raises:
        ValueError: unknown task, empty input, shapes that do not match, or non-finite scores.
    """
    _check_task(task)
    if task in ("single_label", "pair"):
        y, p, _ = _single_label(label_names, gold, scores)
        present = _present(y, p, len(label_names))
        out = {"accuracy": float(skm.accuracy_score(y, p))}
        for average in ("macro", "micro", "weighted"):
            prec, rec, f1 = _prf(y, p, present, average)
            out |= {f"precision_{average}": prec, f"recall_{average}": rec, f"f1_{average}": f1}
    elif task == "multi_label":
        y, p, _ = _multi_label(label_names, gold, scores, threshold)
        present = _present(y, p, len(label_names))
        micro = _prf(y, p, present, "micro")
        out = {
            "subset_accuracy": float(skm.accuracy_score(y, p)),
            "f1_micro": micro[2],
            "f1_macro": _prf(y, p, present, "macro")[2],
            "f1_weighted": _prf(y, p, present, "weighted")[2],
            "precision_micro": micro[0],
            "recall_micro": micro[1],
            "hamming_loss": float(skm.hamming_loss(y, p)),
        }
    elif task == "regression":
        y, p = _regression(gold, scores)
        with warnings.catch_warnings():
            # Constant inputs or a single example leave correlation and r2 undefined (NaN): don't warn.
            warnings.simplefilter("ignore")
            pearson = stats.pearsonr(y, p)[0] if len(y) > 1 else math.nan
            spearman = stats.spearmanr(y, p)[0] if len(y) > 1 else math.nan
            r2 = skm.r2_score(y, p) if len(y) > 1 else math.nan
        out = {
            "mse": float(skm.mean_squared_error(y, p)),
            "mae": float(skm.mean_absolute_error(y, p)),
            "rmse": float(skm.root_mean_squared_error(y, p)),
            "pearson": pearson,
            "spearman": spearman,
            "r2": r2,
        }
    else:
        y, p = _token(label_names, gold, scores)
        # Entity level, seqeval's default (conlleval) mode: an I- tag without a B- still opens an entity.
        out = {
            "precision": float(seqeval_metrics.precision_score(y, p, zero_division=0)),
            "recall": float(seqeval_metrics.recall_score(y, p, zero_division=0)),
            "f1": float(seqeval_metrics.f1_score(y, p, zero_division=0)),
            "token_accuracy": float(seqeval_metrics.accuracy_score(y, p)),
        }
    # An undefined value (a correlation of constant inputs) is reported as 0.0: report.json allows no NaN.
    return {name: _finite(value) for name, value in out.items()}


def _row(label: str, precision: float, recall: float, f1: float, support: float) -> dict:
    return {
        "label": label,
        "precision": _finite(precision),
        "recall": _finite(recall),
        "f1": _finite(f1),
        "support": int(support),
    }


def classification_report(
    task: str, label_names: Sequence[str], gold: Any, scores: Any, *, threshold: float = 0.5
) -> list[dict]:
    """Per-class precision/recall/F1/support, then "micro avg", "macro avg" and "weighted avg" rows.

    Classes are the labels (single_label, pair, multi_label; every label gets a row, in
    ``label_names`` order) or the entity types found in gold or predicted tags (token, via seqeval).
    Regression has no classes: ``[]``. Avg rows average the same way :func:`compute_metrics` does,
    so the report's "macro avg" F1 equals ``f1_macro``. Avg-row support is the number of examples
    (single_label), gold label assignments (multi_label) or gold entities (token).

    Raises:
        ValueError: as :func:`compute_metrics`.
    """
    _check_task(task)
    if task == "regression":
        _regression(gold, scores)
        return []
    if task == "token":
        y, p = _token(label_names, gold, scores)
        with warnings.catch_warnings():
            # With no entities at all seqeval averages an empty list (NaN, turned into 0.0 by _row) and numpy warns.
            warnings.simplefilter("ignore", RuntimeWarning)
            report = seqeval_metrics.classification_report(y, p, output_dict=True, zero_division=0)
        avgs = ("micro avg", "macro avg", "weighted avg")
        names = [name for name in report if name not in avgs] + [name for name in avgs if name in report]
        return [
            _row(name, *(report[name][key] for key in ("precision", "recall", "f1-score", "support"))) for name in names
        ]
    if task == "multi_label":
        y, p, _ = _multi_label(label_names, gold, scores, threshold)
    else:
        y, p, _ = _single_label(label_names, gold, scores)
    k = len(label_names)
    prec, rec, f1, support = skm.precision_recall_fscore_support(
        y, p, labels=list(range(k)), average=None, zero_division=0
    )
    rows = [_row(label_names[j], prec[j], rec[j], f1[j], support[j]) for j in range(k)]
    present = _present(y, p, k)
    total = int(support.sum())
    for average in ("micro", "macro", "weighted"):
        rows.append(_row(f"{average} avg", *_prf(y, p, present, average), total))
    return rows


def confusion_matrix(gold_ids: Any, pred_ids: Any, num_labels: int, normalize: str | None = None) -> list[list[float]]:
    """Confusion matrix, rows = gold class, columns = predicted class.

    Args:
        normalize: None (integer counts), "true" (each row sums to 1), "pred" (each column sums to
            1) or "all" (the whole matrix sums to 1). A row or column without examples stays 0.

    Raises:
        ValueError: unknown ``normalize``.
    """
    if normalize not in (None, "true", "pred", "all"):
        raise ValueError(f"normalize must be None, 'true', 'pred' or 'all'; got {normalize!r}")
    cm = skm.confusion_matrix(
        np.asarray(gold_ids), np.asarray(pred_ids), labels=list(range(num_labels)), normalize=normalize
    )
    if normalize is None:
        return [[int(v) for v in row] for row in cm]
    # scikit-learn already turns the 0/0 of an empty row or column into 0; _finite is a guard.
    return [[_finite(v) for v in row] for row in cm]


# ---------------------------------------------------------------------------------------------------------------------
# Calibration


def reliability_bins(confidence: Any, correct: Any, n_bins: int = 10) -> list[dict]:
    """Reliability diagram data: for each equal-width confidence bin its bounds, the number of
    predictions in it and their mean accuracy and mean confidence (None for an empty bin).

    Bins are right-closed, (lower, upper]; a confidence of exactly 0 falls in the first.

    Raises:
        ValueError: mismatched shapes or ``n_bins < 1``.
    """
    conf = np.asarray(confidence, dtype=np.float64)
    hit = np.asarray(correct, dtype=np.float64)
    if conf.shape != hit.shape or conf.ndim != 1:
        raise ValueError(f"confidence and correct must be 1-D of the same length; got {conf.shape}, {hit.shape}")
    if n_bins < 1:
        raise ValueError(f"n_bins must be at least 1; got {n_bins}")
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    which = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, n_bins - 1)
    counts = np.bincount(which, minlength=n_bins)
    hit_sum = np.bincount(which, weights=hit, minlength=n_bins)
    conf_sum = np.bincount(which, weights=conf, minlength=n_bins)
    return [
        {
            # Rounded so that the bounds read 0.3, not 0.30000000000000004.
            "lower": round(float(edges[b]), 12),
            "upper": round(float(edges[b + 1]), 12),
            "count": int(counts[b]),
            "accuracy": float(hit_sum[b] / counts[b]) if counts[b] else None,
            "confidence": float(conf_sum[b] / counts[b]) if counts[b] else None,
        }
        for b in range(n_bins)
    ]


def expected_calibration_error(confidence: Any, correct: Any, n_bins: int = 10) -> float:
    """ECE (Guo et al., 2017): the count-weighted mean gap |accuracy - confidence| over the bins of
    :func:`reliability_bins`. 0.0 for no predictions."""
    bins = reliability_bins(confidence, correct, n_bins)
    total = sum(b["count"] for b in bins)
    if not total:
        return 0.0
    return float(sum(b["count"] * abs(b["accuracy"] - b["confidence"]) for b in bins if b["count"]) / total)


# ---------------------------------------------------------------------------------------------------------------------
# Predictions and the report


def _tokens(text: Any) -> list[str]:
    return text.split() if isinstance(text, str) else [str(t) for t in text]


def predictions_frame(
    task: str,
    label_names: Sequence[str],
    gold: Any,
    scores: Any,
    *,
    texts: Sequence[Any],
    text_pairs: Sequence[str] | None = None,
    threshold: float = 0.5,
) -> pd.DataFrame:
    """One row per evaluation example, ready for ``predictions.parquet``.

    Columns:
        single_label / pair: text, [text_pair], gold, predicted (label names), confidence (max
            softmax probability), correct, probabilities (softmax, in ``label_names`` order).
        multi_label: text, gold, predicted (lists of label names), confidence (mean probability of
            the chosen labels; with none chosen, 1 - the highest probability), correct (the sets
            are equal), probabilities (sigmoid).
        regression: text, [text_pair], gold, predicted (floats), confidence (NaN), correct (None),
            probabilities (None).
        token: text (the words joined by spaces), tokens, gold, predicted (tag lists), correct
            (the sequences are equal). ``texts`` holds each example's words (a string is split on
            whitespace).

    Raises:
        ValueError: as :func:`compute_metrics`, or texts/text_pairs of the wrong length.
    """
    _check_task(task)
    n = len(gold)
    for name, column in (("texts", texts), ("text_pairs", text_pairs)):
        if column is not None and len(column) != n:
            raise ValueError(f"{name} has {len(column)} entries for {n} examples")
    if task == "token":
        y, p = _token(label_names, gold, scores)
        tokens = [_tokens(t) for t in texts]
        return pd.DataFrame(
            {
                "text": [" ".join(t) for t in tokens],
                "tokens": tokens,
                "gold": y,
                "predicted": p,
                "correct": [a == b for a, b in zip(y, p, strict=True)],
            }
        )
    frame: dict[str, Any] = {"text": list(texts)}
    if text_pairs is not None:
        frame["text_pair"] = list(text_pairs)
    if task == "regression":
        y, p = _regression(gold, scores)
        frame |= {
            "gold": y.tolist(),
            "predicted": p.tolist(),
            "confidence": [math.nan] * n,
            "correct": [None] * n,
            "probabilities": [None] * n,
        }
    elif task == "multi_label":
        y, p, probs = _multi_label(label_names, gold, scores, threshold)
        chosen = p.astype(bool)
        confidence = [
            float(row[mask].mean()) if mask.any() else float(1.0 - row.max())
            for row, mask in zip(probs, chosen, strict=True)
        ]
        frame |= {
            "gold": [[label_names[j] for j in np.flatnonzero(row)] for row in y],
            "predicted": [[label_names[j] for j in np.flatnonzero(row)] for row in p],
            "confidence": confidence,
            "correct": (y == p).all(axis=1).tolist(),
            "probabilities": probs.tolist(),
        }
    else:
        y, p, probs = _single_label(label_names, gold, scores)
        frame |= {
            "gold": [label_names[i] for i in y],
            "predicted": [label_names[i] for i in p],
            "confidence": probs.max(axis=1).tolist(),
            "correct": (y == p).tolist(),
            "probabilities": probs.tolist(),
        }
    return pd.DataFrame(frame)


def _top_errors(frame: pd.DataFrame, task: str) -> list[dict]:
    """The most telling mistakes: the most confident wrong predictions, or the largest regression errors."""
    if task == "regression":
        worst = (frame["predicted"] - frame["gold"]).abs().sort_values(ascending=False, kind="stable").index
        picked = frame.loc[worst[:TOP_ERRORS]]
    else:
        wrong = frame[~frame["correct"].astype(bool)]
        if "confidence" in wrong:
            wrong = wrong.sort_values("confidence", ascending=False, kind="stable")
        picked = wrong.head(TOP_ERRORS)
    keep = [c for c in ("text", "text_pair", "gold", "predicted", "confidence") if c in picked]
    rows = []
    for index, row in picked.iterrows():
        item: dict[str, Any] = {"index": int(index)}
        for column in keep:
            value = row[column]
            if isinstance(value, (float, np.floating)):
                if not math.isfinite(value):
                    continue
                value = float(value)
            elif isinstance(value, np.ndarray):
                value = value.tolist()
            item[column] = value
        rows.append(item)
    return rows


def build_report(
    task: str,
    label_names: Sequence[str],
    gold: Any,
    scores: Any,
    *,
    threshold: float = 0.5,
    texts: Sequence[Any] | None = None,
) -> dict:
    """Everything evaluation puts into ``report.json``; ``json.dumps(..., allow_nan=False)`` safe.

    Keys: ``task``, ``num_examples``, ``metrics`` (:func:`compute_metrics`), ``per_class``
    (:func:`classification_report`), ``confusion_matrix``, ``headline`` (name, value,
    greater_is_better), and as the task allows:

    - ``confusion_matrix``: single_label/pair: labels, counts, normalized_true, normalized_pred;
      multi_label: labels and ``per_label`` one-vs-rest counts ``{"label", "tn", "fp", "fn", "tp"}``;
      regression/token: None.
    - ``calibration`` (single_label/pair): ``ece`` and reliability ``bins`` of the top-class confidence.
    - ``threshold`` (multi_label).
    - ``top_errors`` (only when ``texts`` is given): up to ``TOP_ERRORS`` of the most confident
      mistakes (the largest errors for regression; the first wrong sentences for token).

    Raises:
        ValueError: as :func:`compute_metrics`.
    """
    metrics = compute_metrics(task, label_names, gold, scores, threshold=threshold)
    headline = headline_metric(task)
    report: dict[str, Any] = {
        "task": task,
        "num_examples": len(gold),
        "metrics": metrics,
        "per_class": classification_report(task, label_names, gold, scores, threshold=threshold),
        "confusion_matrix": None,
        "headline": {"name": headline, "value": metrics[headline], "greater_is_better": greater_is_better(headline)},
    }
    if task in ("single_label", "pair"):
        y, p, probs = _single_label(label_names, gold, scores)
        k = len(label_names)
        report["confusion_matrix"] = {
            "labels": list(label_names),
            "counts": confusion_matrix(y, p, k),
            "normalized_true": confusion_matrix(y, p, k, "true"),
            "normalized_pred": confusion_matrix(y, p, k, "pred"),
        }
        confidence, correct = probs.max(axis=1), y == p
        report["calibration"] = {
            "ece": expected_calibration_error(confidence, correct),
            "bins": reliability_bins(confidence, correct),
        }
    elif task == "multi_label":
        y, p, _ = _multi_label(label_names, gold, scores, threshold)
        per_label = []
        for name, cm in zip(label_names, skm.multilabel_confusion_matrix(y, p), strict=True):
            (tn, fp), (fn, tp) = cm.tolist()
            per_label.append({"label": name, "tn": tn, "fp": fp, "fn": fn, "tp": tp})
        report["confusion_matrix"] = {"labels": list(label_names), "per_label": per_label}
        report["threshold"] = float(threshold)
    if texts is not None:
        frame = predictions_frame(task, label_names, gold, scores, texts=texts, threshold=threshold)
        report["top_errors"] = _top_errors(frame, task)
    return report
