"""Run configuration: frozen dataclasses whose field metadata drives validation, the CLI and the UI.

Every field carries ``metadata`` with ``help`` and, where it applies, ``min``/``max`` bounds and
``choices``. ``__post_init__`` validates against that metadata and raises :class:`ConfigError`
naming the field, so the YAML, the ``--set`` overrides and the dashboard forms are checked by the
same code. The strategy kinds, and which ``StrategyConfig`` options belong to which kind, come from
``core.strategy_registry`` (:func:`field_specs` adds them as ``strategies``).
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, get_type_hints

import yaml

from core.strategy_registry import BASE_LEARNING_RATE, KINDS, kinds_with_option

TASKS = ("single_label", "multi_label", "pair", "regression", "token")
STRATEGY_KINDS = KINDS
SCHEDULERS = ("linear", "cosine", "constant")
TRACKERS = ("none", "tensorboard", "mlflow", "wandb")  # core.trackers: where a run's curves are also logged


class ConfigError(ValueError):
    """A configuration value is wrong. ``field`` is its dotted path (e.g. ``train.epochs``)."""

    def __init__(self, field_path: str, message: str):
        self.field = field_path
        super().__init__(f"{field_path}: {message}")


def _opt(default: Any, help: str, **meta: Any) -> Any:
    """A dataclass field with help text and validation metadata."""
    meta["help"] = help
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


def _validate(obj: Any, prefix: str) -> None:
    """Check every field of a config dataclass against its metadata."""
    hints = get_type_hints(type(obj))
    for f in fields(obj):
        value = getattr(obj, f.name)
        path = f"{prefix}.{f.name}" if prefix else f.name
        meta = f.metadata
        if value is None:
            if "None" not in str(hints[f.name]):
                raise ConfigError(path, "a value is required")
            continue
        expected = hints[f.name]
        _check_type(path, value, expected)
        if "choices" in meta and value not in meta["choices"]:
            raise ConfigError(path, f"{value!r} is not one of {', '.join(map(str, meta['choices']))}")
        if "min" in meta and value < meta["min"]:
            raise ConfigError(path, f"{value} is below the minimum {meta['min']}")
        if "max" in meta and value > meta["max"]:
            raise ConfigError(path, f"{value} is above the maximum {meta['max']}")
        if meta.get("exclusive_min") is not None and value <= meta["exclusive_min"]:
            raise ConfigError(path, f"{value} must be greater than {meta['exclusive_min']}")


def _check_type(path: str, value: Any, expected: Any) -> None:
    text = str(expected)
    if is_dataclass(value):
        return
    if "bool" in text and isinstance(value, bool):
        return
    if "int" in text and isinstance(value, int) and not isinstance(value, bool):
        return
    if "float" in text and isinstance(value, (int, float)) and not isinstance(value, bool):
        return
    if "str" in text and isinstance(value, str):
        return
    if ("list" in text or "tuple" in text) and isinstance(value, (list, tuple)):
        return
    if "dict" in text and isinstance(value, dict):
        return
    shown = getattr(expected, "__name__", None) or text.replace(" | None", "")
    raise ConfigError(path, f"expected {shown.replace(' | None', '')}, got {type(value).__name__} {value!r}")


@dataclass(frozen=True)
class DataConfig:
    source: str = _opt(
        "sample:rotten_tomatoes",
        "A file (CSV/TSV/JSON/JSONL/Parquet/CoNLL), a folder of <label>/*.txt, or sample:<name>.",
    )
    validation_source: str | None = _opt(None, "Optional separate validation file (else split off the source).")
    test_source: str | None = _opt(None, "Optional separate test file (else split off the source).")
    text_column: str | None = _opt(None, "Column with the text; auto-detected when empty.")
    text_pair_column: str | None = _opt(None, "Second text column for sentence-pair tasks.")
    label_column: str | None = _opt(None, "Column with the label; auto-detected when empty.")
    label_delimiter: str = _opt("|", "Separator of several labels in one cell (multi-label).")
    validation_split: float = _opt(0.1, "Share of rows held out for validation.", min=0.0, max=0.5)
    test_split: float = _opt(0.1, "Share of rows held out for the final test.", min=0.0, max=0.5)
    max_train_samples: int | None = _opt(None, "Use at most this many training rows (quick runs).", min=1)
    max_eval_samples: int | None = _opt(None, "Use at most this many validation and test rows.", min=1)
    empty_texts: str = _opt(
        "drop", "What to do with empty or whitespace-only texts.", choices=("drop", "error")
    )
    seed: int = _opt(42, "Seed of the split and of subsampling.", min=0)
    drop_duplicates: bool = _opt(
        False, "Before splitting, drop repeated texts (the first row stays) and texts found with different labels, "
        "so no text is in two splits (the bundled samples always are).")

    def __post_init__(self) -> None:
        _validate(self, "data")
        if self.validation_split + self.test_split >= 0.9:
            raise ConfigError("data.test_split", "validation_split + test_split must stay below 0.9")


@dataclass(frozen=True)
class ModelConfig:
    name: str = _opt("bundled:minilm-l6", "bundled:minilm-l6, a local model folder, or a Hugging Face hub id.")
    num_layers: int | None = _opt(None, "Keep only the bottom N encoder layers (fast demos and tests).", min=1)
    max_length: int = _opt(128, "Longest input in tokens; longer texts are truncated.", min=8, max=4096)

    def __post_init__(self) -> None:
        _validate(self, "model")


@dataclass(frozen=True)
class StrategyConfig:
    """Options of every strategy; which kind each belongs to is said once, in core.strategy_registry."""

    kind: str = _opt("full", "Which parameters train, and how.", choices=STRATEGY_KINDS)
    freeze_layers: int = _opt(4, "Encoder layers frozen from the bottom (embeddings are frozen too).", min=0)
    layer_decay: float = _opt(
        0.9, "Each layer's learning rate is this times the one above it.", exclusive_min=0.0, max=1.0
    )
    embeddings_lr: float = _opt(1e-5, "Learning rate of the embeddings.", min=0.0)
    encoder_lr: float = _opt(3e-5, "Learning rate of the encoder layers.", min=0.0)
    head_lr: float = _opt(1e-4, "Learning rate of the task head.", min=0.0)
    unfreeze_every: int = _opt(1, "Unfreeze one more layer (from the top) every this many epochs.", min=1)
    unfreeze_every_steps: int = _opt(
        0, "If above 0, unfreeze by optimizer steps instead: one more layer every this many steps (short runs).", min=0
    )
    lora_r: int = _opt(8, "LoRA rank.", min=1, max=512)
    lora_alpha: int = _opt(16, "LoRA scaling (alpha).", min=1)
    lora_dropout: float = _opt(0.1, "Dropout on the LoRA path.", min=0.0, max=0.9)
    target_modules: list[str] = _opt([], "Module names to adapt; empty = the model's attention projections.")
    adalora_target_r: int = _opt(4, "AdaLoRA average rank after reallocation.", min=1)
    adalora_orth_reg_weight: float = _opt(
        0.5, "Weight of AdaLoRA's penalty that keeps its singular vectors orthogonal (peft's default 0.5). "
        "It slows a short run's start: raise the learning rate (~5e-3) or lower this.",
        min=0.0, max=10.0)
    prefix_tokens: int = _opt(20, "Number of virtual prefix tokens.", min=1, max=512)
    adapter_kind: str = _opt(
        "pfeiffer", "houlsby: after attention and FFN; pfeiffer: after FFN only.",
        choices=("houlsby", "pfeiffer"),
    )
    reduction_factor: int = _opt(16, "Adapter bottleneck = hidden size / this.", min=1)
    class_weights: str = _opt(
        "none", "none, balanced, or explicit 'label=weight,label=weight'.",
    )
    label_smoothing: float = _opt(0.0, "Label smoothing of the cross-entropy loss.", min=0.0, max=0.5)

    def __post_init__(self) -> None:
        _validate(self, "strategy")
        if self.class_weights not in ("none", "balanced"):
            parse_class_weights(self.class_weights)


def parse_class_weights(text: str) -> dict[str, float]:
    """Parse ``'pos=2,neg=1'`` into a dict; raise ConfigError on a malformed entry."""
    weights: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        label, sep, value = part.rpartition("=")
        try:
            weights[label.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep or not label.strip() or weights.get(label.strip(), 0) <= 0:
            raise ConfigError(
                "strategy.class_weights",
                f"{part!r} is not 'label=positive number'; use none, balanced, or e.g. 'pos=2,neg=1'",
            )
    return weights


@dataclass(frozen=True)
class TrainConfig:
    epochs: float = _opt(3, "Passes over the training data.", exclusive_min=0.0, max=1000)
    batch_size: int = _opt(16, "Examples per forward pass.", min=1, max=4096)
    learning_rate: float = _opt(
        BASE_LEARNING_RATE, "Peak learning rate (of the head, for layer-wise strategies).", exclusive_min=0.0, max=1.0
    )
    weight_decay: float = _opt(0.01, "AdamW weight decay (never on biases and LayerNorm).", min=0.0, max=1.0)
    warmup_ratio: float = _opt(0.06, "Share of steps spent warming the learning rate up.", min=0.0, max=0.5)
    scheduler: str = _opt("linear", "Learning-rate schedule after warmup.", choices=SCHEDULERS)
    gradient_accumulation_steps: int = _opt(1, "Batches whose gradients add up to one optimizer step.", min=1)
    max_grad_norm: float = _opt(1.0, "Clip gradients to this norm (0 = no clipping).", min=0.0)
    eval_every: int = _opt(0, "Evaluate every N optimizer steps (0 = at the end of each epoch).", min=0)
    early_stopping_patience: int = _opt(0, "Stop after this many evaluations without improvement (0 = never).", min=0)
    metric_for_best: str = _opt(
        "auto", "Validation metric that picks the best checkpoint (auto: f1_macro, f1_micro, f1 or -mse by task)."
    )
    multi_label_threshold: float = _opt(0.5, "Probability above which a label is predicted (multi-label).", exclusive_min=0.0, max=1.0)
    precision: str = _opt(
        "auto",
        "Numeric precision of training: auto = bf16 autocast where the CPU/GPU has native bf16, else fp32 "
        "(regression stays fp32 under auto: bf16 predictions carry ~3 significant digits).",
        choices=("fp32", "bf16", "auto"),
    )
    cache_frozen_layers: bool = _opt(
        True, "Compute the frozen bottom layers once per row and reuse their output every epoch (freeze strategy)."
    )
    fast_cpu_dropout: bool = _opt(
        True, "On the CPU: dropout masks from 16-bit random lanes (~3.5x cheaper than torch's, same distribution; "
        "the rate is rounded to 1/65536) and eager attention. No effect on GPUs."
    )
    cls_only_top_layer: bool = _opt(
        True, "Sequence tasks on BERT, RoBERTa and ELECTRA: the top layer computes only the first token, the one the "
        "classifier reads (same outputs, ~14% less work on a 6-layer model). No effect on NER."
    )
    skip_padding: bool = _opt(
        True, "On the CPU, in fp32 training and in evaluation, BERT, RoBERTa and ELECTRA layers compute the batch's real "
        "tokens only: padding never enters a projection, feed-forward block or LayerNorm (same outputs; ~1.1x faster "
        "fp32 steps on the bundled data; bf16 training steps gain nothing, so they keep the padding)."
    )
    log_every: int = _opt(10, "Write a step event every N optimizer steps.", min=1)
    report_to: str = _opt(
        "none", "Also log the curves to a tracker, through accelerate: tensorboard (files in the run's trackers/ folder; "
        "needs tensorboard or tensorboardX), mlflow (a SQLite store beside the runs unless MLFLOW_TRACKING_URI is set; "
        "needs mlflow) or wandb (offline unless WANDB_MODE is set; needs wandb).", choices=TRACKERS,
    )
    seed: int = _opt(42, "Seed of initialisation, shuffling and dropout.", min=0)
    keep_checkpoint: bool = _opt(
        False, "Keep checkpoints/ (the resumable state: weights and AdamW moments, about 4x the model) after the run "
        "completes. Off, a completed run keeps its model, report, predictions and events."
    )

    def __post_init__(self) -> None:
        _validate(self, "train")


def default_runs_root() -> str:
    return os.environ.get("TUNEBOARD_HOME", "runs")


@dataclass(frozen=True)
class DerivedConfig:
    """How a derived run's model was made from finished runs (core.derived); absent for a training run."""

    method: str = _opt("int8", "The compression (or fusion) method that made the model.")
    options: dict[str, Any] = _opt({}, "The method's options.")
    parents: list[str] = _opt([], "Run ids of the runs it was made from.")

    def __post_init__(self) -> None:
        _validate(self, "derived")


@dataclass(frozen=True)
class RunConfig:
    name: str = _opt("run", "A short name for the run (letters, digits, - and _).")
    task: str = _opt("single_label", "What the model predicts.", choices=TASKS)
    data: DataConfig = field(default_factory=DataConfig, metadata={"help": "Data"})
    model: ModelConfig = field(default_factory=ModelConfig, metadata={"help": "Model"})
    strategy: StrategyConfig = field(default_factory=StrategyConfig, metadata={"help": "Strategy"})
    train: TrainConfig = field(default_factory=TrainConfig, metadata={"help": "Training"})
    output_dir: str = _opt("", "Root folder of run directories (empty: $TUNEBOARD_HOME or ./runs).")
    derived: DerivedConfig | None = field(default=None, metadata={"help": "Derived run: how its model was made"})

    def __post_init__(self) -> None:
        _validate(self, "")
        if not self.name or not all(c.isalnum() or c in "-_." for c in self.name):
            raise ConfigError("name", f"{self.name!r}: use letters, digits, '-', '_' or '.'")

    @property
    def runs_root(self) -> Path:
        return Path(self.output_dir or default_runs_root())

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def replace(self, **changes: Any) -> RunConfig:
        return dataclasses.replace(self, **changes)


SECTIONS = {"data": DataConfig, "model": ModelConfig, "strategy": StrategyConfig, "train": TrainConfig}


def _suggest(key: str, options: list[str]) -> str:
    close = difflib.get_close_matches(key, options, n=1, cutoff=0.5)
    return f"; did you mean {close[0]!r}?" if close else f"; valid keys: {', '.join(options)}"


def from_dict(raw: dict[str, Any]) -> RunConfig:
    """Build a RunConfig from nested dicts, refusing unknown keys with the closest valid one."""
    if not isinstance(raw, dict):
        raise ConfigError("(top)", "the config must be a mapping of sections (name, task, data, model, ...)")
    top_keys = [f.name for f in fields(RunConfig)]
    kwargs: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in top_keys:
            raise ConfigError(key, "unknown key" + _suggest(key, top_keys))
        if key in SECTIONS:
            cls = SECTIONS[key]
            if value is None:
                value = {}
            if not isinstance(value, dict):
                raise ConfigError(key, "expected a mapping of options")
            names = [f.name for f in fields(cls)]
            for sub in value:
                if sub not in names:
                    raise ConfigError(f"{key}.{sub}", "unknown key" + _suggest(sub, names))
            value = _coerce_section(cls, key, value)
            kwargs[key] = cls(**value)
        elif key == "derived" and value is not None:
            if not isinstance(value, dict):
                raise ConfigError(key, "expected a mapping (method, options, parents)")
            names = [f.name for f in fields(DerivedConfig)]
            for sub in value:
                if sub not in names:
                    raise ConfigError(f"derived.{sub}", "unknown key" + _suggest(sub, names))
            kwargs[key] = DerivedConfig(**value)
        else:
            kwargs[key] = value
    return RunConfig(**kwargs)


def _coerce_section(cls: type, key: str, values: dict[str, Any]) -> dict[str, Any]:
    """YAML reads '5e-5' as a string and 3 as an int; coerce to the field's declared type."""
    hints = get_type_hints(cls)
    out = dict(values)
    for name, value in values.items():
        text = str(hints[name])
        if isinstance(value, str) and ("float" in text or "int" in text) and "str" not in text:
            try:
                out[name] = float(value) if "float" in text else int(value)
            except ValueError:
                raise ConfigError(f"{key}.{name}", f"{value!r} is not a number") from None
        elif isinstance(value, int) and not isinstance(value, bool) and text.startswith("float"):
            out[name] = float(value)
        elif isinstance(value, float) and "int" in text and "float" not in text and value.is_integer():
            out[name] = int(value)
    return out


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``section.key=value`` strings (values parsed as YAML) to a raw config dict."""
    out = json.loads(json.dumps(raw))
    for item in overrides:
        path, sep, text = item.partition("=")
        if not sep or not path:
            raise ConfigError(item, "an override is written section.key=value, e.g. train.epochs=2")
        value = yaml.safe_load(text) if text.strip() else None
        parts = path.strip().split(".")
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(path, f"{part} is not a section")
        node[parts[-1]] = value
    return out


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> RunConfig:
    """Read a YAML/JSON config file (or defaults), apply overrides, validate."""
    raw: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError("--config", f"no such file: {p}")
        try:
            raw = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise ConfigError("--config", f"{p} is not valid YAML/JSON: {exc}") from None
    return from_dict(apply_overrides(raw, overrides or []))


def field_specs(cls: type) -> list[dict[str, Any]]:
    """Describe a config dataclass's fields for form builders: name, type, default, help, bounds.

    A ``StrategyConfig`` option that belongs to some strategies (core.strategy_registry) also carries
    ``strategies``: those kinds. Options without it apply to every kind.
    """
    hints = get_type_hints(cls)
    specs = []
    for f in fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        spec = {"name": f.name, "type": str(hints[f.name]), "default": default, **dict(f.metadata)}
        if cls is StrategyConfig and f.name != "kind" and (kinds := kinds_with_option(f.name)):
            spec["strategies"] = kinds
        specs.append(spec)
    return specs
