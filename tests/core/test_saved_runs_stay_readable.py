"""Runs saved by an older Tuneboard still load, list, evaluate and predict with today's code.

The fixture (tests/fixtures/legacy_run, see its README) is a real run directory written by commit 1957b59
with a tiny random BERT. Each test works on a copy: the checked-in bytes are the old format and stay so.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.support.paths import FIXTURES, REPO

pytestmark = pytest.mark.slow

FIXTURE = FIXTURES / "legacy_run"
RUN_IDS = sorted(p.name for p in FIXTURE.iterdir() if p.is_dir())


@pytest.fixture
def legacy_run(runs_root) -> Path:
    """A copy of the old run directory inside a fresh runs root (TUNEBOARD_HOME points there)."""
    runs_root.mkdir(parents=True)
    for run_id in RUN_IDS:
        shutil.copytree(FIXTURE / run_id, runs_root / run_id)
    return runs_root / RUN_IDS[0]


def old_report(run_dir: Path) -> dict:
    return json.loads((run_dir / "report.json").read_text())


def test_the_fixture_is_one_small_run_without_resume_state():
    assert RUN_IDS == ["20261202-211038-legacy-full-bb0a"]
    run = FIXTURE / RUN_IDS[0]
    assert not (run / "checkpoints").exists()
    assert sum(f.stat().st_size for f in FIXTURE.rglob("*") if f.is_file()) < 3 * 2**20


def test_old_config_loads(legacy_run):
    from core.recipe import load_run_config

    config = load_run_config(legacy_run)
    assert config.task == "single_label"
    assert config.strategy.kind == "full"
    assert config.data.source == "sample:rotten_tomatoes"
    assert (config.data.max_train_samples, config.data.max_eval_samples) == (64, 32)
    assert config.model.max_length == 32
    # The model it trained from was a temporary folder, gone since: nothing below may need it.
    assert config.model.name == "/tmp/tb-fixture-root/tiny-bert"


def test_listed_as_completed_with_its_headline(legacy_run):
    from core.runs import list_runs

    (summary,) = list_runs(legacy_run.parent)
    headline = old_report(legacy_run)["test"]["headline"]
    assert summary.run_id == legacy_run.name
    assert summary.state == "completed" and summary.error is None
    assert (summary.task, summary.strategy) == ("single_label", "full")
    assert summary.headline_name == headline["name"] == "f1_macro"
    assert summary.headline_value == pytest.approx(headline["value"])


def test_the_dashboard_reads_it(legacy_run):
    from ui.runview import load_run

    view = load_run(legacy_run.parent, legacy_run.name)
    assert view.state == "completed"
    assert not view.problem
    assert view.report is not None and view.report["labels"] == ["fresh", "rotten"]


def test_eval_reproduces_the_stored_test_metrics(legacy_run):
    from core.evaluate import evaluate_run

    stored = old_report(legacy_run)["test"]
    report = evaluate_run(legacy_run)
    assert report["num_examples"] == stored["num_examples"] == 32
    assert report["metrics"]["accuracy"] == pytest.approx(stored["metrics"]["accuracy"], abs=1e-6)
    for name, value in report["metrics"].items():
        assert value == pytest.approx(stored["metrics"][name], abs=1e-6), name
    assert report["confusion_matrix"] == stored["confusion_matrix"]
    assert report["headline"] == stored["headline"]


def test_predictor_loads_the_old_model_and_reproduces_its_predictions(legacy_run):
    from core.inference import Predictor

    predictor = Predictor(legacy_run / "model", max_length=32)
    assert predictor.task == "single_label"
    assert predictor.names == ["fresh", "rotten"]
    stored = pd.read_parquet(legacy_run / "predictions.parquet")
    new = predictor.predict_texts(stored["text"].tolist())
    assert new["predicted"].tolist() == stored["predicted"].tolist()
    # The stored probabilities came from train.precision=auto (bf16 autocast on a CPU with native bf16),
    # the Predictor runs fp32: they agree to ~1e-5, not to the last bit.
    np.testing.assert_allclose(new[["p_fresh", "p_rotten"]].to_numpy(), np.stack(stored["probabilities"].to_numpy()),
                               atol=1e-3)


def test_predict_a_file_with_the_old_run(legacy_run, tmp_path):
    from core.evaluate import predict_file

    data = tmp_path / "new_reviews.csv"
    texts = ["A warm, funny and generous film.", "Dull, overlong and badly acted.", "It exists.",
             "The best thing I have seen this year.", "I walked out after twenty minutes."]
    pd.DataFrame({"review_id": range(101, 106), "text": texts}).to_csv(data, index=False)
    out = tmp_path / "out" / "predictions.csv"
    written = predict_file(legacy_run, data, out)
    assert written["rows"] == len(texts)
    table = pd.read_csv(out)
    assert len(table) == len(texts)
    assert table["review_id"].tolist() == list(range(101, 106))  # the file's own columns stay
    assert set(table["predicted"]) <= {"fresh", "rotten"}
    np.testing.assert_allclose(table["p_fresh"] + table["p_rotten"], 1.0, atol=1e-5)


def test_cli_eval_of_the_old_run_exits_0(legacy_run):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TUNEBOARD_HOME": str(legacy_run.parent)}
    proc = subprocess.run([sys.executable, "-m", "core", "eval", str(legacy_run)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    printed = json.loads(proc.stdout)
    stored = old_report(legacy_run)["test"]["metrics"]
    assert printed["metrics"]["accuracy"] == pytest.approx(stored["accuracy"], abs=1e-6)
