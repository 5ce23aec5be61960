"""End to end on the real (2-layer truncated) MiniLM and real bundled data."""

import json

import numpy as np
import pandas as pd
import pytest

from core import runs
from core.config import RunConfig, from_dict
from core.events import read_events
from core.recipe import RunFailed, run_training

pytestmark = pytest.mark.slow


def quick_config(root, **sections) -> RunConfig:
    raw = {
        "name": "t",
        "task": "single_label",
        "output_dir": str(root),
        "data": {"source": "sample:rotten_tomatoes", "max_train_samples": 480, "max_eval_samples": 160},
        "model": {"name": "bundled:minilm-l6", "num_layers": 2, "max_length": 64},
        "train": {"epochs": 3, "batch_size": 16, "learning_rate": 1e-4, "log_every": 5, "warmup_ratio": 0.1},
    }
    for key, value in sections.items():
        raw[key] = {**raw.get(key, {}), **value} if isinstance(value, dict) else value
    return from_dict(raw)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    # BBC topics: real text that a 2-layer model learns from a few hundred rows in seconds.
    # (Sentiment from 2 layers needs thousands of rows; see the strategy comparison for that.)
    root = tmp_path_factory.mktemp("runs")
    return run_training(quick_config(root, data={"source": "sample:bbc_news", "max_train_samples": 300, "max_eval_samples": 150},
                                     train={"epochs": 3, "learning_rate": 3e-4}))


def test_training_learns_and_writes_every_file(trained):
    run_dir = trained.run_dir
    for name in ("config.json", "status.json", "events.jsonl", "report.json", "predictions.parquet",
                 "model/config.json", "model/model.safetensors", "model/tokenizer.json"):
        assert (run_dir / name).exists(), name
    # the resumable state (weights + AdamW moments, ~4x the model) goes once the run has completed
    assert not (run_dir / "checkpoints").exists() and not trained.run_dir.joinpath("checkpoints.old").exists()
    events, _ = read_events(run_dir / "events.jsonl")
    losses = [e["loss"] for e in events if e["type"] == "step"]
    assert np.mean(losses[-3:]) < np.mean(losses[:3])
    report = json.loads((run_dir / "report.json").read_text())
    test = pd.read_parquet(run_dir / "predictions.parquet")
    majority = test["gold"].value_counts(normalize=True).max()
    assert report["test"]["metrics"]["accuracy"] > majority + 0.2
    assert len(report["labels"]) == 5 and len(report["test"]["confusion_matrix"]["counts"]) == 5
    assert (test["gold"] == test["predicted"]).mean() == pytest.approx(report["test"]["metrics"]["accuracy"])
    assert report["strategy"]["trainable_params"] == report["model"]["parameters"]
    assert runs.read_status(run_dir)["state"] == "completed"
    assert events[-1]["type"] == "end" and events[-1]["state"] == "completed"


def test_saved_model_loads_in_a_plain_pipeline_with_label_names(trained):
    from transformers import pipeline

    clf = pipeline("text-classification", model=str(trained.run_dir / "model"))
    out = clf(["The striker scored twice as the team won the cup final.", "Shares fell as the bank cut its profit forecast."])
    labels = json.loads((trained.run_dir / "report.json").read_text())["labels"]
    assert {o["label"] for o in out} <= set(labels)


def test_cli_predict_and_eval(trained, tmp_path):
    from core.__main__ import main

    src = tmp_path / "new.csv"
    pd.DataFrame({"article": ["The striker scored twice in the final.", "=HYPERLINK(\"http://x\") The bank raised interest rates."],
                  "label": ["sports", "business"], "speaker": ["ann", "bob"], "confidence": ["high", "low"]}).to_csv(src, index=False)
    out = tmp_path / "pred.csv"
    assert main(["predict", str(trained.run_dir), "--data", str(src), "--out", str(out)]) == 0
    table = pd.read_csv(out)
    assert list(table["row"]) == [2, 3] and len(table) == 2
    # the user's own columns stay, the predictions go beside them (a clashing name gets "(model)")
    assert list(table.columns[:5]) == ["row", "article", "label", "speaker", "confidence"]
    assert list(table["speaker"]) == ["ann", "bob"] and list(table["confidence"]) == ["high", "low"]
    assert "predicted" in table.columns and table["confidence (model)"].between(0, 1).all()
    assert table["article"][1].startswith("'=HYPERLINK")  # a spreadsheet shows it as text, never runs it
    probs = table[[c for c in table.columns if c.startswith("p_")]]
    assert probs.shape[1] == 5 and np.allclose(probs.sum(axis=1), 1.0)

    from core.evaluate import evaluate_run

    own = evaluate_run(trained.run_dir)
    saved = json.loads((trained.run_dir / "report.json").read_text())["test"]["metrics"]
    assert own["metrics"]["accuracy"] == pytest.approx(saved["accuracy"], abs=1e-6)


def test_cancel_then_resume_continues_to_the_same_total(tmp_path):
    config = quick_config(tmp_path, train={"epochs": 2, "eval_every": 10, "log_every": 1}, data={"max_train_samples": 320})
    calls = {"n": 0}

    def stop_after_12():
        calls["n"] += 1
        return calls["n"] >= 12

    first = run_training(config, should_stop=stop_after_12)
    assert first.state == "cancelled" and first.result.global_step == 12
    assert runs.read_status(first.run_dir)["state"] == "cancelled"
    second = run_training(config, first.run_dir, resume=True)
    assert second.state == "completed" and second.result.global_step == second.result.total_steps == 40
    events, _ = read_events(first.run_dir / "events.jsonl")
    steps = [e["step"] for e in events if e["type"] == "step"]
    assert steps == list(range(1, 41))  # no step twice, none missing
    evals = [e["step"] for e in events if e["type"] == "eval"]
    assert evals == [10, 20, 30, 40]
    times = [e["time"] for e in events]
    assert times == sorted(times)  # the clock continues across the resume


def test_failed_run_records_the_error_and_leaves_others_alone(tmp_path, trained):
    bad = tmp_path / "bad.csv"
    bad.write_text("text,label\nonly one class here,a\nand another,a\n")
    config = quick_config(tmp_path, data={"source": str(bad), "max_train_samples": None})
    with pytest.raises(RunFailed) as err:
        run_training(config)
    status = runs.read_status(err.value.run_dir)
    assert status["state"] == "failed" and "class" in status["error"].lower()
    assert runs.read_status(trained.run_dir)["state"] == "completed"


def test_wnut16_token_classification_entity_report(tmp_path):
    config = quick_config(tmp_path, task="token", data={"source": "sample:wnut16", "max_train_samples": 400, "max_eval_samples": 150},
                          train={"epochs": 2, "learning_rate": 3e-4, "metric_for_best": "f1"})
    outcome = run_training(config)
    report = outcome.report
    assert report["test"]["headline"]["name"] == "f1"
    assert report["test"]["metrics"]["token_accuracy"] > 0.8  # most tokens are O
    assert {"label", "precision", "recall", "f1"} <= set(report["test"]["per_class"][0])
    from transformers import pipeline

    ner = pipeline("token-classification", model=str(outcome.run_dir / "model"))
    assert isinstance(ner("Going to New York with Justin Bieber"), list)


def test_multi_label_and_regression_files(tmp_path):
    rng = np.random.default_rng(0)
    words = {"sport": ["goal", "match", "team"], "money": ["bank", "price", "market"], "tech": ["robot", "code", "chip"]}
    rows = []
    for _ in range(240):
        labels = [k for k in words if rng.random() < 0.45] or ["sport"]
        text = " ".join(str(rng.choice(words[k])) for k in labels for _ in range(2)) + " today"
        rows.append({"text": text, "labels": "|".join(labels), "score": float(len(labels))})
    pd.DataFrame(rows).to_csv(tmp_path / "multi.csv", index=False)
    multi = run_training(quick_config(tmp_path, task="multi_label",
                                      data={"source": str(tmp_path / "multi.csv"), "label_column": "labels", "max_train_samples": None},
                                      train={"learning_rate": 1e-3, "epochs": 4})).report
    assert multi["test"]["metrics"]["f1_micro"] > 0.8
    reg = run_training(quick_config(tmp_path, task="regression",
                                    data={"source": str(tmp_path / "multi.csv"), "label_column": "score", "max_train_samples": None},
                                    train={"learning_rate": 1e-4, "epochs": 6})).report
    assert reg["test"]["metrics"]["pearson"] > 0.5


def test_the_report_reuses_the_loops_validation_predictions_of_the_best_weights(tmp_path, monkeypatch):
    import core.recipe
    from tests.support.tiny import tiny_config

    splits = []
    predict = core.recipe.predict

    def counted(model, dataset, *args, **kwargs):
        splits.append(len(dataset))
        return predict(model, dataset, *args, **kwargs)
    monkeypatch.setattr(core.recipe, "predict", counted)
    outcome = run_training(tiny_config(tmp_path, train_rows=64, eval_rows=24))
    report = outcome.report
    assert splits == [len(pd.read_parquet(outcome.run_dir / runs.PREDICTIONS))]  # the test split only: validation was reused
    best = next(e for e in report["history"] if e["step"] == report["best_step"])
    assert report["validation"]["metrics"] == pytest.approx({**best["metrics"]})
