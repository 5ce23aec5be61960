"""Fine-tuning strategies as data: which parameters train, in which groups, at which learning rates.

A strategy is a function ``build(model, config) -> StrategyPlan``. The plan carries the (possibly
wrapped) model, the optimizer's parameter groups, and optional hooks the loop calls at fixed points
(``on_epoch_start`` for gradual unfreezing, ``after_optimizer_step`` for AdaLoRA's rank
reallocation). There is no class hierarchy: adding a strategy is adding one builder to STRATEGIES.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from core.config import RunConfig

NO_DECAY_MARKERS = ("bias", "LayerNorm.weight", "layer_norm.weight", "LayerNorm.bias")


class StrategyError(ValueError):
    """The strategy's options don't fit the model; raised before any training starts."""


@dataclass
class StrategyPlan:
    kind: str
    model: torch.nn.Module
    param_groups: list[dict[str, Any]]
    on_epoch_start: Callable[[int], None] | None = None
    after_optimizer_step: Callable[[int], None] | None = None
    notes: list[str] = field(default_factory=list)

    def describe(self) -> dict[str, Any]:
        """Trainable and total parameter counts and the groups with their learning rates."""
        total = sum(p.numel() for p in self.model.parameters())
        trainable = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
        groups = [
            {"name": g.get("name", f"group{i}"), "lr": g["lr"], "weight_decay": g.get("weight_decay", 0.0),
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


def decay_groups(named: list[tuple[str, torch.nn.Parameter]], lr: float, weight_decay: float, name: str) -> list[dict[str, Any]]:
    """Split parameters into weight-decay and no-decay (biases, LayerNorm) groups at one learning rate."""
    decay = [p for n, p in named if not any(m in n for m in NO_DECAY_MARKERS)]
    no_decay = [p for n, p in named if any(m in n for m in NO_DECAY_MARKERS)]
    groups = []
    if decay:
        groups.append({"name": name, "params": decay, "lr": lr, "weight_decay": weight_decay})
    if no_decay:
        groups.append({"name": f"{name} (no decay)", "params": no_decay, "lr": lr, "weight_decay": 0.0})
    return groups


def trainable_named(model: torch.nn.Module) -> list[tuple[str, torch.nn.Parameter]]:
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad]


def build_full(model: torch.nn.Module, config: RunConfig) -> StrategyPlan:
    for p in model.parameters():
        p.requires_grad_(True)
    groups = decay_groups(trainable_named(model), config.train.learning_rate, config.train.weight_decay, "all")
    return StrategyPlan("full", model, groups)


STRATEGIES: dict[str, Callable[[torch.nn.Module, RunConfig], StrategyPlan]] = {
    "full": build_full,
}


def build_strategy(model: torch.nn.Module, config: RunConfig) -> StrategyPlan:
    """Apply ``config.strategy`` to ``model``; StrategyError if the kind or its options don't fit."""
    kind = config.strategy.kind
    if kind not in STRATEGIES:
        raise StrategyError(
            f"strategy.kind={kind!r} is not available yet. Available: {', '.join(sorted(STRATEGIES))}."
        )
    plan = STRATEGIES[kind](model, config)
    if not any(p.requires_grad for p in plan.model.parameters()):
        raise StrategyError(f"strategy {kind!r} left no parameter trainable.")
    return plan


def save_for_inference(plan: StrategyPlan, model: torch.nn.Module, out_dir: Any) -> None:
    """Write ``model/`` so that plain ``transformers`` (AutoModel…from_pretrained, pipeline) loads it."""
    model.save_pretrained(out_dir, safe_serialization=True)
