"""Form <-> config mapping: the dashboard's forms come from the config metadata and round-trip exactly."""

from __future__ import annotations

import pandas as pd
import pytest

from core.config import ConfigError, DataConfig, RunConfig, StrategyConfig, TrainConfig, field_specs, load_config
from ui import forms
from ui.compare import filter_runs
from ui.runview import short_label


def spec(cls, name):
    return next(s for s in field_specs(cls) if s["name"] == name)


@pytest.mark.parametrize("cls,name,kind", [
    (TrainConfig, "epochs", "float"), (TrainConfig, "batch_size", "int"), (TrainConfig, "scheduler", "choice"),
    (DataConfig, "max_train_samples", "optional_int"), (DataConfig, "text_column", "text"),
    (StrategyConfig, "target_modules", "list"),
])
def test_widget_kind_follows_the_declared_type(cls, name, kind):
    assert forms.widget_kind(spec(cls, name)) == kind


def test_number_bounds_come_from_the_metadata():
    assert forms.number_bounds(spec(TrainConfig, "batch_size")) == {"min_value": 1, "max_value": 4096}
    lr = forms.number_bounds(spec(TrainConfig, "learning_rate"))
    assert 0 < lr["min_value"] < 1e-6 and lr["max_value"] == 1.0 and lr["format"] == "%.2e"  # exclusive_min=0
    assert forms.number_bounds(spec(TrainConfig, "warmup_ratio"))["max_value"] == 0.5


def test_only_the_chosen_strategys_options_are_shown():
    lora = {s["name"] for s in forms.strategy_fields("lora")}
    assert {"lora_r", "lora_alpha", "lora_dropout", "target_modules"} <= lora
    assert "layer_decay" not in lora and "kind" not in lora
    assert {"class_weights", "label_smoothing"} <= lora  # options of every strategy
    assert "layer_decay" in {s["name"] for s in forms.strategy_fields("llrd")}
    assert {s["name"] for s in forms.strategy_fields("full")} == {"class_weights", "label_smoothing"}


def test_values_round_trip_through_the_config():
    config = load_config("examples/rotten_tomatoes.yaml", ["strategy.target_modules=[query, value]", "model.num_layers=2"])
    values = forms.config_to_values(config)
    assert values["cfg.strategy.target_modules"] == "query, value" and values["cfg.model.num_layers"] == 2
    assert forms.values_to_config(values) == config


def test_empty_optional_text_becomes_none_and_errors_name_the_field():
    values = forms.defaults() | {"cfg.data.text_column": "  ", "cfg.data.max_train_samples": None}
    config = forms.values_to_config(values)
    assert config.data.text_column is None and config.data.max_train_samples is None
    with pytest.raises(ConfigError, match="train.batch_size"):
        forms.values_to_config(forms.defaults() | {"cfg.train.batch_size": 0})
    with pytest.raises(ConfigError, match="name"):
        forms.values_to_config(forms.defaults() | {"cfg.run.name": "has space"})


def test_a_comparison_run_differs_only_in_strategy_and_name():
    base = RunConfig(name="rt")
    other = forms.with_strategy(base, "bitfit")
    assert other.strategy.kind == "bitfit" and other.name == "rt-bitfit"
    assert other.train == base.train and other.data == base.data


def test_the_yaml_for_download_loads_back_and_follows_tuneboard_home(tmp_path):
    config = RunConfig(name="rt", output_dir="/somewhere/runs")
    text = forms.yaml_for_download(config)
    (tmp_path / "run.yaml").write_text(text)
    assert load_config(tmp_path / "run.yaml") == config.replace(output_dir="")
    assert forms.cli_command(config) == "python -m core train --config run.yaml"


def test_the_yaml_lists_only_what_applies_to_the_strategy_and_task(tmp_path):
    import dataclasses

    import yaml

    config = RunConfig(name="rt", strategy=dataclasses.replace(RunConfig().strategy, kind="lora", lora_r=4))
    raw = yaml.safe_load(forms.yaml_for_download(config))
    assert {"lora_r", "lora_alpha", "lora_dropout"} <= set(raw["strategy"]) and raw["strategy"]["lora_r"] == 4
    assert not {"freeze_layers", "prefix_tokens", "reduction_factor", "adapter_kind"} & set(raw["strategy"])
    assert "multi_label_threshold" not in raw["train"]  # single-label: the threshold means nothing
    (tmp_path / "run.yaml").write_text(forms.yaml_for_download(config))
    assert load_config(tmp_path / "run.yaml") == config.replace(output_dir="")  # what was left out is the default
    multi = config.replace(task="multi_label")
    assert "multi_label_threshold" in yaml.safe_load(forms.yaml_for_download(multi))["train"]
    assert [s["name"] for s in forms.train_fields("single_label")].count("multi_label_threshold") == 0
    assert "multi_label_threshold" in [s["name"] for s in forms.train_fields("multi_label")]


def test_an_uploaded_file_is_named_by_its_own_name_in_the_yaml(tmp_path):
    import dataclasses

    import yaml

    from core.uploads import display_name, save_upload

    root = tmp_path / "runs"
    saved = save_upload(root, "../../party statements.csv", b"text,label\nhello,a\n")
    assert saved.parent.parent == root / ".uploads" / "local" and saved.name == "party statements.csv"  # no way out of its folder
    config = RunConfig(name="rt", data=dataclasses.replace(RunConfig().data, source=str(saved)))
    text = forms.yaml_for_download(config, str(root))
    assert yaml.safe_load(text)["data"]["source"] == "party statements.csv"
    assert text.startswith("# data.source: the file you uploaded")
    assert display_name(str(saved), root) == "party statements.csv (uploaded)"
    assert display_name("sample:bbc_news", root) == "sample:bbc_news"


def test_the_compare_table_says_shared_facts_once_and_keeps_row_order():
    from ui.compare import display_table

    shown = pd.DataFrame({"run": ["20261123-113215-rt-fe1d", "20261123-120000-rt-aa00"], "name": ["rt", "rt"],
                          "task": ["single_label"] * 2, "strategy": ["full", "lora"], "model": ["bundled:minilm-l6"] * 2,
                          "state": ["completed"] * 2, "metric": ["f1_macro", "accuracy"], "value": [0.8, 0.7],
                          "created": ["2026-11-23 11:32", "2026-11-23 12:00"]})
    table, shared = display_table(shown)
    assert shared == {"task": "single_label", "model": "bundled:minilm-l6"}  # metric differs: it stays a column
    assert list(table.columns) == ["run", "strategy", "state", "metric", "value"]
    assert table["run"].tolist() == ["rt · 11:32 · fe1d", "rt · 12:00 · aa00"]  # same order: a selection indexes shown
    one, shared_one = display_table(shown.head(1))
    assert shared_one == {} and "task" in one.columns  # one run: nothing to factor out
    derived = shown.assign(made_from=[None, "int8 of 20261123-113215-rt-fe1d"])
    assert display_table(derived)[0]["made_from"].fillna("").tolist() == ["", "int8 of 20261123-113215-rt-fe1d"]
    assert "made_from" not in display_table(shown.assign(made_from=None))[0].columns  # no derived run: no empty column


def test_filter_runs_and_short_labels():
    table = pd.DataFrame({"run": ["20261123-113215-rt-fe1d", "x-2"], "name": ["rt", "ner"], "task": ["single_label", "token"],
                          "strategy": ["full", "lora"], "state": ["completed", "failed"]})
    assert filter_runs(table, tasks=["token"])["run"].tolist() == ["x-2"]
    assert filter_runs(table, text="FE1D")["name"].tolist() == ["rt"]
    assert filter_runs(table, strategies=["full"], states=["failed"]).empty
    assert short_label("20261123-113215-rt-fe1d", "rt") == "rt · 11:32 · fe1d"
    assert short_label("odd", "rt") == "odd"
