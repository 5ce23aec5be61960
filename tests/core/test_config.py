import dataclasses

import pytest

from core.config import (
    ConfigError,
    DataConfig,
    RunConfig,
    StrategyConfig,
    TrainConfig,
    apply_overrides,
    field_specs,
    from_dict,
    load_config,
    parse_class_weights,
)


def test_defaults_validate_and_round_trip_through_yaml(tmp_path):
    config = RunConfig()
    path = tmp_path / "run.yaml"
    path.write_text(config.to_yaml())
    assert load_config(path) == config


def test_unknown_key_names_the_key_and_suggests_the_closest():
    with pytest.raises(ConfigError) as err:
        from_dict({"train": {"epoch": 2}})
    assert err.value.field == "train.epoch"
    assert "did you mean 'epochs'" in str(err.value)
    with pytest.raises(ConfigError, match="did you mean 'strategy'"):
        from_dict({"strategi": {}})


@pytest.mark.parametrize(
    ("section", "values", "field"),
    [
        (TrainConfig, {"epochs": 0}, "train.epochs"),
        (TrainConfig, {"batch_size": 0}, "train.batch_size"),
        (TrainConfig, {"scheduler": "step"}, "train.scheduler"),
        (TrainConfig, {"learning_rate": -1.0}, "train.learning_rate"),
        (DataConfig, {"validation_split": 0.7}, "data.validation_split"),
        (StrategyConfig, {"layer_decay": 0.0}, "strategy.layer_decay"),
        (StrategyConfig, {"kind": "magic"}, "strategy.kind"),
    ],
)
def test_out_of_range_values_are_refused_naming_the_field(section, values, field):
    with pytest.raises(ConfigError) as err:
        section(**values)
    assert err.value.field == field


def test_type_errors_say_what_was_expected():
    with pytest.raises(ConfigError, match="expected int"):
        TrainConfig(batch_size="big")


def test_overrides_parse_yaml_values_and_coerce_numbers():
    raw = apply_overrides({}, ["train.epochs=2", "train.learning_rate=3e-5", "data.max_train_samples=500", "name=x"])
    config = from_dict(raw)
    assert config.train.epochs == 2.0 and config.train.learning_rate == pytest.approx(3e-5)
    assert config.data.max_train_samples == 500 and config.name == "x"
    with pytest.raises(ConfigError, match="section.key=value"):
        apply_overrides({}, ["train.epochs"])


def test_configs_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        RunConfig().train.epochs = 5  # type: ignore[misc]


def test_class_weights_parse_and_refuse_malformed():
    assert parse_class_weights("pos=2, neg=0.5") == {"pos": 2.0, "neg": 0.5}
    with pytest.raises(ConfigError, match="label=positive number"):
        StrategyConfig(class_weights="pos:2")
    with pytest.raises(ConfigError):
        StrategyConfig(class_weights="pos=-1")


def test_field_specs_carry_help_and_bounds_for_forms():
    specs = {s["name"]: s for s in field_specs(TrainConfig)}
    assert specs["epochs"]["help"] and specs["batch_size"]["min"] == 1
    assert specs["scheduler"]["choices"] == ("linear", "cosine", "constant")
    strategy = {s["name"]: s for s in field_specs(StrategyConfig)}
    assert strategy["freeze_layers"]["strategies"] == ("freeze",)


def test_bad_run_name_is_refused():
    with pytest.raises(ConfigError, match="name"):
        RunConfig(name="a b/c")
