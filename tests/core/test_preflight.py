"""Pre-flight: the strategy plan the run would build and a time estimate from the real loop, for every strategy."""

from __future__ import annotations

import dataclasses
import json

import pytest

from core.config import STRATEGY_KINDS, DataConfig, ModelConfig, RunConfig, StrategyConfig, TrainConfig
from core.loop import plan_steps
from core.preflight import PreflightError, cli_error, preflight, preflight_in_subprocess, preflight_strategies
from core.strategy_registry import spec

pytestmark = pytest.mark.slow


def config_for(kind: str, root, **data) -> RunConfig:
    return RunConfig(name=f"pf-{kind}", data=DataConfig(source="sample:rotten_tomatoes", max_train_samples=96, max_eval_samples=16, **data),
                     model=ModelConfig(num_layers=2, max_length=32), strategy=StrategyConfig(kind=kind, freeze_layers=1),
                     train=TrainConfig(batch_size=8, epochs=2, learning_rate=2e-4), output_dir=str(root))


def test_preflight_works_for_every_strategy(tmp_path):
    config = config_for("full", tmp_path)
    rows = preflight_strategies(config, batches=2)  # one data, tokenizer and model load for all twelve
    assert [row["kind"] for row in rows] == list(STRATEGY_KINDS)
    for row in rows:
        kind = row["kind"]
        assert "error" not in row, row
        assert 0 < row["trainable_params"] <= row["total_params"]
        assert sum(g["params"] for g in row["groups"]) == row["trainable_params"] or kind == "gradual_unfreeze"
        # the estimate is timed on the loop's own optimizer steps, and scaled to the whole training split
        assert row["measured_steps"] == 2
        assert row["train_rows"] == 96 and (row["steps_per_epoch"], row["total_steps"]) == plan_steps(96, config.train)
        assert row["epoch_seconds"] > 0 and row["seconds_per_step"] > 0
        assert row["epoch_seconds"] == pytest.approx(row["seconds_per_step"] / 8 * 96, rel=1e-6)
        # the config's rate for its own strategy and for those a comparison runs at the base rate; the others' defaults
        default = spec(kind).default_learning_rate
        assert row["learning_rate"] == (2e-4 if kind == "full" or default is None else default)
    by_kind = {row["kind"]: row for row in rows}
    assert by_kind["full"]["trainable_params"] == by_kind["full"]["total_params"]
    assert by_kind["lora"]["trainable_percent"] < 5
    assert by_kind["head_only"]["trainable_params"] < by_kind["bitfit"]["trainable_params"] < by_kind["freeze"]["trainable_params"]


def test_one_strategys_refusal_does_not_hide_the_others(tmp_path):
    config = dataclasses.replace(config_for("full", tmp_path), strategy=StrategyConfig(kind="full", freeze_layers=2))
    rows = {row["kind"]: row for row in preflight_strategies(config, ["freeze", "lora"], batches=1)}
    assert "only 2 encoder layers" in rows["freeze"]["error"] and rows["lora"]["trainable_params"] > 0


def test_preflight_of_one_strategy_matches_its_row_and_leaves_no_run_behind(tmp_path):
    config = config_for("adalora", tmp_path)
    single = preflight(config, batches=1)
    (row,) = preflight_strategies(config, ["adalora"], batches=1)
    assert (single["trainable_params"], single["groups"]) == (row["trainable_params"], row["groups"])
    assert single["measured_steps"] == 1 and single["epoch_seconds"] > 0
    assert not [p for p in tmp_path.iterdir() if not p.name.startswith(".")], "pre-flight wrote a run directory"


def test_preflight_subprocess_returns_the_facts_and_says_what_is_wrong(tmp_path):
    facts = preflight_in_subprocess(config_for("adalora", tmp_path))
    assert facts["kind"] == "adalora" and facts["trainable_params"] > 0 and facts["measured_steps"] >= 1
    json.dumps(facts)  # plain JSON all the way to the page
    bad = dataclasses.replace(config_for("full", tmp_path), data=DataConfig(source=str(tmp_path / "missing.csv")))
    with pytest.raises(PreflightError) as info:
        preflight_in_subprocess(bad)
    assert "missing.csv" in str(info.value) and "Traceback" not in str(info.value)


def test_cli_error_reads_the_last_error_block_past_warnings():
    stderr = "FutureWarning: something\n  warnings.warn(\nerror: data.csv, row 7: the label is empty.\n       Fix: fill it in.\n"
    assert cli_error(stderr) == "data.csv, row 7: the label is empty. Fix: fill it in."
    assert cli_error("just a warning\n") is None
