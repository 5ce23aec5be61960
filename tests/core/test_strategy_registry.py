"""The strategy registry is the one place of each strategy's facts; config, builders, compare and forms read it."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import fields

import pytest

from core import strategy_registry as registry
from core.config import STRATEGY_KINDS, ConfigError, StrategyConfig, TrainConfig, field_specs
from tests.support.paths import REPO

# Which options each kind showed before the registry held them (StrategyConfig field metadata then).
OPTIONS_BEFORE = {
    "freeze_layers": ("freeze",), "layer_decay": ("llrd",), "embeddings_lr": ("discriminative",),
    "encoder_lr": ("discriminative",), "head_lr": ("discriminative",), "unfreeze_every": ("gradual_unfreeze",),
    "unfreeze_every_steps": ("gradual_unfreeze",), "lora_r": ("lora", "adalora"), "lora_alpha": ("lora", "adalora"),
    "lora_dropout": ("lora", "adalora"), "target_modules": ("lora", "adalora", "ia3"), "adalora_target_r": ("adalora",),
    "adalora_orth_reg_weight": ("adalora",), "prefix_tokens": ("prefix",), "adapter_kind": ("adapter",),
    "reduction_factor": ("adapter",),
}


def test_config_choices_and_option_metadata_come_from_the_registry():
    assert STRATEGY_KINDS == registry.KINDS == tuple(registry.STRATEGIES)
    assert {s["name"]: s["strategies"] for s in field_specs(StrategyConfig) if "strategies" in s} == OPTIONS_BEFORE
    config_fields = {f.name for f in fields(StrategyConfig)}
    for spec in registry.STRATEGIES.values():
        assert set(spec.options) <= config_fields, spec.kind
    with pytest.raises(ConfigError, match="strategy.kind"):
        StrategyConfig(kind="lorra")


def test_every_kind_has_a_builder_and_unknown_kinds_are_refused():
    from core.strategies import STRATEGIES

    assert list(STRATEGIES) == list(registry.KINDS)
    for spec in registry.STRATEGIES.values():
        assert callable(spec.resolve()), spec.builder
    with pytest.raises(registry.UnknownStrategyError, match="'lorra'.*full, freeze"):
        registry.spec("lorra")


def test_learning_rates_for_comparisons_and_the_form():
    from core.compare import DEFAULT_LEARNING_RATES

    assert {k: s.default_learning_rate for k, s in registry.STRATEGIES.items()} == DEFAULT_LEARNING_RATES
    assert DEFAULT_LEARNING_RATES["lora"] == 1e-3 and DEFAULT_LEARNING_RATES["full"] is None
    assert registry.spec("full").form_learning_rate == TrainConfig().learning_rate == 5e-5
    assert registry.spec("prefix").form_learning_rate == 1e-2


def test_form_help_is_the_registry_summary():
    from ui.forms import STRATEGY_HELP

    assert {k: s.summary for k, s in registry.STRATEGIES.items()} == STRATEGY_HELP
    assert STRATEGY_HELP["bitfit"].startswith("Train only the bias terms")


def test_importing_the_registry_and_config_loads_no_torch():
    code = ("import sys, core.strategy_registry, core.config, core.model_format\n"
            "heavy = sorted({'torch', 'transformers', 'peft'} & set(sys.modules))\n"
            "assert not heavy, heavy\n")
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)
