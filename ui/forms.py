"""Form <-> config mapping. The dashboard's forms are generated from ``core.config.field_specs`` so the
UI, the YAML and the CLI share one set of names, help texts and bounds.

Widget keys are ``cfg.<section>.<field>``; a draft config is the dict of those values. Nothing here
imports streamlit.
"""

from __future__ import annotations

import dataclasses
import shlex
from typing import Any

from core.config import SECTIONS, STRATEGY_KINDS, RunConfig, StrategyConfig, field_specs, from_dict

STRATEGY_HELP = {
    "full": "Train every weight. The quality reference; the most memory and time.",
    "freeze": "Freeze the embeddings and the bottom N layers; train the rest.",
    "head_only": "Train only the classification head on frozen features. Fastest, weakest.",
    "bitfit": "Train only the bias terms (and the head): ~0.1% of the weights.",
    "llrd": "Layer-wise learning-rate decay: lower layers learn more slowly than upper ones.",
    "discriminative": "Separate learning rates for embeddings, encoder and head.",
    "gradual_unfreeze": "Start with the head; unfreeze one more layer from the top every few epochs (ULMFiT).",
    "lora": "Low-rank adapters on the attention projections; the base model stays frozen.",
    "adalora": "LoRA whose rank budget is reallocated during training to the layers that need it.",
    "ia3": "Learned scaling vectors on keys, values and feed-forward: very few parameters.",
    "prefix": "Trainable virtual tokens prepended to every layer's attention.",
    "adapter": "Small bottleneck layers inserted after attention/FFN (Houlsby or Pfeiffer).",
}
TASK_HELP = {
    "single_label": "one label per text",
    "multi_label": "any number of labels per text",
    "pair": "one label per pair of texts",
    "regression": "a number per text (or pair)",
    "token": "a tag per word (NER)",
}
# The few options the Data page owns; the rest of DataConfig is set on the Strategy page's subset panel.
DATA_SUBSET_FIELDS = ("max_train_samples", "max_eval_samples", "validation_split", "test_split", "seed")


def key(section: str, name: str) -> str:
    return f"cfg.{section}.{name}"


def widget_kind(spec: dict[str, Any]) -> str:
    """How to draw a field: bool, int, optional_int, float, choice, list or text."""
    t = spec["type"].replace("<class '", "").replace("'>", "")  # str(float) is "<class 'float'>"
    if "choices" in spec:
        return "choice"
    if t.startswith("bool"):
        return "bool"
    if t.startswith("int"):
        return "optional_int" if "None" in t else "int"
    if t.startswith("float"):
        return "float"
    if t.startswith("list"):
        return "list"
    return "text"


def number_bounds(spec: dict[str, Any]) -> dict[str, Any]:
    """min/max for st.number_input; an exclusive minimum becomes the smallest value above it."""
    kind = widget_kind(spec)
    out: dict[str, Any] = {}
    if "min" in spec:
        out["min_value"] = spec["min"]
    elif spec.get("exclusive_min") is not None:
        out["min_value"] = spec["exclusive_min"] + (1 if kind in ("int", "optional_int") else 1e-9)
    if "max" in spec:
        out["max_value"] = spec["max"]
    if kind == "float":
        out = {k: float(v) for k, v in out.items()}
        small = abs(float(spec["default"] or 0)) < 1e-2 and spec["default"] not in (0, 0.0)
        out["format"] = "%.2e" if small else "%.4g"
        out["step"] = float(spec["default"]) / 10 if small else 0.01 if abs(float(spec["default"] or 0)) <= 1 else 1.0
    return out


def strategy_fields(kind: str) -> list[dict[str, Any]]:
    """StrategyConfig options shown for ``kind``: those whose ``strategies`` metadata names it, plus the
    options every strategy has (no ``strategies`` key), minus ``kind`` itself."""
    return [s for s in field_specs(StrategyConfig)
            if s["name"] != "kind" and ("strategies" not in s or kind in s["strategies"])]


def defaults() -> dict[str, Any]:
    """Widget values of a default RunConfig."""
    return config_to_values(RunConfig())


def config_to_values(config: RunConfig) -> dict[str, Any]:
    raw = config.to_dict()
    values: dict[str, Any] = {key("run", "name"): raw["name"], key("run", "task"): raw["task"]}
    for section in SECTIONS:
        for name, value in raw[section].items():
            values[key(section, name)] = ", ".join(value) if isinstance(value, list) else value
    return values


def values_to_config(values: dict[str, Any], strategy_kind: str | None = None) -> RunConfig:
    """Build (and validate) a RunConfig from widget values; ConfigError names the wrong field."""
    raw: dict[str, Any] = {section: {} for section in SECTIONS}
    for k, value in values.items():
        parts = k.split(".")
        if len(parts) != 3 or parts[0] != "cfg":
            continue
        _, section, name = parts
        if section == "run":
            raw[name] = value
            continue
        if section not in SECTIONS:
            continue
        spec = next((s for s in field_specs(SECTIONS[section]) if s["name"] == name), None)
        if spec is None:
            continue
        if widget_kind(spec) == "list" and isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if isinstance(value, str) and value.strip() == "" and "None" in spec["type"]:
            value = None
        raw[section][name] = value
    if strategy_kind is not None:
        raw["strategy"]["kind"] = strategy_kind
    return from_dict(raw)


def with_strategy(config: RunConfig, kind: str) -> RunConfig:
    """The same run with another strategy (its options keep their values), named after it."""
    if kind not in STRATEGY_KINDS:
        raise ValueError(kind)
    return config.replace(name=f"{config.name}-{kind}", strategy=dataclasses.replace(config.strategy, kind=kind))


def cli_command(config: RunConfig, path: str = "run.yaml") -> str:
    """The shell command that trains this config once its YAML is saved as ``path``."""
    return f"python -m core train --config {shlex.quote(path)}"


def yaml_for_download(config: RunConfig) -> str:
    """The YAML as the user would save it: output_dir left empty so it follows $TUNEBOARD_HOME."""
    return config.replace(output_dir="").to_yaml()
