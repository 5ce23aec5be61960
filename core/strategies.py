"""Fine-tuning strategies as data: which parameters train, in which groups, at which learning rates.

A strategy is a function ``build(model, config, num_train_rows) -> StrategyPlan``. The plan carries
the (possibly wrapped) model, the optimizer's parameter groups, and optional hooks the loop calls at
fixed points (``on_epoch_start`` for gradual unfreezing, ``after_optimizer_step`` for AdaLoRA's rank
reallocation). There is no class hierarchy: adding a strategy is adding one builder and its entry in
``core.strategy_registry`` (which names the builder; :data:`STRATEGIES` here is read from it).

How a BERT-family model is carved up (``core.anatomy`` knows where each part sits, per layout):

* **embeddings** — ``<base>.embeddings.*`` (and the projection to the hidden size where there is one)
* **layer i** — encoder layer i (``<base>.encoder.layer.<i>.*`` in BERT; bottom = 0)
* **pooler** — every other parameter of the base model (BERT's ``pooler.dense``). It sits above
  the top layer and feeds only the classifier, so it trains with the top of the stack: it trains in
  ``freeze``, gets the head's learning rate in ``llrd``/``discriminative``, and unfreezes together
  with the top layer in ``gradual_unfreeze``.
* **head** — everything outside the base model (``classifier.*``). ``head_only`` trains the head
  alone — a linear probe on the frozen pooled output; the pooler stays frozen.

``freeze``, ``llrd`` and ``gradual_unfreeze`` treat each depth apart, so they refuse ALBERT, whose
depths share one set of layer weights.

Frozen modules keep their dropout active in training mode — except the frozen bottom of ``freeze``
(embeddings and layers 0..k-1), which runs in eval mode, without dropout: a fixed feature extractor
whose output the loop computes once per row and reuses every epoch (``core.frozen_cache``).

PEFT strategies (lora, adalora, ia3, prefix) live in ``core.peft_strategies`` and the bottleneck
adapter in ``core.adapters``; both are imported only when chosen, so plain runs never import peft.
How each strategy's model is saved and loaded is ``core.model_format``'s.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from core import strategy_registry
from core.anatomy import Parts
from core.config import RunConfig

# Re-exported (see __all__): the saved format's entry points, importable from here as before.
from core.model_format import BASE_TYPE_KEY, GUARDED_TYPE, guard_plain_loading, plain_loadable
from core.model_format import save as save_for_inference
from core.strategy_plan import (
    NO_DECAY_MARKERS,
    Named,
    StrategyError,
    StrategyPlan,
    decay_groups,
    per_depth_parts,
    set_trainable,
    split_parts,
    trainable_named,
)

Builder = Callable[[torch.nn.Module, RunConfig, "int | None"], StrategyPlan]

__all__ = ["BASE_TYPE_KEY", "GUARDED_TYPE", "NO_DECAY_MARKERS", "STRATEGIES", "Builder", "Named", "Parts", "StrategyError",
           "StrategyPlan", "build_strategy", "decay_groups", "guard_plain_loading", "plain_loadable", "save_for_inference",
           "set_trainable", "split_parts", "trainable_named"]


def _plan(kind: str, model: torch.nn.Module, config: RunConfig, trainable: Named, notes: list[str] | None = None) -> StrategyPlan:
    """Freeze all but ``trainable`` and put those in one learning-rate group (decay split kept)."""
    set_trainable(model, trainable)
    groups = decay_groups(trainable, config.train.learning_rate, config.train.weight_decay, kind)
    return StrategyPlan(kind, model, groups, notes=notes or [])


# --- builders -------------------------------------------------------------------------------------

def build_full(model: torch.nn.Module, config: RunConfig, num_train_rows: int | None = None) -> StrategyPlan:
    return _plan("full", model, config, list(model.named_parameters()))


def build_freeze(model: torch.nn.Module, config: RunConfig, num_train_rows: int | None = None) -> StrategyPlan:
    parts = per_depth_parts(model, "freeze")
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
    parts = per_depth_parts(model, "llrd")
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
    parts = per_depth_parts(model, "gradual_unfreeze")
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


def _lazy(spec: strategy_registry.StrategySpec) -> Builder:
    """The registry's builder, imported on first use: peft is heavy and only the PEFT strategies need it."""

    def build(model: torch.nn.Module, config: RunConfig, num_train_rows: int | None = None) -> StrategyPlan:
        return spec.resolve()(model, config, num_train_rows)

    build.__name__ = build.__qualname__ = spec.builder.partition(":")[2]
    return build


STRATEGIES: dict[str, Builder] = {kind: _lazy(spec) for kind, spec in strategy_registry.STRATEGIES.items()}


def build_strategy(model: torch.nn.Module, config: RunConfig, num_train_rows: int | None = None) -> StrategyPlan:
    """Apply ``config.strategy`` to ``model``; StrategyError if the kind or its options don't fit.

    ``num_train_rows`` lets step-scheduled strategies (AdaLoRA's rank budget) agree with the loop's
    step count (``core.schedule.plan_steps``).
    """
    kind = config.strategy.kind
    if kind not in STRATEGIES:
        raise StrategyError(f"strategy.kind={kind!r} is not available. Available: {', '.join(sorted(STRATEGIES))}.")
    plan = STRATEGIES[kind](model, config, num_train_rows)
    if not any(p.requires_grad for p in plan.model.parameters()):
        raise StrategyError(f"strategy {kind!r} left no parameter trainable.")
    return plan
