"""Fine-tuning strategies as data: which parameters train, in which groups, at which learning rates.

A strategy is a function ``build(model, config, num_train_rows) -> StrategyPlan``. The plan carries
the (possibly wrapped) model, the optimizer's parameter groups, and optional hooks the loop calls at
fixed points (``on_epoch_start`` for gradual unfreezing, ``after_optimizer_step`` for AdaLoRA's rank
reallocation). There is no class hierarchy: adding a strategy is adding one builder to STRATEGIES.

How a BERT-family model is carved up (names relative to ``model.base_model_prefix``, e.g. ``bert``):

* **embeddings** — ``<base>.embeddings.*``
* **layer i** — ``<base>.encoder.layer.<i>.*`` (bottom = 0)
* **pooler** — every other parameter of the base model (BERT's ``pooler.dense``). It sits above
  the top layer and feeds only the classifier, so it trains with the top of the stack: it trains in
  ``freeze``, gets the head's learning rate in ``llrd``/``discriminative``, and unfreezes together
  with the top layer in ``gradual_unfreeze``.
* **head** — everything outside the base model (``classifier.*``). ``head_only`` trains the head
  alone — a linear probe on the frozen pooled output; the pooler stays frozen.

Frozen modules keep their dropout active in training mode — except the frozen bottom of ``freeze``
(embeddings and layers 0..k-1), which runs in eval mode, without dropout: a fixed feature extractor
whose output the loop computes once per row and reuses every epoch (``core.frozen_cache``).

PEFT strategies (lora, adalora, ia3, prefix) live in ``core.peft_strategies`` and the bottleneck
adapter in ``core.adapters``; both are imported only when chosen, so plain runs never import peft.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from core.config import RunConfig

NO_DECAY_MARKERS = ("bias", "LayerNorm.weight", "layer_norm.weight", "LayerNorm.bias")
Named = list[tuple[str, torch.nn.Parameter]]
Builder = Callable[[torch.nn.Module, RunConfig, "int | None"], "StrategyPlan"]


class StrategyError(ValueError):
    """The strategy's options don't fit the model; raised before any training starts."""


@dataclass
class StrategyPlan:
    kind: str
    model: torch.nn.Module
    param_groups: list[dict[str, Any]]
    on_epoch_start: Callable[[int], None] | None = None
    after_optimizer_step: Callable[[int], None] | None = None
    # A term added to every micro-batch's loss (AdaLoRA's orthogonality penalty).
    regulariser: Callable[[], torch.Tensor] | None = None
    # State the strategy keeps outside the parameters (AdaLoRA's importance estimates and rank pattern):
    # the loop saves it with each checkpoint and hands it back on resume.
    state_dict: Callable[[], dict[str, Any]] | None = None
    load_state_dict: Callable[[dict[str, Any]], None] | None = None
    notes: list[str] = field(default_factory=list)
    # How save_for_inference writes model/: "plain" (save_pretrained), "peft_merge", "peft_prefix", "adapter".
    save_format: str = "plain"
    # Embeddings and this many bottom encoder layers are frozen for the whole run (freeze): the loop runs
    # them in eval mode and computes their output once per row (core.frozen_cache).
    frozen_prefix_layers: int = 0

    def describe(self) -> dict[str, Any]:
        """Trainable and total parameter counts and the groups with their learning rates."""
        total = sum(p.numel() for p in self.model.parameters())
        trainable = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
        groups = [
            # The scheduler rewrites "lr" in place once the optimizer holds the groups; "initial_lr" is the peak.
            {"name": g.get("name", f"group{i}"), "lr": g.get("initial_lr", g["lr"]), "weight_decay": g.get("weight_decay", 0.0),
             "params": sum(p.numel() for p in g["params"])}
            for i, g in enumerate(self.param_groups)
        ]
        return {
            "kind": self.kind,
            "trainable_params": trainable,
            "total_params": total,
            "trainable_percent": round(100.0 * trainable / max(total, 1), 4),
            "groups": groups,
            "notes": self.notes,
        }


def decay_groups(named: Named, lr: float, weight_decay: float, name: str) -> list[dict[str, Any]]:
    """Split parameters into weight-decay and no-decay (biases, LayerNorm) groups at one learning rate."""
    decay = [p for n, p in named if not any(m in n for m in NO_DECAY_MARKERS)]
    no_decay = [p for n, p in named if any(m in n for m in NO_DECAY_MARKERS)]
    groups = []
    if decay:
        groups.append({"name": name, "params": decay, "lr": lr, "weight_decay": weight_decay})
    if no_decay:
        groups.append({"name": f"{name} (no decay)", "params": no_decay, "lr": lr, "weight_decay": 0.0})
    return groups


def trainable_named(model: torch.nn.Module) -> Named:
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad]


# --- carving a BERT-family model into parts -----------------------------------------------------

@dataclass
class Parts:
    """A model's parameters by role, bottom to top (see the module docstring)."""

    embeddings: Named
    layers: list[Named]
    pooler: Named
    head: Named

    def all(self) -> Named:
        return [*self.embeddings, *(p for layer in self.layers for p in layer), *self.pooler, *self.head]


def split_parts(model: torch.nn.Module) -> Parts:
    """Sort every parameter into embeddings / layer i / pooler / head; StrategyError if the model isn't BERT-shaped."""
    prefix = getattr(model, "base_model_prefix", "")
    base = getattr(model, prefix, None) if prefix else None
    layers_module = getattr(getattr(base, "encoder", None), "layer", None)
    if base is None or getattr(base, "embeddings", None) is None or layers_module is None:
        raise StrategyError(
            f"{type(model).__name__} is not laid out like a BERT-family encoder (<base>.embeddings, "
            "<base>.encoder.layer.N); layer-wise strategies can't tell its layers apart. Use full, lora, ia3 or adapter."
        )
    n = len(layers_module)
    parts = Parts([], [[] for _ in range(n)], [], [])
    for name, param in model.named_parameters():
        if not name.startswith(prefix + "."):
            parts.head.append((name, param))
            continue
        rest = name[len(prefix) + 1:]
        if rest.startswith("embeddings."):
            parts.embeddings.append((name, param))
        elif rest.startswith("encoder.layer."):
            parts.layers[int(rest.split(".")[2])].append((name, param))
        else:
            parts.pooler.append((name, param))
    return parts


def set_trainable(model: torch.nn.Module, named: Named) -> None:
    """Freeze everything, then unfreeze exactly ``named``."""
    keep = {id(p) for _, p in named}
    for p in model.parameters():
        p.requires_grad_(id(p) in keep)


def _plan(kind: str, model: torch.nn.Module, config: RunConfig, trainable: Named, notes: list[str] | None = None) -> StrategyPlan:
    """Freeze all but ``trainable`` and put those in one learning-rate group (decay split kept)."""
    set_trainable(model, trainable)
    groups = decay_groups(trainable, config.train.learning_rate, config.train.weight_decay, kind)
    return StrategyPlan(kind, model, groups, notes=notes or [])


# --- builders -------------------------------------------------------------------------------------

def build_full(model: torch.nn.Module, config: RunConfig, num_train_rows: int | None = None) -> StrategyPlan:
    return _plan("full", model, config, list(model.named_parameters()))


def build_freeze(model: torch.nn.Module, config: RunConfig, num_train_rows: int | None = None) -> StrategyPlan:
    parts = split_parts(model)
    k, n = config.strategy.freeze_layers, len(parts.layers)
    if k >= n:
        raise StrategyError(
            f"strategy.freeze_layers={k} but the model has only {n} encoder layers, so nothing in the encoder would "
            f"train. Fix: choose 0..{n - 1}, or use strategy.kind=head_only to train only the head."
        )
    trainable = [p for layer in parts.layers[k:] for p in layer] + parts.pooler + parts.head
    note = f"embeddings and layers 0..{k - 1} frozen (no dropout)" if k else "embeddings frozen"
    plan = _plan("freeze", model, config, trainable, [note])
    plan.frozen_prefix_layers = k
    return plan


def build_head_only(model: torch.nn.Module, config: RunConfig, num_train_rows: int | None = None) -> StrategyPlan:
    parts = split_parts(model)
    return _plan("head_only", model, config, parts.head, ["linear probe: the classifier trains; encoder and pooler frozen"])


def build_bitfit(model: torch.nn.Module, config: RunConfig, num_train_rows: int | None = None) -> StrategyPlan:
    # BitFit (Ben Zaken et al., 2022) trains every bias term, LayerNorm biases included, plus the new head.
    parts = split_parts(model)
    head_ids = {id(p) for _, p in parts.head}
    trainable = [(n, p) for n, p in model.named_parameters() if n.endswith(".bias") or id(p) in head_ids]
    return _plan("bitfit", model, config, trainable, ["bias terms of the encoder and the whole head train"])


def build_llrd(model: torch.nn.Module, config: RunConfig, num_train_rows: int | None = None) -> StrategyPlan:
    """Head (and pooler) at the learning rate; layer i at lr·d^(L−i); embeddings at lr·d^(L+1)."""
    parts = split_parts(model)
    lr, d, wd, n = config.train.learning_rate, config.strategy.layer_decay, config.train.weight_decay, len(parts.layers)
    set_trainable(model, parts.all())
    groups = decay_groups(parts.head + parts.pooler, lr, wd, "head")
    for i in reversed(range(n)):
        groups += decay_groups(parts.layers[i], lr * d ** (n - i), wd, f"layer {i}")
    groups += decay_groups(parts.embeddings, lr * d ** (n + 1), wd, "embeddings")
    return StrategyPlan("llrd", model, groups, notes=[f"layer-wise decay {d}: embeddings at lr x {d}^{n + 1}"])


def build_discriminative(model: torch.nn.Module, config: RunConfig, num_train_rows: int | None = None) -> StrategyPlan:
    parts = split_parts(model)
    s, wd = config.strategy, config.train.weight_decay
    set_trainable(model, parts.all())
    groups = decay_groups(parts.head + parts.pooler, s.head_lr, wd, "head")
    groups += decay_groups([p for layer in parts.layers for p in layer], s.encoder_lr, wd, "encoder")
    groups += decay_groups(parts.embeddings, s.embeddings_lr, wd, "embeddings")
    return StrategyPlan("discriminative", model, groups, notes=["train.learning_rate is not used"])


def unfreeze_stage(elapsed: int, unfreeze_every: int, num_layers: int) -> int:
    """Stage after ``elapsed`` epochs (or steps): 0 = head only, k = head + top k layers (pooler with the top), L+1 = everything."""
    return min(elapsed // unfreeze_every, num_layers + 1)


def stage_params(parts: Parts, stage: int) -> Named:
    n = len(parts.layers)
    named = list(parts.head)
    if stage >= 1:
        named += parts.pooler
    for i in range(n - min(stage, n), n):
        named += parts.layers[i]
    if stage > n:
        named += parts.embeddings
    return named


def build_gradual_unfreeze(model: torch.nn.Module, config: RunConfig, num_train_rows: int | None = None) -> StrategyPlan:
    """ULMFiT-style gradual unfreezing. Stateless: the depth is a function of the epoch, so resume lands right.

    Every parameter is in the optimizer from the start; a frozen one has no gradient, and AdamW skips
    parameters without gradients (no update, no weight decay), so it stays exactly as loaded.
    """
    parts = split_parts(model)
    every, every_steps, n = config.strategy.unfreeze_every, config.strategy.unfreeze_every_steps, len(parts.layers)
    groups = decay_groups(parts.all(), config.train.learning_rate, config.train.weight_decay, "all")
    set_trainable(model, stage_params(parts, 0))
    if not every_steps:
        def on_epoch_start(epoch: int) -> None:
            set_trainable(model, stage_params(parts, unfreeze_stage(epoch, every, n)))

        note = f"epoch 0: head only; every {every} epoch(s) one more layer from the top; embeddings from epoch {(n + 1) * every}"
        return StrategyPlan("gradual_unfreeze", model, groups, on_epoch_start=on_epoch_start, notes=[note])

    # By steps: the depth follows the number of optimizer steps taken, which the checkpoint carries.
    taken = {"steps": 0}

    def after_optimizer_step(step_index: int) -> None:
        taken["steps"] = step_index + 1
        set_trainable(model, stage_params(parts, unfreeze_stage(taken["steps"], every_steps, n)))

    note = (f"step 0: head only; every {every_steps} optimizer steps one more layer from the top; "
            f"embeddings from step {(n + 1) * every_steps}")
    return StrategyPlan("gradual_unfreeze", model, groups, after_optimizer_step=after_optimizer_step, notes=[note],
                        state_dict=lambda: dict(taken), load_state_dict=lambda state: after_optimizer_step(state["steps"] - 1))


def _lazy(module: str, name: str) -> Builder:
    """A builder imported on first use: peft is heavy and only the PEFT strategies need it."""

    def build(model: torch.nn.Module, config: RunConfig, num_train_rows: int | None = None) -> StrategyPlan:
        return getattr(importlib.import_module(module), name)(model, config, num_train_rows)

    return build


STRATEGIES: dict[str, Builder] = {
    "full": build_full,
    "freeze": build_freeze,
    "head_only": build_head_only,
    "bitfit": build_bitfit,
    "llrd": build_llrd,
    "discriminative": build_discriminative,
    "gradual_unfreeze": build_gradual_unfreeze,
    "lora": _lazy("core.peft_strategies", "build_lora"),
    "adalora": _lazy("core.peft_strategies", "build_adalora"),
    "ia3": _lazy("core.peft_strategies", "build_ia3"),
    "prefix": _lazy("core.peft_strategies", "build_prefix"),
    "adapter": _lazy("core.adapters", "build_adapter"),
}


def build_strategy(model: torch.nn.Module, config: RunConfig, num_train_rows: int | None = None) -> StrategyPlan:
    """Apply ``config.strategy`` to ``model``; StrategyError if the kind or its options don't fit.

    ``num_train_rows`` lets step-scheduled strategies (AdaLoRA's rank budget) agree with the loop's
    step count (``core.loop.plan_steps``).
    """
    kind = config.strategy.kind
    if kind not in STRATEGIES:
        raise StrategyError(f"strategy.kind={kind!r} is not available. Available: {', '.join(sorted(STRATEGIES))}.")
    plan = STRATEGIES[kind](model, config, num_train_rows)
    if not any(p.requires_grad for p in plan.model.parameters()):
        raise StrategyError(f"strategy {kind!r} left no parameter trainable.")
    return plan


def save_for_inference(plan: StrategyPlan, model: torch.nn.Module, out_dir: Any) -> None:
    """Write ``model/`` for inference.

    * plain strategies: ``save_pretrained`` — loads with ``AutoModelFor…from_pretrained`` and ``pipeline()``.
    * lora / adalora / ia3: the merged full model (same as plain) plus ``adapter/`` (peft adapter + head).
    * prefix: the base model with the trained head plus ``adapter/``; needs peft to predict (load_saved does it).
    * adapter: full weights including the adapters and a ``tuneboard_adapter`` marker; load_saved rebuilds it.

    Plain transformers would load the last two as the base model without the prefix or the adapters,
    and predict something else without a word. So their ``config.json`` names a model type of our own
    (:func:`guard_plain_loading`): plain loading stops with "does not recognize this architecture"
    and the folder's README.md says how to load it.
    """
    out_dir = Path(out_dir)
    if plan.save_format in ("peft_merge", "peft_prefix"):
        from core.peft_strategies import save_peft

        save_peft(plan, model, out_dir)
    else:  # "plain" and "adapter": the adapter's config marker was set when it was inserted
        model.save_pretrained(out_dir, safe_serialization=True)
    if plan.save_format in ("peft_prefix", "adapter"):
        guard_plain_loading(out_dir, plan.kind)


GUARDED_TYPE = "tuneboard-{kind}"  # config.json's model_type for folders only Tuneboard can rebuild
BASE_TYPE_KEY = "tuneboard_base_model_type"


def plain_loadable(model_dir: str | Path) -> bool:
    """Whether plain transformers (``from_pretrained``, ``pipeline()``) loads ``model_dir`` as trained."""
    import json

    return BASE_TYPE_KEY not in json.loads((Path(model_dir) / "config.json").read_text())


def guard_plain_loading(model_dir: Path, kind: str) -> None:
    """Make plain transformers refuse ``model_dir`` instead of loading it without the strategy's extras."""
    import json

    path = model_dir / "config.json"
    config = json.loads(path.read_text())
    config[BASE_TYPE_KEY] = config["model_type"]
    config["model_type"] = GUARDED_TYPE.format(kind=kind)
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    (model_dir / "README.md").write_text(
        f"# A Tuneboard model fine-tuned with the `{kind}` strategy\n\n"
        f"Its weights include {'bottleneck adapters' if kind == 'adapter' else 'a trained prefix (in adapter/)'}, "
        "which plain `transformers` can't express: loaded with `AutoModel…from_pretrained` or `pipeline()` it would be "
        f"the base `{config[BASE_TYPE_KEY]}` model without them and predict something else. That is why `config.json` "
        f"names the model type `{config['model_type']}`, which plain transformers refuses.\n\n"
        "Load it with Tuneboard:\n\n```python\nfrom core.inference import Predictor\n"
        "predictor = Predictor(\"path/to/this/folder\")\nprint(predictor.predict([\"a text\"]))\n```\n\n"
        "or `python -m core predict RUN_DIR --data texts.csv --out predictions.csv`.\n"
    )
