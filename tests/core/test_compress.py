"""Compression (issue #13): a derived run is a run, evaluated on its parent's split; int8 keeps the parent's predictions within a bound."""

import hashlib
import json

import pandas as pd
import pytest
import torch

from core import compress, runs
from core.derived import DerivedRunError, compress_run
from core.evaluate import evaluate_run
from core.inference import Predictor
from core.recipe import run_training
from tests.core.test_recipe import quick_config

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


def test_compressing_is_refused_before_any_work(parent, tmp_path):
    root = parent.parent
    existing = set(root.iterdir())
    with pytest.raises(compress.CompressionError, match="unknown compression method 'int4'; the methods are: int8"):
        compress_run(parent, "int4")
    unfinished = runs.create_run_dir(root, "half", json.loads((parent / "config.json").read_text()))
    with pytest.raises(DerivedRunError, match=rf"run {unfinished.name} is queued, not completed"):
        compress_run(unfinished, "int8")
    existing.add(unfinished)
    assert set(root.iterdir()) == existing  # nothing was made for a refused request

    derived = compress_run(parent, "int8", name="again").run_dir
    with pytest.raises(DerivedRunError, match="is already int8; compress its parent instead"):
        compress_run(derived, "int8")


def test_cli_compress_prints_the_variant_beside_its_parent(parent, capsys):
    from core.__main__ import main

    assert main(["compress", str(parent), "--method", "int8", "--name", "cli-int8"]) == 0
    out = capsys.readouterr().out
    header, parent_line, int8_line = out.splitlines()
    derived = next(r for r in runs.list_runs(parent.parent) if r.name == "cli-int8")
    assert derived.derived_method == "int8" and derived.parents == (parent.name,)
    assert f"{derived.headline_name} (test)" in header and "weights MB" in header
    assert parent_line.split()[:2] == ["parent", parent.name] and int8_line.split()[:2] == ["int8", derived.run_id]
    assert float(int8_line.split()[2]) == pytest.approx(derived.headline_value, abs=1e-4)
