"""Every fine-tuning strategy, one entry each: the one place its facts live.

An entry says what the strategy is called (``kind``), what it does in one line (the dashboard's
choice list), which learning rate it wants (comparisons and the Strategy form), which
``StrategyConfig`` options belong to it (the form shows those), and which function builds it.
``core.config`` takes its choices from here, ``core.strategies`` its builders, ``core.compare`` its
default rates and ``ui.forms`` its help texts.

Cheap to import on purpose — no torch, transformers or peft, and no other core module: the
dashboard reads it at page load. The builder is a ``"module:function"`` string, imported on first
use (:meth:`StrategySpec.resolve`), so peft loads only for the strategies that need it.

Learning rates: strategies that train few parameters want a much larger rate than full fine-tuning
(LoRA, adapters and a linear probe ~1e-3..1e-2 against ~5e-5), so one shared rate would make a
comparison measure the rate, not the strategy. ``default_learning_rate`` None means the base
config's ``train.learning_rate``: the kinds that update most weights, for which the base config is
normally tuned. The others follow their papers' ranges, checked on the bundled MiniLM.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# TrainConfig's default learning rate (core.config reads it from here): full fine-tuning's rate, which
# the Strategy form proposes for the kinds whose default_learning_rate is None.
BASE_LEARNING_RATE = 5e-5


class UnknownStrategyError(ValueError):
    """A strategy kind that is not in the registry; the message lists the known ones."""


@dataclass(frozen=True)
class StrategySpec:
    """One strategy's facts.

    ``options``: the ``StrategyConfig`` fields specific to this kind. Fields that no kind names (class
    weights, label smoothing: they act on the loss) apply to every kind.
    """

    kind: str
    summary: str  # one line, for the dashboard's choice list
    default_learning_rate: float | None  # for comparisons; None: the base config's train.learning_rate
    options: tuple[str, ...]
    builder: str  # "module:function", imported by resolve()
    # The learning rate the Strategy form proposes when this kind is picked: the default, or the base
    # config's default rate where the default is None. Derived, not given.
    form_learning_rate: float = field(init=False)

    def __post_init__(self) -> None:
        rate = BASE_LEARNING_RATE if self.default_learning_rate is None else self.default_learning_rate
        object.__setattr__(self, "form_learning_rate", rate)

    def resolve(self) -> Callable[..., Any]:
        """The builder function ``build(model, run_config, num_train_rows) -> StrategyPlan`` (imports its module)."""
        module, _, name = self.builder.partition(":")
        return getattr(importlib.import_module(module), name)


_LORA = ("lora_r", "lora_alpha", "lora_dropout", "target_modules")

_SPECS = (
    StrategySpec("full", "Train every weight. The quality reference; the most memory and time.",
                 None, (), "core.strategies:build_full"),
    StrategySpec("freeze", "Freeze the embeddings and the bottom N layers; train the rest.",
                 None, ("freeze_layers",), "core.strategies:build_freeze"),
    StrategySpec("head_only", "Train only the classification head on frozen features. Fastest, weakest.",
                 5e-3, (), "core.strategies:build_head_only"),
    StrategySpec("bitfit", "Train only the bias terms (and the head): ~0.1% of the weights.",
                 1e-3, (), "core.strategies:build_bitfit"),
    # The head's rate; lower layers decay from it.
    StrategySpec("llrd", "Layer-wise learning-rate decay: lower layers learn more slowly than upper ones.",
                 None, ("layer_decay",), "core.strategies:build_llrd"),
    # train.learning_rate is not used: strategy.embeddings_lr / encoder_lr / head_lr set its rates.
    StrategySpec("discriminative", "Separate learning rates for embeddings, encoder and head.",
                 None, ("embeddings_lr", "encoder_lr", "head_lr"), "core.strategies:build_discriminative"),
    StrategySpec("gradual_unfreeze", "Start with the head; unfreeze one more layer from the top every few epochs (ULMFiT).",
                 None, ("unfreeze_every", "unfreeze_every_steps"), "core.strategies:build_gradual_unfreeze"),
    StrategySpec("lora", "Low-rank adapters on the attention projections; the base model stays frozen.",
                 1e-3, _LORA, "core.peft_strategies:build_lora"),
    # With peft's orthogonality penalty (weight 0.5) 2e-3 stayed at the class prior for 189 steps.
    StrategySpec("adalora", "LoRA whose rank budget is reallocated during training to the layers that need it.",
                 5e-3, (*_LORA, "adalora_target_r", "adalora_orth_reg_weight"), "core.peft_strategies:build_adalora"),
    StrategySpec("ia3", "Learned scaling vectors on keys, values and feed-forward: very few parameters.",
                 5e-3, ("target_modules",), "core.peft_strategies:build_ia3"),
    StrategySpec("prefix", "Trainable virtual tokens prepended to every layer's attention.",
                 1e-2, ("prefix_tokens",), "core.peft_strategies:build_prefix"),
    StrategySpec("adapter", "Small bottleneck layers inserted after attention/FFN (Houlsby or Pfeiffer).",
                 1e-3, ("adapter_kind", "reduction_factor"), "core.adapters:build_adapter"),
)

STRATEGIES: dict[str, StrategySpec] = {s.kind: s for s in _SPECS}
KINDS: tuple[str, ...] = tuple(STRATEGIES)


def spec(kind: str) -> StrategySpec:
    """The entry of ``kind``; UnknownStrategyError (a ValueError) naming the known kinds otherwise."""
    try:
        return STRATEGIES[kind]
    except (KeyError, TypeError):
        raise UnknownStrategyError(f"unknown strategy kind {kind!r}; the strategies are {', '.join(KINDS)}") from None


def kinds_with_option(option: str) -> tuple[str, ...]:
    """The kinds a ``StrategyConfig`` option belongs to, in registry order; () for options every kind has."""
    return tuple(s.kind for s in _SPECS if option in s.options)
