"""Run diagnosis (issue #14): each warning fires on the event stream or predictions that show its problem,
names the evidence in numbers, and stays quiet on a healthy run."""

from __future__ import annotations

import math

import pandas as pd

from core.diagnose import diagnose

CONFIG = {"task": "single_label", "strategy": {"kind": "lora"}, "train": {"learning_rate": 2e-5}}


def steps(losses):
    return [{"type": "step", "step": i + 1, "loss": v, "lr": 1e-4} for i, v in enumerate(losses)]


def evals(losses, every=10):
    return [{"type": "eval", "step": (i + 1) * every, "metrics": {"accuracy": 0.8, "loss": v}} for i, v in enumerate(losses)]


def healthy_events():
    train = [1.2 * math.exp(-i / 15) + 0.1 for i in range(40)]
    return steps(train) + evals([0.9, 0.6, 0.45, 0.4])


def predictions(gold, predicted):
    return pd.DataFrame({"gold": gold, "predicted": predicted, "correct": [g == p for g, p in zip(gold, predicted, strict=True)]})


def report_of(frame, labels):
    per_class = []
    for label in labels:
        support = int((frame["gold"] == label).sum())
        hits = int(((frame["gold"] == label) & frame["correct"]).sum())
        per_class.append({"label": label, "precision": 0.0, "recall": hits / support if support else 0.0, "f1": 0.0,
                          "support": support})
    return {"task": "single_label", "metrics": {"accuracy": float(frame["correct"].mean())}, "per_class": per_class}


def codes(found):
    return [f.code for f in found]


def test_a_healthy_run_has_no_warning():
    gold = ["a", "b", "c"] * 20
    frame = predictions(gold, gold[:-3] + ["b", "c", "a"])
    assert diagnose(healthy_events(), report_of(frame, "abc"), frame, CONFIG) == []


def test_nan_loss_says_where_and_hides_the_spikes_it_causes():
    found = diagnose(steps([1.0, 0.9, 0.8, 5.0, 40.0, None, None]), config=CONFIG)
    assert codes(found) == ["nan_loss"]
    assert "step 6" in found[0].evidence and "lower learning rate" in found[0].fixes[0]


def test_a_spike_is_named_with_its_size():
    found = diagnose(steps([1.0, 0.9, 0.85, 0.8, 0.78, 3.9, 0.75, 0.7, 0.6, 0.5, 0.4, 0.3]), config=CONFIG)
    assert codes(found) == ["loss_spikes"]
    assert "step 6" in found[0].evidence and "3.900" in found[0].evidence


def test_a_flat_loss_proposes_a_higher_rate_for_the_strategy():
    found = diagnose(steps([0.69, 0.70, 0.69, 0.68, 0.70, 0.69, 0.69, 0.70, 0.69, 0.69]), config=CONFIG)
    assert codes(found) == ["loss_flat"]
    assert "higher learning rate for lora (it is 2e-05), e.g. 1e-03" in found[0].fixes[0]  # lora's own rate (the Strategy form's)


def test_a_flat_loss_is_not_called_early_in_a_running_run():
    start = [{"type": "start", "total_steps": 100}]
    flat = steps([0.69, 0.70, 0.69, 0.68, 0.70, 0.69, 0.69, 0.70, 0.69, 0.69])
    assert diagnose(start + flat, config=CONFIG) == []  # step 10 of 100
    assert codes(diagnose(start + flat + [{"type": "end", "state": "cancelled"}], config=CONFIG)) == ["loss_flat"]


def test_overfitting_names_the_best_step():
    train = [1.0 - 0.02 * i for i in range(40)]
    found = diagnose(steps(train) + evals([0.5, 0.4, 0.55, 0.7]), config=CONFIG)
    assert codes(found) == ["overfitting"]
    assert "step 20" in found[0].evidence and "0.700" in found[0].evidence and "step 20" in found[0].fixes[0]


def test_validation_loss_that_rises_while_training_loss_rises_too_is_not_overfitting():
    train = [0.5 + 0.01 * i for i in range(40)]
    assert "overfitting" not in codes(diagnose(steps(train) + evals([0.5, 0.4, 0.55, 0.7]), config=CONFIG))


def test_one_class_for_everything_is_said_as_a_new_user_met_it():
    # 100 test rows of three parties, every one predicted "Republican" (macro-F1 0.19)
    gold = ["Republican"] * 36 + ["Democrat"] * 34 + ["Independent"] * 30
    frame = predictions(gold, ["Republican"] * 100)
    found = diagnose(healthy_events(), report_of(frame, ["Republican", "Democrat", "Independent"]), frame, CONFIG)
    assert codes(found) == ["one_class", "dead_class"]
    assert "100 of 100" in found[0].evidence and "'Republican'" in found[0].title and "36%" in found[0].evidence
    assert any("class weights" in fix for fix in found[0].fixes)
    assert "'Democrat' (34 examples)" in found[1].evidence


def test_majority_baseline_when_predictions_are_spread_but_no_better():
    gold = ["a"] * 60 + ["b"] * 40
    predicted = ["a"] * 40 + ["b"] * 20 + ["a"] * 20 + ["b"] * 20
    frame = predictions(gold, predicted)
    found = diagnose(healthy_events(), report_of(frame, "ab"), frame, CONFIG)
    assert codes(found) == ["majority"]
    assert "0.600" in found[0].evidence


def test_the_run_diagnosis_reads_a_run_directory(tmp_path):
    from core.diagnose import diagnose_run
    from core.events import EventWriter

    writer = EventWriter(tmp_path / "events.jsonl")
    for event in steps([0.69] * 10):
        writer(event)
    assert codes(diagnose_run(tmp_path)) == ["loss_flat"]


def test_findings_read_as_one_paragraph():
    found = diagnose(steps([float("nan")] * 7), config=CONFIG)[0]
    assert found.text().startswith("The training loss became NaN. ") and found.text().endswith(".")
