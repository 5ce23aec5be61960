"""Turning Plotly selection events (``st.plotly_chart(on_select="rerun")``) into table filters."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd


def _get(obj: Any, key: str, default: Any = None) -> Any:
    if isinstance(obj, dict):
        return obj.get(key, default)
    return getattr(obj, key, default)


def selected_points(event: Any) -> list[dict[str, Any]]:
    """The ``selection.points`` list of a PlotlyState (or its dict form); [] for none or an empty event."""
    selection = _get(event, "selection") if event is not None else None
    points = _get(selection, "points", []) if selection is not None else []
    return [dict(p) if not isinstance(p, dict) else p for p in (points or [])]


def selected_cell(event: Any, labels: Sequence[str], overlay_curve: int = 1) -> tuple[int, int] | None:
    """The (gold, predicted) indices of the clicked confusion-matrix cell, or None.

    Trusts ``customdata`` (the overlay writes [gold, predicted, count]); falls back to x/y label names.
    Points of another trace (the heatmap is curve 0) are ignored.
    """
    names = list(labels)
    for point in selected_points(event):
        curve = point.get("curve_number", point.get("curveNumber"))
        if curve is not None and curve != overlay_curve:
            continue
        custom = point.get("customdata")
        gold, pred = (custom[0], custom[1]) if isinstance(custom, (list, tuple)) and len(custom) >= 2 else (point.get("y"), point.get("x"))
        if gold in names and pred in names:
            return names.index(gold), names.index(pred)
    return None


def cell_examples(predictions: pd.DataFrame, gold: str, predicted: str) -> pd.DataFrame:
    """Rows of ``predictions.parquet`` with this true and predicted label, the most confident first."""
    rows = predictions[(predictions["gold"].astype(str) == gold) & (predictions["predicted"].astype(str) == predicted)]
    if "confidence" in rows:
        rows = rows.sort_values("confidence", ascending=False, kind="stable")
    keep = [c for c in ("row", "text", "text_pair", "gold", "predicted", "confidence") if c in rows]
    return rows[keep].reset_index(drop=True)


def confident_errors(predictions: pd.DataFrame, n: int = 20) -> pd.DataFrame:
    wrong = predictions[~predictions["correct"].astype(bool)]
    if "confidence" in wrong:
        wrong = wrong.sort_values("confidence", ascending=False, kind="stable")
    keep = [c for c in ("row", "text", "text_pair", "gold", "predicted", "confidence") if c in wrong]
    return wrong[keep].head(n).reset_index(drop=True)


def positive_scores(predictions: pd.DataFrame, labels: Sequence[str], positive: str) -> tuple[np.ndarray, np.ndarray]:
    """(is_positive gold, probability of ``positive``) for ROC and PR curves of a binary task."""
    j = list(labels).index(positive)
    probs = np.asarray([np.asarray(p, dtype=float)[j] for p in predictions["probabilities"]])
    return (predictions["gold"].astype(str).to_numpy() == positive).astype(int), probs


def roc_pr(y: np.ndarray, score: np.ndarray) -> dict[str, Any]:
    """ROC and precision-recall curves with their areas; None areas when only one class is present."""
    from sklearn.metrics import auc, precision_recall_curve, roc_curve

    if len(set(y.tolist())) < 2:
        return {"fpr": [], "tpr": [], "roc_auc": None, "precision": [], "recall": [], "pr_auc": None}
    fpr, tpr, _ = roc_curve(y, score)
    precision, recall, _ = precision_recall_curve(y, score)
    return {"fpr": fpr.tolist(), "tpr": tpr.tolist(), "roc_auc": float(auc(fpr, tpr)),
            "precision": precision.tolist(), "recall": recall.tolist(), "pr_auc": float(auc(recall, precision))}
