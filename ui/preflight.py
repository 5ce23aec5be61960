"""Pre-flight facts for the Strategy page: model facts from its config, and a short dry run that
measures the strategy's trainable parameters, parameter groups and time per optimizer step.

Runs in the dashboard process on an explicit click (a few seconds for small models), cached by the
page; the training itself always runs in the worker's subprocess.
"""

from __future__ import annotations

import importlib
import math
import statistics
import threading
import time
from typing import Any

from core.config import ModelConfig, RunConfig

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


def dry_run(config: RunConfig, steps: int = 4) -> dict[str, Any]:
    """Build the run's model and strategy, time a few optimizer steps; return describe() plus timings.

    Raises the core errors (DataError, ModelError, StrategyError, ConfigError) with their messages.
    """
    import torch

    warm_transformers()
    from core.data import label_ids, load_bundle
    from core.loop import make_loss, model_inputs, plan_steps
    from core.models import load_model, load_tokenizer
    from core.strategies import build_strategy
    from core.tokenize import PaddingCollator, encode_split

    torch.manual_seed(config.train.seed)
    bundle = load_bundle(config.data, config.task)
    tokenizer = load_tokenizer(config.model)
    model = load_model(config.model, config.task, bundle.labels.names)
    plan = build_strategy(model, config)
    facts = plan.describe()
    max_length = min(config.model.max_length, getattr(model.config, "max_position_embeddings", 512))
    bs = config.train.batch_size
    frame = bundle.train.sample(min(len(bundle.train), bs * steps), random_state=0)
    encoded = encode_split(frame, config.task, tokenizer, max_length, label_ids(frame, bundle.labels, config.task))
    collator = PaddingCollator(tokenizer.pad_token_id or 0, config.task)
    loss_fn = make_loss(config.task)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    plan.model.to(device)  # before the optimizer: it must hold the moved parameters
    optimizer = torch.optim.AdamW(plan.param_groups)
    plan.model.train()
    seconds = []
    for start in range(0, len(encoded), bs):
        batch = collator([encoded[i] for i in range(start, min(start + bs, len(encoded)))])
        batch = {k: v.to(device) for k, v in batch.items()}
        t0 = time.perf_counter()
        loss = loss_fn(plan.model(**model_inputs(batch)).logits, batch["labels"])
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if device.type == "cuda":
            torch.cuda.synchronize()  # kernels are asynchronous: wait before reading the clock
        seconds.append(time.perf_counter() - t0)
    # the first step pays for allocation and kernel warm-up
    per_batch = statistics.median(seconds[1:]) if len(seconds) > 1 else seconds[0]
    steps_per_epoch, total = plan_steps(len(bundle.train), config.train)
    batches_per_epoch = math.ceil(len(bundle.train) / bs)
    return {**facts, "seconds_per_batch": per_batch, "steps_per_epoch": steps_per_epoch, "total_steps": total,
            "epoch_seconds": per_batch * batches_per_epoch, "train_rows": len(bundle.train),
            "measured_batches": len(seconds), "device": device.type}
