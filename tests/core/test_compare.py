"""Strategy comparison end to end on a tiny real run, and its CLI."""

from __future__ import annotations

import csv
import json

import pytest

from core import runs
from core.compare import DEFAULT_LEARNING_RATES, compare, learning_rate_for, resolve_seeds, summarize
from core.config import ConfigError, RunConfig, TrainConfig
from tests.support.tiny import tiny_config


@pytest.mark.slow
def test_compare_two_strategies_end_to_end(runs_root, tmp_path, capsys):
    """Through the CLI: python -m core compare --config base.yaml --strategies head_only,lora."""
    from core.__main__ import main
    from core.compare import ComparisonResult

    base = tiny_config(runs_root, name="cmp", train_rows=48, eval_rows=32)
    (tmp_path / "base.yaml").write_text(base.to_yaml())
    code = main(["compare", "--config", str(tmp_path / "base.yaml"), "--strategies", "head_only,lora", "--seeds", "1",
                 "--set", "train.log_every=2"])
    printed = capsys.readouterr().out
    assert code == 0 and "head_only" in printed and "lr*" in printed
    (directory,) = (runs_root / "comparisons").iterdir()
    saved = json.loads((directory / "comparison.json").read_text())
    result = ComparisonResult(saved["id"], directory, saved["rows"], saved["runs"])

    assert [r["strategy"] for r in result.rows] == ["head_only", "lora"]
    for row in result.rows:
        assert row["runs"] == 1 and row["metric"] == "f1_macro" and 0.0 <= row["mean"] <= 1.0 and row["std"] == 0.0
        assert row["learning_rate"] == DEFAULT_LEARNING_RATES[row["strategy"]] and row["lr_source"] == "default"
        assert row["wall_s"] > 0 and row["samples_per_s"] > 0 and row["saved_model_mb"] > 0 and row["peak_memory_mb"] > 0
        report = runs.read_json(runs_root / row["run_ids"] / runs.REPORT)  # each strategy is a normal run
        assert report["strategy"]["kind"] == row["strategy"]
        assert report["strategy"]["trainable_percent"] == row["trainable_percent"]
        config = runs.read_json(runs_root / row["run_ids"] / runs.CONFIG)
        assert config["data"]["seed"] == base.data.seed and config["train"]["learning_rate"] == row["learning_rate"]
    probe, lora = result.rows
    assert probe["trainable_percent"] < lora["trainable_percent"] < 1.0

    assert len(saved["runs"]) == 2 and saved["base_config"]["train"]["log_every"] == 2
    with (result.directory / "comparison.csv").open() as f:
        table = list(csv.DictReader(f))
    assert [r["strategy"] for r in table] == ["head_only", "lora"] and float(table[1]["learning_rate"]) == 1e-3
    text = result.table()
    assert "head_only" in text and "lora" in text and "1e-03*" in text


def test_learning_rates_default_pinned_or_base():
    base = RunConfig(train=TrainConfig(learning_rate=4e-5))
    assert learning_rate_for("full", base, {}, False) == (4e-5, "base")
    assert learning_rate_for("lora", base, {}, False) == (DEFAULT_LEARNING_RATES["lora"], "default")
    assert learning_rate_for("lora", base, {"lora": 3e-4}, False) == (3e-4, "pinned")
    assert learning_rate_for("adapter", base, {}, True) == (4e-5, "base")
    assert set(DEFAULT_LEARNING_RATES) == set(__import__("core.config").config.STRATEGY_KINDS)


def test_seeds_and_summary():
    base = RunConfig(train=TrainConfig(seed=7))
    assert resolve_seeds(base, 3) == [7, 8, 9] and resolve_seeds(base, [1, 1, 5]) == [1, 5]
    with pytest.raises(ConfigError, match="seeds"):
        resolve_seeds(base, 0)
    common = {"learning_rate": 1e-3, "lr_source": "default", "metric": "f1_macro", "trainable_percent": 1.0,
              "train_s": 1.0, "samples_per_s": 10.0, "peak_memory_mb": 5.0, "saved_model_mb": 2.0, "wall_s": 2.0}
    records = [{"strategy": "lora", "seed": s, "value": v, "run_id": f"r{s}", **common} for s, v in ((1, 0.6), (2, 0.8))]
    records.append({"strategy": "prefix", "seed": 1, "run_id": "r3", "state": "failed", "error": "refused", **common})
    lora, prefix = summarize(records)
    assert lora["mean"] == pytest.approx(0.7) and lora["std"] == pytest.approx(0.1414, abs=1e-4) and lora["runs"] == 2
    assert prefix["mean"] is None and prefix["runs"] == 0 and prefix["errors"] == "refused"


def test_unknown_strategy_is_refused_before_any_run(runs_root):
    with pytest.raises(ConfigError, match="unknown strategy 'lorra'.*choose from"):
        compare(RunConfig(output_dir=str(runs_root)), ["full", "lorra"])
    assert not (runs_root / "comparisons").exists()


def test_cli_rejects_a_bad_lr_pin(runs_root, capsys):
    from core.__main__ import main

    assert main(["--root", str(runs_root), "compare", "--strategies", "full", "--lr", "lora:1e-3"]) == 2
    assert "--lr" in capsys.readouterr().err
