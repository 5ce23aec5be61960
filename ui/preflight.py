"""Model facts for the Strategy page (read from the model's config, no weights), and a safe import of
transformers for the page threads. The pre-flight dry run is core.preflight, in a subprocess."""

from __future__ import annotations

import importlib
import threading
import time
from typing import Any

from core.config import ModelConfig

_IMPORT_LOCK = threading.Lock()


def warm_transformers() -> Any:
    """Import transformers' auto classes once, under a lock, retrying a torn first import.

    transformers resolves its names lazily and not thread-safely: two Streamlit script threads (a
    rerun starting while the previous one still imports) can see a half-initialised module and get
    "cannot import name 'AutoModel'". Every page path that needs transformers comes through here first.
    """
    with _IMPORT_LOCK:
        for attempt in range(3):
            try:
                module = importlib.import_module("transformers")
                for name in ("AutoConfig", "AutoModel", "AutoTokenizer", "AutoModelForSequenceClassification",
                             "AutoModelForTokenClassification"):
                    getattr(module, name)
                return module
            except (ImportError, AttributeError):
                if attempt == 2:
                    raise
                time.sleep(0.2)
    return None


def model_facts(name: str, num_layers: int | None = None) -> dict[str, Any]:
    """Layers, hidden size, vocabulary, positions and the parameter count, without loading weights.

    Raises core.models.ModelError when the model can't be found.
    """
    import torch

    from core.models import load_config_for, quiet_transformers

    AutoModel = warm_transformers().AutoModel  # noqa: N806 - the transformers class

    quiet_transformers()
    config = load_config_for(ModelConfig(name=name))
    depth = getattr(config, "num_hidden_layers", 0)
    if num_layers:
        config.num_hidden_layers = min(num_layers, depth)
    with torch.device("meta"):  # shapes only: counting parameters needs no memory and no download of weights
        params = sum(p.numel() for p in AutoModel.from_config(config).parameters())
    return {"model type": getattr(config, "model_type", "?"), "layers": f"{config.num_hidden_layers} of {depth}",
            "hidden size": getattr(config, "hidden_size", 0), "heads": getattr(config, "num_attention_heads", 0),
            "vocabulary": getattr(config, "vocab_size", 0), "max positions": getattr(config, "max_position_embeddings", 0),
            "parameters": params}


def strategy_table(rows: list[dict[str, Any]]) -> Any:
    """core.preflight.preflight_strategies' rows as the Strategy page shows them, one line per strategy.

    A strategy that refuses the settings keeps its line, with the reason where its numbers would be.
    """
    import pandas as pd

    from ui.runview import fmt_duration

    lines = []
    for row in rows:
        if "error" in row:
            lines.append({"strategy": row["kind"], "trainable parameters": None, "trainable share %": None,
                          "learning rate": None, "time per epoch": "—", "note": row["error"]})
            continue
        lines.append({"strategy": row["kind"], "trainable parameters": row["trainable_params"],
                      "trainable share %": row["trainable_percent"], "learning rate": row["learning_rate"],
                      "time per epoch": fmt_duration(row["epoch_seconds"]), "note": ""})
    return pd.DataFrame(lines)
