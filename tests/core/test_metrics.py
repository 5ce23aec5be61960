"""Golden values for core.metrics on tiny arrays whose answers are worked out by hand below."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pandas as pd
import pytest

from core import metrics

LABELS = ["a", "b", "c"]
# gold a a b b c c, predicted a b b b c a: 4 of 6 right.
#   a: tp 1, fp 1 (the last c), fn 1 -> P 1/2, R 1/2, F 1/2
#   b: tp 2, fp 1, fn 0             -> P 2/3, R 1,   F 4/5
#   c: tp 1, fp 0, fn 1             -> P 1,   R 1/2, F 2/3
GOLD = np.array([0, 0, 1, 1, 2, 2])
PRED = np.array([0, 1, 1, 1, 2, 0])
LOGITS = np.eye(3)[PRED] * 4.0 - 2.0  # the predicted class gets the highest logit
F1 = {"a": 1 / 2, "b": 4 / 5, "c": 2 / 3}

MULTI = ["x", "y"]
MULTI_GOLD = np.array([[1, 0], [0, 1]])


def logit(p: float) -> float:
    return math.log(p / (1 - p))


# sigmoid probabilities: row 0 (x 0.7, y 0.4), row 1 (x 0.2, y 0.6)
MULTI_LOGITS = np.array([[logit(0.7), logit(0.4)], [logit(0.2), logit(0.6)]])

TAGS = ["O", "B-PER", "I-PER", "B-LOC", "B-ORG"]

# One tiny valid input per task, for the checks that hold for every task.
CASES = {
    "single_label": (LABELS, GOLD, LOGITS, list("uvwxyz")),
    "pair": (LABELS, GOLD, LOGITS, list("uvwxyz")),
    "multi_label": (MULTI, MULTI_GOLD, MULTI_LOGITS, ["first", "second"]),
    "regression": ([], np.array([1.0, 2.0, 3.0]), np.array([[1.5], [2.0], [2.0]]), ["p", "q", "r"]),
    "token": (
        TAGS,
        [["B-PER", "I-PER", "O", "B-LOC"], ["O", "B-ORG"]],
        [["B-PER", "I-PER", "O", "B-ORG"], ["O", "B-ORG"]],
        [["Jan", "Smit", "in", "Oslo"], ["at", "ACME"]],
    ),
}


def assert_plain_json(value, path="report"):
    """Only Python's own JSON types, all numbers finite (numpy scalars sneak past json.dumps as floats)."""
    if isinstance(value, dict):
        for k, v in value.items():
            assert type(k) is str, path
            assert_plain_json(v, f"{path}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            assert_plain_json(v, f"{path}[{i}]")
    else:
        assert type(value) in (str, int, float, bool, type(None)), f"{path}: {type(value).__name__}"
        if type(value) is float:
            assert math.isfinite(value), path


# --------------------------------------------------------------------------------------------------------------------
# names


def test_metric_names_cover_the_configured_tasks():
    from core.config import TASKS

    assert set(metrics.METRIC_NAMES) == set(TASKS)


@pytest.mark.parametrize("task", list(CASES))
def test_compute_metrics_returns_exactly_the_advertised_names(task):
    names, gold, scores, _ = CASES[task]
    result = metrics.compute_metrics(task, names, gold, scores)
    assert list(result) == list(metrics.METRIC_NAMES[task])
    assert metrics.headline_metric(task) in result
    assert all(type(v) is float and math.isfinite(v) for v in result.values())


def test_headline_and_direction():
    assert [metrics.headline_metric(t) for t in ("single_label", "pair", "multi_label", "regression", "token")] == [
        "f1_macro",
        "f1_macro",
        "f1_micro",
        "mse",
        "f1",
    ]
    for lower in ("mse", "mae", "rmse", "loss", "hamming_loss"):
        assert metrics.greater_is_better(lower) is False, lower
    for higher in ("f1_macro", "accuracy", "r2", "pearson", "f1", "subset_accuracy"):
        assert metrics.greater_is_better(higher) is True, higher
    with pytest.raises(ValueError, match="unknown task"):
        metrics.headline_metric("ranking")


def test_resolve_metric_for_best():
    assert metrics.resolve_metric_for_best("multi_label", "auto") == "f1_micro"
    assert metrics.resolve_metric_for_best("regression", "auto") == "mse"
    assert metrics.resolve_metric_for_best("single_label", "accuracy") == "accuracy"
    assert metrics.resolve_metric_for_best("token", "loss") == "loss"
    # accuracy exists for single-label, not multi-label: the error names every valid choice
    with pytest.raises(ValueError) as err:
        metrics.resolve_metric_for_best("multi_label", "accuracy")
    message = str(err.value)
    assert "'accuracy'" in message
    for name in metrics.METRIC_NAMES["multi_label"] + ("loss",):
        assert name in message
    with pytest.raises(ValueError, match="pearson, spearman"):
        metrics.resolve_metric_for_best("regression", "f1_macro")


# --------------------------------------------------------------------------------------------------------------------
# single label


def test_single_label_golden_values():
    m = metrics.compute_metrics("single_label", LABELS, GOLD, LOGITS)
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["f1_macro"] == pytest.approx(sum(F1.values()) / 3)
    assert m["precision_macro"] == pytest.approx((1 / 2 + 2 / 3 + 1) / 3)
    assert m["recall_macro"] == pytest.approx((1 / 2 + 1 + 1 / 2) / 3)
    # single-label micro P = R = F1 = accuracy; equal supports make weighted equal macro
    assert m["f1_micro"] == m["precision_micro"] == m["recall_micro"] == pytest.approx(4 / 6)
    assert m["f1_weighted"] == pytest.approx(m["f1_macro"])
    assert metrics.compute_metrics("pair", LABELS, GOLD, LOGITS) == m
    # ids that went through a float tensor (and logits as nested lists) give the same answer
    assert metrics.compute_metrics("single_label", LABELS, GOLD.astype(np.float32), LOGITS.tolist()) == m


def test_single_label_report_rows():
    rows = {r["label"]: r for r in metrics.classification_report("single_label", LABELS, GOLD, LOGITS)}
    assert list(rows) == ["a", "b", "c", "micro avg", "macro avg", "weighted avg"]
    for name, f1 in F1.items():
        assert rows[name]["f1"] == pytest.approx(f1)
        assert rows[name]["support"] == 2
    assert rows["b"]["precision"] == pytest.approx(2 / 3)
    assert rows["c"]["recall"] == pytest.approx(1 / 2)
    assert rows["macro avg"]["f1"] == pytest.approx(sum(F1.values()) / 3)
    assert rows["micro avg"]["f1"] == pytest.approx(4 / 6)
    assert rows["weighted avg"]["support"] == 6


def test_class_absent_from_gold_and_predictions_is_left_out_of_macro():
    # 4 labels; gold 0 1 2 2, predicted 0 0 2 2. Class 1 is never predicted, class 3 never appears.
    #   0: tp 1, fp 1 -> F 2/3;  1: fn 1 -> F 0;  2: F 1;  3: undefined -> not averaged (macro 5/9, not 5/12)
    names = ["a", "b", "c", "d"]
    logits = np.eye(4)[[0, 0, 2, 2]]
    m = metrics.compute_metrics("single_label", names, np.array([0, 1, 2, 2]), logits)
    assert m["f1_macro"] == pytest.approx(5 / 9)
    rows = {r["label"]: r for r in metrics.classification_report("single_label", names, np.array([0, 1, 2, 2]), logits)}
    assert rows["d"] == {"label": "d", "precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert rows["macro avg"]["f1"] == pytest.approx(m["f1_macro"])


def test_confusion_matrix_counts_and_normalisations():
    gold, pred = [0, 1, 2, 2], [0, 0, 2, 2]  # class 1 never predicted, class 3 never seen
    counts = metrics.confusion_matrix(gold, pred, 4)
    assert counts == [[1, 0, 0, 0], [1, 0, 0, 0], [0, 0, 2, 0], [0, 0, 0, 0]]
    assert all(type(v) is int for row in counts for v in row)
    assert metrics.confusion_matrix(gold, pred, 4, normalize="true") == [
        [1.0, 0.0, 0.0, 0.0],
        [1.0, 0.0, 0.0, 0.0],
        [0.0, 0.0, 1.0, 0.0],
        [0.0, 0.0, 0.0, 0.0],
    ]
    assert metrics.confusion_matrix(gold, pred, 4, normalize="pred") == [
        [0.5, 0.0, 0.0, 0.0],
        [0.5, 0.0, 0.0, 0.0],
        [0.0, 0.0, 1.0, 0.0],
        [0.0, 0.0, 0.0, 0.0],
    ]
    # rows are gold: the example of gold 1 predicted 0 sits at [1][0], not [0][1]
    assert metrics.confusion_matrix([1], [0], 2) == [[0, 0], [1, 0]]
    with pytest.raises(ValueError, match="normalize"):
        metrics.confusion_matrix(gold, pred, 4, normalize="rows")


def test_bad_classification_input_raises():
    with pytest.raises(ValueError, match="shape"):
        metrics.compute_metrics("single_label", LABELS, GOLD, LOGITS[:, :2])
    with pytest.raises(ValueError, match="class ids"):
        metrics.compute_metrics("single_label", LABELS, np.array([0, 0, 1, 1, 2, 3]), LOGITS)
    with pytest.raises(ValueError, match="class ids"):
        metrics.compute_metrics("single_label", LABELS, np.array([0, 0, 1, 1, 2, 1.5]), LOGITS)
    with pytest.raises(ValueError, match="NaN"):
        metrics.compute_metrics("single_label", LABELS, GOLD, np.where(LOGITS > 0, np.nan, LOGITS))
    with pytest.raises(ValueError, match="unknown task"):
        metrics.compute_metrics("ranking", LABELS, GOLD, LOGITS)


# --------------------------------------------------------------------------------------------------------------------
# multi label


def test_multi_label_threshold_changes_the_outcome():
    at_half = metrics.compute_metrics("multi_label", MULTI, MULTI_GOLD, MULTI_LOGITS)
    assert at_half["subset_accuracy"] == 1.0
    assert at_half["f1_micro"] == 1.0
    assert at_half["hamming_loss"] == 0.0

    # 0.65 drops y of row 1 (0.6): tp 1, fn 1 -> P 1, R 1/2, F 2/3; one wrong cell of four
    high = metrics.compute_metrics("multi_label", MULTI, MULTI_GOLD, MULTI_LOGITS, threshold=0.65)
    assert high["subset_accuracy"] == 0.5
    assert high["precision_micro"] == 1.0
    assert high["recall_micro"] == 0.5
    assert high["f1_micro"] == pytest.approx(2 / 3)
    assert high["f1_macro"] == pytest.approx((1.0 + 0.0) / 2)
    assert high["hamming_loss"] == 0.25

    # 0.3 adds y to row 0 (0.4): tp 2, fp 1 -> F 4/5
    low = metrics.compute_metrics("multi_label", MULTI, MULTI_GOLD, MULTI_LOGITS, threshold=0.3)
    assert low["f1_micro"] == pytest.approx(4 / 5)
    assert low["subset_accuracy"] == 0.5


def test_multi_label_report_and_per_label_confusion():
    report = metrics.build_report("multi_label", MULTI, MULTI_GOLD, MULTI_LOGITS, threshold=0.3)
    # x: predicted row 0 only, gold row 0 -> tp 1, tn 1; y: predicted both rows, gold row 1 -> tp 1, fp 1
    assert report["confusion_matrix"]["per_label"] == [
        {"label": "x", "tn": 1, "fp": 0, "fn": 0, "tp": 1},
        {"label": "y", "tn": 0, "fp": 1, "fn": 0, "tp": 1},
    ]
    rows = {r["label"]: r for r in report["per_class"]}
    assert rows["y"]["precision"] == 0.5
    assert rows["micro avg"]["support"] == 2  # gold label assignments
    assert report["threshold"] == 0.3


# --------------------------------------------------------------------------------------------------------------------
# regression


def test_regression_linear_relation():
    y = np.array([1.0, 2.0, 3.0, 4.0])
    exact = metrics.compute_metrics("regression", [], y, y)
    assert exact["mse"] == 0.0
    assert exact["r2"] == pytest.approx(1.0)
    assert exact["pearson"] == pytest.approx(1.0)

    # p = 2y + 1: perfectly correlated, but off by y + 1 = 2, 3, 4, 5
    # mse = (4 + 9 + 16 + 25) / 4 = 13.5, mae = 3.5, r2 = 1 - 54 / 5
    m = metrics.compute_metrics("regression", [], y, (2 * y + 1).reshape(-1, 1))
    assert m["pearson"] == pytest.approx(1.0)
    assert m["spearman"] == pytest.approx(1.0)
    assert m["mse"] == pytest.approx(13.5)
    assert m["mae"] == pytest.approx(3.5)
    assert m["rmse"] == pytest.approx(math.sqrt(13.5))
    assert m["r2"] == pytest.approx(1 - 54 / 5)
    assert metrics.compute_metrics("regression", [], y, -y)["pearson"] == pytest.approx(-1.0)


def test_regression_constant_predictions_do_not_crash_or_nan():
    y = np.array([1.0, 2.0, 3.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no ConstantInputWarning or RuntimeWarning leaks out either
        m = metrics.compute_metrics("regression", [], y, np.full(3, 2.0))
        constant_gold = metrics.compute_metrics("regression", [], np.full(3, 2.0), y)
        single = metrics.compute_metrics("regression", [], np.array([1.0]), np.array([3.0]))
    assert m["pearson"] == 0.0
    assert m["spearman"] == 0.0
    assert m["mse"] == pytest.approx(2 / 3)
    assert m["r2"] == pytest.approx(0.0)
    assert constant_gold["pearson"] == 0.0
    assert single["mse"] == 4.0
    for result in (m, constant_gold, single):
        assert all(math.isfinite(v) for v in result.values())
    assert metrics.classification_report("regression", [], y, y) == []
    with pytest.raises(ValueError, match="NaN"):
        metrics.compute_metrics("regression", [], y, np.array([1.0, np.nan, 2.0]))
    with pytest.raises(ValueError, match="shape|scores"):
        metrics.compute_metrics("regression", [], y, np.ones((3, 2)))


# --------------------------------------------------------------------------------------------------------------------
# token


def test_token_entity_level_one_right_one_wrong():
    # gold entities: PER (0-1), LOC (3); predicted: PER (0-1), ORG (3) -> 1 of 2 right both ways
    gold = [["B-PER", "I-PER", "O", "B-LOC"]]
    pred = [["B-PER", "I-PER", "O", "B-ORG"]]
    m = metrics.compute_metrics("token", TAGS, gold, pred)
    assert m["precision"] == 0.5
    assert m["recall"] == 0.5
    assert m["f1"] == 0.5
    assert m["token_accuracy"] == 0.75
    # a half-found entity counts as wrong, although 2 of its 3 tokens are right
    half = metrics.compute_metrics("token", TAGS, [["B-PER", "I-PER", "O"]], [["B-PER", "O", "O"]])
    assert half["f1"] == 0.0
    assert half["token_accuracy"] == pytest.approx(2 / 3)

    rows = {r["label"]: r for r in metrics.classification_report("token", TAGS, gold, pred)}
    assert list(rows) == ["LOC", "ORG", "PER", "micro avg", "macro avg", "weighted avg"]
    assert rows["PER"] == {"label": "PER", "precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1}
    assert rows["LOC"]["recall"] == 0.0 and rows["LOC"]["support"] == 1
    assert rows["ORG"]["precision"] == 0.0 and rows["ORG"]["support"] == 0
    assert rows["micro avg"]["f1"] == 0.5


def test_token_uses_conlleval_mode_and_accepts_ids():
    # default (non-strict) mode: an I- tag without B- still opens an entity
    m = metrics.compute_metrics("token", TAGS, [["I-PER", "O"]], [["B-PER", "O"]])
    assert m["f1"] == 1.0
    # integer tags are looked up in label_names
    assert metrics.compute_metrics("token", TAGS, [[1, 2, 0]], [[1, 2, 0]])["f1"] == 1.0
    # no entities at all: zeros, not NaN (and no numpy "mean of empty slice" warning)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        empty = metrics.build_report("token", TAGS, [["O", "O"]], [["O", "O"]])
    assert empty["metrics"]["f1"] == 0.0
    json.dumps(empty, allow_nan=False)
    with pytest.raises(ValueError, match="sequence 0"):
        metrics.compute_metrics("token", TAGS, [["O", "O"]], [["O"]])


def test_token_tags_drops_ignored_positions():
    # [CLS] Jan Smit ##son in [SEP] pad: labels only on first sub-tokens of words
    label_ids = np.array([[-100, 1, 2, -100, 0, -100, -100]])
    pred_ids = np.array([[0, 1, 0, 2, 0, 0, 0]])
    gold, pred = metrics.token_tags(label_ids, pred_ids, TAGS)
    assert gold == [["B-PER", "I-PER", "O"]]
    assert pred == [["B-PER", "O", "O"]]
    logits = np.eye(len(TAGS))[pred_ids]  # (1, 7, k) logits give the same answer
    assert metrics.token_tags(label_ids, logits, TAGS) == (gold, pred)


# --------------------------------------------------------------------------------------------------------------------
# report and predictions


@pytest.mark.parametrize("task", list(CASES))
def test_build_report_is_plain_json(task):
    names, gold, scores, texts = CASES[task]
    report = metrics.build_report(task, names, gold, scores, texts=texts)
    json.dumps(report, allow_nan=False)
    assert_plain_json(report)
    assert report["task"] == task
    assert report["metrics"] == metrics.compute_metrics(task, names, gold, scores)
    assert report["headline"]["name"] == metrics.headline_metric(task)
    assert report["headline"]["value"] == report["metrics"][report["headline"]["name"]]
    assert report["per_class"] == metrics.classification_report(task, names, gold, scores)
    assert "top_errors" in report
    assert "top_errors" not in metrics.build_report(task, names, gold, scores)


def test_build_report_single_label_contents():
    report = metrics.build_report("single_label", LABELS, GOLD, LOGITS, texts=list("uvwxyz"))
    cm = report["confusion_matrix"]
    assert cm["labels"] == LABELS
    assert cm["counts"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    assert cm["normalized_true"][0] == [0.5, 0.5, 0.0]
    assert [row[1] for row in cm["normalized_pred"]] == pytest.approx([1 / 3, 2 / 3, 0.0])
    assert report["headline"] == {
        "name": "f1_macro",
        "value": pytest.approx(sum(F1.values()) / 3),
        "greater_is_better": True,
    }
    # the two mistakes: v (gold a, predicted b) and z (gold c, predicted a)
    assert [(e["text"], e["gold"], e["predicted"]) for e in report["top_errors"]] == [("v", "a", "b"), ("z", "c", "a")]
    assert sum(b["count"] for b in report["calibration"]["bins"]) == 6


def test_top_errors_most_confident_first_and_largest_regression_error_first():
    logits = np.array([[0.0, 1.0], [0.0, 5.0], [5.0, 0.0]])  # rows 0 and 1 wrong, row 1 the more confident
    report = metrics.build_report("single_label", ["n", "p"], np.array([0, 0, 0]), logits, texts=["r0", "r1", "r2"])
    assert [e["index"] for e in report["top_errors"]] == [1, 0]
    reg = metrics.build_report("regression", [], np.zeros(3), np.array([1.0, -3.0, 2.0]), texts=["a", "b", "c"])
    assert [e["text"] for e in reg["top_errors"]] == ["b", "c", "a"]


def test_predictions_frame_columns_per_task(tmp_path):
    frame = metrics.predictions_frame("pair", LABELS, GOLD, LOGITS, texts=list("uvwxyz"), text_pairs=list("UVWXYZ"))
    assert list(frame.columns) == ["text", "text_pair", "gold", "predicted", "confidence", "correct", "probabilities"]
    assert frame["gold"].tolist() == ["a", "a", "b", "b", "c", "c"]
    assert frame["predicted"].tolist() == ["a", "b", "b", "b", "c", "a"]
    assert frame["correct"].tolist() == [True, False, True, True, True, False]
    assert frame["probabilities"][0] == pytest.approx(metrics.softmax(LOGITS[0]).tolist())
    assert frame["confidence"][0] == pytest.approx(max(frame["probabilities"][0]))

    multi = metrics.predictions_frame("multi_label", MULTI, MULTI_GOLD, MULTI_LOGITS, texts=["s", "t"], threshold=0.3)
    assert list(multi.columns) == ["text", "gold", "predicted", "confidence", "correct", "probabilities"]
    assert multi["gold"].tolist() == [["x"], ["y"]]
    assert multi["predicted"].tolist() == [["x", "y"], ["y"]]
    assert multi["correct"].tolist() == [False, True]
    assert multi["confidence"].tolist() == pytest.approx([(0.7 + 0.4) / 2, 0.6])
    nothing = metrics.predictions_frame("multi_label", MULTI, MULTI_GOLD, MULTI_LOGITS, texts=["s", "t"], threshold=0.9)
    assert nothing["predicted"].tolist() == [[], []]
    assert nothing["confidence"].tolist() == pytest.approx([0.3, 0.4])  # 1 - the highest probability

    reg = metrics.predictions_frame("regression", [], np.array([1.0, 2.0]), np.array([[1.5], [2.0]]), texts=["p", "q"])
    assert list(reg.columns) == ["text", "gold", "predicted", "confidence", "correct", "probabilities"]
    assert reg["predicted"].tolist() == [1.5, 2.0]
    assert reg["confidence"].isna().all()
    assert reg["correct"].tolist() == [None, None]

    names, gold, pred, words = CASES["token"]
    tok = metrics.predictions_frame("token", names, gold, pred, texts=words)
    assert list(tok.columns) == ["text", "tokens", "gold", "predicted", "correct"]
    assert tok["text"].tolist() == ["Jan Smit in Oslo", "at ACME"]
    assert tok["correct"].tolist() == [False, True]

    for i, df in enumerate((frame, multi, nothing, reg, tok)):  # every frame must be storable as predictions.parquet
        path = tmp_path / f"{i}.parquet"
        df.to_parquet(path)
        assert len(pd.read_parquet(path)) == len(df)

    with pytest.raises(ValueError, match="texts"):
        metrics.predictions_frame("single_label", LABELS, GOLD, LOGITS, texts=["only one"])


# --------------------------------------------------------------------------------------------------------------------
# probabilities and calibration


def test_softmax_and_sigmoid_are_stable():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        probs = metrics.softmax(np.array([[1000.0, 1000.0], [-1000.0, 0.0]]))
        sig = metrics.sigmoid(np.array([-1000.0, 0.0, 1000.0]))
    np.testing.assert_allclose(probs, [[0.5, 0.5], [0.0, 1.0]])
    assert sig.tolist() == pytest.approx([0.0, 0.5, 1.0])
    assert metrics.softmax([[1.0, 2.0, 3.0]]).sum() == pytest.approx(1.0)


def test_perfectly_calibrated_set_has_zero_ece():
    # four at 0.75 with three right, two at 1.0 both right
    confidence = [0.75, 0.75, 0.75, 0.75, 1.0, 1.0]
    correct = [True, True, True, False, True, True]
    assert metrics.expected_calibration_error(confidence, correct) == pytest.approx(0.0)
    # overconfident: 0.9 with half right -> gap 0.4 on every example
    assert metrics.expected_calibration_error([0.9, 0.9], [True, False]) == pytest.approx(0.4)
    assert metrics.expected_calibration_error([], []) == 0.0


def test_reliability_bins():
    bins = metrics.reliability_bins([0.0, 0.1, 0.15, 0.75, 1.0], [0, 1, 1, 0, 1], n_bins=4)
    assert [(b["lower"], b["upper"]) for b in bins] == [(0.0, 0.25), (0.25, 0.5), (0.5, 0.75), (0.75, 1.0)]
    assert [b["count"] for b in bins] == [3, 0, 1, 1]  # right-closed: 0.75 is in (0.5, 0.75], 0.0 in the first
    assert bins[0]["accuracy"] == pytest.approx(2 / 3)
    assert bins[0]["confidence"] == pytest.approx(0.25 / 3)
    assert bins[1]["accuracy"] is None and bins[1]["confidence"] is None
    assert bins[3] == {"lower": 0.75, "upper": 1.0, "count": 1, "accuracy": 1.0, "confidence": 1.0}
    assert metrics.reliability_bins([0.3], [1])[2]["lower"] == 0.2  # no 0.30000000000000004 in reports
