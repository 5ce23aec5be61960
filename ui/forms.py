"""Form <-> config mapping. The dashboard's forms are generated from ``core.config.field_specs`` so the
UI, the YAML and the CLI share one set of names, help texts and bounds.

Widget keys are ``cfg.<section>.<field>``; a draft config is the dict of those values. Nothing here
imports streamlit.
"""

from __future__ import annotations

import dataclasses
import shlex
from typing import Any

from core import strategy_registry
from core.config import SECTIONS, STRATEGY_KINDS, RunConfig, StrategyConfig, TrainConfig, field_specs, from_dict

STRATEGY_HELP = {kind: spec.summary for kind, spec in strategy_registry.STRATEGIES.items()}  # one line per kind, for the choice list
TASK_HELP = {
    "single_label": "one label per text",
    "multi_label": "any number of labels per text",
    "pair": "one label per pair of texts",
    "regression": "a number per text (or pair)",
    "token": "a tag per word (NER)",
}
# The few options the Data page owns; the rest of DataConfig is set on the Strategy page's subset panel.
DATA_SUBSET_FIELDS = ("max_train_samples", "max_eval_samples", "validation_split", "test_split", "seed")


# Config options as the Data page's widgets name them: core's messages name the option, the page the picker.
FORM_NAMES = {
    "data.text_column": "the Text picker",
    "data.text_pair_column": "the Second text picker",
    "data.label_column": "the Label picker",
    "data.max_train_samples": "max training rows",
    "data.max_eval_samples": "max validation/test rows",
}


def for_the_form(message: str) -> str:
    """A core message with config option names replaced by the widgets the user sees."""
    for option, widget in FORM_NAMES.items():
        message = message.replace(f"set {option}=", f"set {widget} to ").replace(f"set {option}", f"set {widget}").replace(option, widget)
    return message


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


# Train options that mean something for some tasks only.
TASK_ONLY_TRAIN_FIELDS = {"multi_label_threshold": ("multi_label",)}


def train_fields(task: str) -> list[dict[str, Any]]:
    """TrainConfig options shown for ``task`` (the multi-label threshold only for multi-label tasks)."""
    return [s for s in field_specs(TrainConfig) if task in TASK_ONLY_TRAIN_FIELDS.get(s["name"], (task,))]


def applicable_dict(config: RunConfig) -> dict[str, Any]:
    """``config.to_dict()`` without the options that don't apply to its strategy and task (they keep their defaults)."""
    raw = config.to_dict()
    shown = {s["name"] for s in strategy_fields(config.strategy.kind)} | {"kind"}
    raw["strategy"] = {k: v for k, v in raw["strategy"].items() if k in shown}
    raw["train"] = {k: v for k, v in raw["train"].items() if config.task in TASK_ONLY_TRAIN_FIELDS.get(k, (config.task,))}
    return raw


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


MODEL_SOURCES = ("Bundled", "Local folder or hub id")  # the Strategy page's model source radio


def form_state(config: RunConfig) -> dict[str, Any]:
    """Session values that put ``config`` into the Strategy page's form: every ``cfg.<section>.<field>``, the
    model source radio, and ``pending_data_source``. The Data page's source widgets aren't drawn on another page,
    so Streamlit would forget values set for them there: the Data page applies that plain key before drawing them."""
    return {**config_to_values(config), "model_source": MODEL_SOURCES[0] if config.model.name.startswith("bundled:") else MODEL_SOURCES[1],
            "pending_data_source": config.data.source}


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


def yaml_for_download(config: RunConfig, root: str | None = None) -> str:
    """The YAML as the user would save it: the options that apply to its strategy and task, output_dir
    left out so it follows $TUNEBOARD_HOME, and an uploaded file named by its own name (with a comment
    saying where the dashboard keeps its copy), not by that internal path."""
    import yaml

    from core.uploads import upload_name

    raw = applicable_dict(config)
    raw.pop("output_dir", None)
    header = ""
    name = upload_name(config.data.source, root) if root is not None else None
    if name is not None:
        raw["data"]["source"] = name
        header = (f"# data.source: the file you uploaded; point it at your copy of {name}.\n"
                  f"# (The dashboard keeps the upload at {config.data.source}.)\n")
    return header + yaml.safe_dump(raw, sort_keys=False, allow_unicode=True)
