"""Compression (issue #13): a derived run is a run, evaluated on its parent's split; each method keeps the
parent's predictions within a bound (int8, onnx-int8), exactly (onnx), or trains a smaller student that
starts from the parent's own layers (prune-layers, distill)."""

import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from core import compress, deploy, derived, jobs, runs, student
from core.config import ConfigError
from core.derived import DerivedRunError, compress_run
from core.evaluate import evaluate_run, run_predictor
from core.inference import Predictor
from core.recipe import run_training
from tests.core.test_recipe import quick_config
from tests.support.waits import state, wait_for, worker_of

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def parent(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    # BBC topics, as test_recipe's fixture: a 2-layer model learns them from a few hundred rows in seconds
    return run_training(quick_config(root, name="news", data={"source": "sample:bbc_news", "max_train_samples": 300,
                                                              "max_eval_samples": 150},
                                     train={"epochs": 3, "learning_rate": 3e-4})).run_dir


def fingerprint(folder):
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_int8_derived_run_is_a_run_on_the_parents_test_split(parent):
    before = fingerprint(parent)
    outcome = compress_run(parent, "int8")
    run_dir = outcome.run_dir
    assert fingerprint(parent) == before  # the parent is never written to

    config = json.loads((run_dir / "config.json").read_text())
    assert config["derived"] == {"method": "int8", "options": {}, "parents": [parent.name]} and config["name"] == "news-int8"
    assert runs.read_status(run_dir)["state"] == "completed"
    assert json.loads((run_dir / "model" / "config.json").read_text())[compress.MARKER]["method"] == "int8"
    assert compress.MARKER not in json.loads((parent / "model" / "config.json").read_text())

    # the same test rows as the parent's, and the same labels for (almost) all of them
    ours, theirs = pd.read_parquet(run_dir / "predictions.parquet"), pd.read_parquet(parent / "predictions.parquet")
    assert ours["row"].tolist() == theirs["row"].tolist() and ours["gold"].tolist() == theirs["gold"].tolist()
    assert (ours["predicted"] == theirs["predicted"]).mean() >= 0.9
    report, parent_report = outcome.report, json.loads((parent / "report.json").read_text())
    accuracy, parent_accuracy = report["test"]["metrics"]["accuracy"], parent_report["test"]["metrics"]["accuracy"]
    assert abs(accuracy - parent_accuracy) <= 0.05
    assert report["derived"]["parent_headline"] == parent_report["test"]["headline"]
    assert (ours["gold"] == ours["predicted"]).mean() == pytest.approx(accuracy)

    # every linear layer is int8 at load, and its weights take a quarter of the space they took
    predictor = Predictor(run_dir / "model")
    linear = [m for m in Predictor(parent / "model").model.modules() if isinstance(m, torch.nn.Linear)]
    assert linear and not any(isinstance(m, torch.nn.Linear) for m in predictor.model.modules())
    linear_mb = sum(m.weight.numel() * 4 for m in linear) / 2**20
    saved = report["derived"]["parent_weights_mb"] - report["derived"]["weights_mb"]
    assert 0.7 * linear_mb <= saved <= linear_mb

    # usable where a run is: listed, re-evaluated by `core eval` to the same figures
    assert run_dir.name in {r.run_id for r in runs.list_runs(parent.parent)}
    assert evaluate_run(run_dir)["metrics"]["accuracy"] == pytest.approx(accuracy)

    # int8 has no gradients: it is explained through its fp32 parent, and says so (issue #14)
    from core.explain import explainer_for_run, has_gradients

    explainer = explainer_for_run(run_dir)
    assert not has_gradients(predictor.model) and parent.name in explainer.through
    text = ours["text"].iloc[0][:300]
    assert explainer.explain(text).scores == explainer_for_run(parent).explain(text).scores


def test_onnx_export_predicts_the_parents_labels_and_its_predict_py_needs_no_torch(parent):
    outcome = compress_run(parent, "onnx")
    model_dir = outcome.run_dir / "model"
    assert {"model.onnx", "predict.py", "tokenizer.json", "config.json"} <= {p.name for p in model_dir.iterdir()}
    assert not list(model_dir.glob("*.safetensors"))  # one file holds the weights
    marker = json.loads((model_dir / "config.json").read_text())[compress.MARKER]
    assert marker["method"] == "onnx" and marker["export"]["float_max_abs_diff"] <= 1e-3

    # the parent's test rows; the labels and probabilities of the parent's model in fp32 (its own
    # predictions.parquet was written under the run's bf16 autocast on a bf16 CPU)
    ours, theirs = pd.read_parquet(outcome.run_dir / "predictions.parquet"), pd.read_parquet(parent / "predictions.parquet")
    assert ours["row"].tolist() == theirs["row"].tolist()
    fp32 = run_predictor(parent).predict_texts(ours["text"].tolist())  # the run's max_length, as evaluation
    assert ours["predicted"].tolist() == fp32["predicted"].tolist()
    assert np.allclose(ours["confidence"], fp32["confidence"], atol=1e-4)

    # predict.py: onnxruntime and the tokenizer alone, the Predictor's labels
    texts = ours["text"].tolist()[:6]
    script = ("import runpy, sys; sys.argv = ['predict.py', *sys.argv[1:]]; runpy.run_path('predict.py', run_name='__main__'); "
              "assert 'torch' not in sys.modules and 'transformers' not in sys.modules, 'predict.py loaded torch'")
    done = subprocess.run([sys.executable, "-I", "-c", script, *texts], cwd=model_dir, capture_output=True, text=True,
                          env={"PATH": os.environ["PATH"]})
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [line["predicted"] for line in lines] == run_predictor(outcome.run_dir).predict_texts(texts)["predicted"].tolist()
    assert [line["predicted"] for line in lines] == fp32["predicted"].tolist()[:6]


def test_onnx_int8_keeps_the_predictions_within_a_bound_at_a_third_of_the_size(parent):
    report = compress_run(parent, "onnx-int8").report
    parent_report = json.loads((parent / "report.json").read_text())
    assert abs(report["test"]["metrics"]["accuracy"] - parent_report["test"]["metrics"]["accuracy"]) <= 0.05
    ours = pd.read_parquet(parent.parent / report["run_id"] / "predictions.parquet")
    assert (ours["predicted"] == pd.read_parquet(parent / "predictions.parquet")["predicted"]).mean() >= 0.9
    # int8 matrices and embedding rows: about a quarter of the fp32 weights, and never more than a third
    assert report["derived"]["weights_mb"] <= report["derived"]["parent_weights_mb"] / 3


def test_a_student_starts_as_the_parent_without_the_dropped_layers(parent, tmp_path):
    kept = student.write_student(parent / "model", tmp_path / "s", lambda depth: student.layers_to_keep("top:1", depth))
    assert kept == {"parent_layers": 2, "kept_layers": [0]}
    assert json.loads((tmp_path / "s" / "config.json").read_text())["num_hidden_layers"] == 1
    ours, theirs = load_file(str(tmp_path / "s" / "model.safetensors")), load_file(str(parent / "model" / "model.safetensors"))
    assert not any(".layer.1." in k for k in ours)
    for name, value in ours.items():  # every weight the student has is the parent's, unchanged
        assert torch.equal(value, theirs[name]), name

    # and it computes what the parent computes with its top layer skipped
    from core import anatomy

    teacher, small = Predictor(parent / "model").model, Predictor(tmp_path / "s").model
    batch = Predictor(parent / "model").tokenizer(["Shares rose after the bank's results."], return_tensors="pt")
    with torch.no_grad(), anatomy.of(teacher).swapped(layers=[anatomy.of(teacher).layers[0]]):
        expected = teacher(**batch).logits
    with torch.no_grad():
        assert torch.allclose(small(**batch).logits, expected, atol=1e-5)


def test_layer_choices_are_parsed_and_bad_ones_refused():
    assert student.layers_to_keep("top:half", 6) == [0, 1, 2] and student.layers_to_keep("1, 3,5", 6) == [0, 2, 4]
    assert student.every_other_layer(6) == [1, 3, 5] and student.every_other_layer(2) == [1]
    for bad, why in (("top:6", "keep at least one"), ("7", "layers 0 to 5"), ("top:x", "write top:half")):
        with pytest.raises(compress.CompressionError, match=why):
            student.layers_to_keep(bad, 6)


def test_pruned_layers_are_fine_tuned_back_to_a_bounded_loss(parent):
    outcome = compress_run(parent, "prune-layers", options=["drop=top:1", "epochs=3"])
    config = json.loads((outcome.run_dir / "config.json").read_text())
    assert config["derived"]["options"] == {"drop": "top:1", "epochs": 3.0, "learning_rate": 0.0}
    assert config["strategy"]["kind"] == "full" and config["model"]["num_layers"] is None
    report = outcome.report
    assert report["model"]["layers"] == 1 and report["derived"]["method"] == "prune-layers"
    assert report["derived"]["speed"]["p50_ms"] > 0 and report["derived"]["parent_speed"]["p50_ms"] > 0
    # 5 BBC topics (chance 0.2): half the depth, 3 short epochs, and the student still reads the topics
    assert report["test"]["metrics"]["accuracy"] >= 0.6
    types = [e["type"] for e in map(json.loads, (outcome.run_dir / "events.jsonl").read_text().splitlines())]
    assert types.index("start") < types.index("step") < types.index("eval") and types[-1] == "end"


def test_distillation_loss_is_hintons():
    hard = torch.nn.functional.cross_entropy
    teacher = [torch.tensor([2.0, -1.0, 0.5]), torch.tensor([0.0, 3.0, -2.0])]
    labels = torch.tensor([0, 1])
    logits = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.5]], requires_grad=True)
    only_gold = student.DistillLoss(hard, teacher, "single_label", alpha=1.0, temperature=2.0)
    assert torch.allclose(only_gold(logits, labels, [0, 1]), hard(logits, labels))
    loss = student.DistillLoss(hard, teacher, "single_label", alpha=0.3, temperature=2.0)(logits, labels, [0, 1])
    p_teacher = torch.softmax(torch.stack(teacher) / 2, -1)
    kl = (p_teacher * (p_teacher.log() - torch.log_softmax(logits / 2, -1))).sum(-1).mean()
    assert torch.allclose(loss, 0.3 * hard(logits, labels) + 0.7 * 4 * kl)
    # a student that already is the teacher gets no pull from the soft term
    same = torch.stack(teacher).clone().requires_grad_()
    soft_only = student.DistillLoss(hard, teacher, "single_label", alpha=0.0, temperature=3.0)(same, labels, [0, 1])
    soft_only.backward()
    assert soft_only.item() == pytest.approx(0.0, abs=1e-6) and same.grad.abs().max() < 1e-6


def test_distill_trains_a_student_of_every_other_layer_on_teacher_logits_made_once(parent, monkeypatch):
    calls = []
    real = student.teacher_logits
    monkeypatch.setattr(student, "teacher_logits", lambda *a, **k: calls.append(1) or real(*a, **k))
    outcome = compress_run(parent, "distill", options={"epochs": 3})
    assert len(calls) == 1  # the teacher runs once, before the first step, never inside the loop
    report, parent_report = outcome.report, json.loads((parent / "report.json").read_text())
    assert report["model"]["layers"] == 1 and report["derived"]["parents"] == [parent.name]
    assert report["test"]["metrics"]["accuracy"] >= parent_report["test"]["metrics"]["accuracy"] - 0.15
    assert report["derived"]["weights_mb"] < report["derived"]["parent_weights_mb"]
    assert pd.read_parquet(outcome.run_dir / "predictions.parquet")["row"].tolist() == \
        pd.read_parquet(parent / "predictions.parquet")["row"].tolist()  # the parent's test split
    assert evaluate_run(outcome.run_dir)["metrics"]["accuracy"] == pytest.approx(report["test"]["metrics"]["accuracy"])


def test_compressing_is_refused_before_any_work(parent, tmp_path):
    root = parent.parent
    existing = set(root.iterdir())
    with pytest.raises(compress.CompressionError, match="unknown compression method 'int4'; the methods are: int8, onnx"):
        compress_run(parent, "int4")
    with pytest.raises(ConfigError, match="options.alpah: distill has no such option; did you mean 'alpha'"):
        compress_run(parent, "distill", options=["alpah=0.3"])
    with pytest.raises(ConfigError, match=r"options.temperature: -1(\.0)? must be greater than 0.0"):
        compress_run(parent, "distill", options={"temperature": -1})
    with pytest.raises(compress.CompressionError, match="the model has layers 0 to 1"):
        compress_run(parent, "prune-layers", options=["drop=5"])
    unfinished = runs.create_run_dir(root, "half", json.loads((parent / "config.json").read_text()))
    with pytest.raises(DerivedRunError, match=rf"run {unfinished.name} is queued, not completed"):
        compress_run(unfinished, "int8")
    existing.add(unfinished)
    assert set(root.iterdir()) == existing  # nothing was made for a refused request

    derived_dir = compress_run(parent, "int8", name="again").run_dir
    with pytest.raises(DerivedRunError, match=r"already compressed \(int8\); compress its parent run instead"):
        compress_run(derived_dir, "onnx")
    assert compress.refusal("onnx", {}, "prefix").startswith("a prefix-tuned model's prefix")
    assert "bottleneck adapters" in compress.refusal("distill", {}, "adapter")
    assert compress.refusal("onnx", {}, "adapter") is None and compress.refusal("int8", {}, "prefix") is None


def test_a_student_with_another_tokenizer_is_refused(tmp_path, tokenizer):
    from transformers import BertTokenizerFast

    (tmp_path / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "b"]))
    other = BertTokenizerFast(vocab_file=str(tmp_path / "vocab.txt"))
    with pytest.raises(compress.CompressionError, match="uses another tokenizer than the parent"):
        student.check_same_tokenizer(other, tokenizer, "tiny-bert")
    student.check_same_tokenizer(tokenizer, tokenizer, "same")


def test_the_worker_makes_a_queued_derived_run_and_cancels_a_queued_one(parent):
    root = parent.parent
    try:
        cancelled = derived.submit(parent, "int8", name="never")
        assert jobs.cancel(cancelled, root) == "cancelled before it started"
        run_id = derived.submit(parent, "int8", name="queued-int8", owner="ann")
        assert state(root, run_id) == "queued" and jobs.latest_job(root, run_id).kind == "derive"
        jobs.ensure_worker(root, idle_exit_s=30)
        wait_for(lambda: state(root, run_id) == "completed", "the derived run", worker_of(root))
        assert state(root, cancelled) == "cancelled" and jobs.owner_of(root, run_id) == "ann"
        report = json.loads((root / run_id / "report.json").read_text())
        assert report["derived"]["method"] == "int8" and report["derived"]["speed"]["batch32_texts_per_s"] > 0
    finally:
        jobs.stop_worker(root)


def test_variants_table_chains_lineage_and_marks_the_frontier(parent):
    distilled = compress_run(parent, "distill", options={"epochs": 1}, name="small").run_dir
    chained = compress_run(distilled, "int8", name="small-int8").run_dir
    rows = {r["run_id"]: r for r in deploy.variants(parent.parent, parent.name)}
    assert rows[parent.name]["method"] == "original" and rows[parent.name]["speedup"] == 1.0
    assert rows[chained.name]["method"] == "distill → int8" and rows[distilled.name]["method"] == "distill"
    assert rows[chained.name]["weights_mb"] < rows[distilled.name]["weights_mb"] < rows[parent.name]["weights_mb"]
    assert any(r["frontier"] for r in rows.values())

    table = [{"value": 0.9, "weights_mb": 50, "p50_ms": 5}, {"value": 0.9, "weights_mb": 20, "p50_ms": 3},
             {"value": 0.95, "weights_mb": 80, "p50_ms": 9}, {"value": 0.8, "weights_mb": 30, "p50_ms": 4},
             {"value": None, "weights_mb": 10, "p50_ms": 1}]
    deploy.mark_frontier(table)
    assert [r["frontier"] for r in table] == [False, True, True, False, False]


def test_cli_compress_several_methods_prints_the_variants_table(parent, capsys):
    from core.__main__ import main

    assert main(["compress", str(parent), "--methods", "int8,onnx-int8"]) == 0
    lines = capsys.readouterr().out.splitlines()
    header, rows = lines[0].split(), [line.split() for line in lines[1:]]
    assert header[:4] == ["variant", "run", "f1_macro", "change"] and "frontier" in header
    made = {r.derived_method: r for r in runs.list_runs(parent.parent) if r.parents == (parent.name,)}
    for method in ("int8", "onnx-int8"):
        row = next(r for r in rows if r[1] == made[method].run_id)
        assert row[0] == method and float(row[2]) == pytest.approx(made[method].headline_value, abs=1e-4)
    assert rows[0][:2] == ["original", parent.name]
    assert main(["compress", str(parent), "--method", "int4"]) == 2
    assert "unknown compression method 'int4'" in capsys.readouterr().err


def test_ner_exports_to_the_same_tags_and_distils_on_token_logits(tmp_path):
    config = quick_config(tmp_path, name="ner", task="token", data={"source": "sample:wnut16", "max_train_samples": 200,
                                                                    "max_eval_samples": 100},
                          train={"epochs": 2, "learning_rate": 3e-4, "metric_for_best": "f1"})
    ner = run_training(config).run_dir
    exported = compress_run(ner, "onnx").run_dir
    sentences = [s.split() for s in pd.read_parquet(ner / "predictions.parquet")["text"].tolist()[:20]]
    assert Predictor(exported / "model").predict_tokens(sentences) == Predictor(ner / "model").predict_tokens(sentences)
    script = "import runpy, sys; sys.argv = ['predict.py', *sys.argv[1:]]; runpy.run_path('predict.py', run_name='__main__')"
    done = subprocess.run([sys.executable, "-I", "-c", script, *[" ".join(s) for s in sentences[:4]]], cwd=exported / "model",
                          capture_output=True, text=True, env={"PATH": os.environ["PATH"]})
    assert done.returncode == 0, done.stderr
    assert [json.loads(line)["tags"] for line in done.stdout.splitlines()] == Predictor(ner / "model").predict_tokens(sentences[:4])

    distilled = compress_run(ner, "distill", options={"epochs": 1}).report
    assert distilled["model"]["layers"] == 1 and distilled["test"]["headline"]["name"] == "f1"
    assert distilled["test"]["metrics"]["token_accuracy"] > 0.8  # most tokens are O, and the student learnt that much
    losses = [e["loss"] for e in map(json.loads, (tmp_path / distilled["run_id"] / "events.jsonl").read_text().splitlines())
              if e["type"] == "step"]
    assert losses and all(np.isfinite(losses))


def test_missing_onnxruntime_and_a_full_disk_are_said_and_the_parent_is_untouched(parent, monkeypatch):
    from core import onnx_export
    from core.recipe import RunFailed

    root, before = parent.parent, fingerprint(parent)
    existing = set(root.iterdir())
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if it were not installed
    with pytest.raises(compress.CompressionError, match="onnxruntime is not installed.*pip install onnxruntime"):
        compress_run(parent, "onnx-int8")
    assert set(root.iterdir()) == existing  # refused before any work
    monkeypatch.undo()

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device", str(root / "x" / "model.onnx"))

    monkeypatch.setattr(onnx_export, "export", full_disk)
    with pytest.raises(RunFailed, match=r"onnx failed: Could not write the derived run \(No space left on device") as failed:
        compress_run(parent, "onnx")
    assert f"The run it was made from ({parent.name}) is unchanged" in str(failed.value)
    status = runs.read_status(failed.value.run_dir)
    assert status["state"] == "failed" and "No space left on device" in status["error"]
    assert not (failed.value.run_dir / "model").exists() and not (failed.value.run_dir / "model.tmp").exists()
    assert fingerprint(parent) == before


def test_an_onnx_variant_answers_over_http(parent):
    from fastapi.testclient import TestClient

    from core import serve

    variant = next((r for r in runs.list_runs(parent.parent) if r.derived_method == "onnx" and r.state == "completed"), None)
    run_dir = parent.parent / variant.run_id if variant else compress_run(parent, "onnx").run_dir
    texts = ["Shares in the bank rose after its results.", "The striker scored twice in the final."]
    with TestClient(serve.create_app(run_dir)) as client:
        answer = client.post("/predict", json={"texts": texts})
    assert answer.status_code == 200, answer.text
    assert [p["label"] for p in answer.json()["predictions"]] == run_predictor(run_dir).predict_texts(texts)["predicted"].tolist()
