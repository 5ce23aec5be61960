"""What every strategy builder returns (:class:`StrategyPlan`) and the helpers all builders share.

Apart from ``core.strategies`` so that the builders in other modules (``core.peft_strategies``,
``core.adapters``) and the saved-model format (``core.model_format``) depend on this small module,
not on the module that lists the builders; ``core.strategies`` re-exports all of it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from core import anatomy
from core.anatomy import Parts

NO_DECAY_MARKERS = ("bias", "LayerNorm.weight", "layer_norm.weight", "LayerNorm.bias")
Named = list[tuple[str, torch.nn.Parameter]]


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
    # How core.model_format writes model/: "plain" (save_pretrained), "peft_merge", "peft_prefix", "adapter".
    save_format: str = "plain"
    # What core.model_format records in the saved config.json to rebuild the model (the adapters' kind
    # and reduction factor).
    save_options: dict[str, Any] = field(default_factory=dict)
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


def set_trainable(model: torch.nn.Module, named: Named) -> None:
    """Freeze everything, then unfreeze exactly ``named``."""
    keep = {id(p) for _, p in named}
    for p in model.parameters():
        p.requires_grad_(id(p) in keep)


def split_parts(model: torch.nn.Module) -> Parts:
    """Every parameter by part (core.anatomy: embeddings / layer i / pooler / head); StrategyError if the
    model isn't laid out like a BERT-family encoder."""
    try:
        return anatomy.split_parts(model)
    except anatomy.AnatomyError as exc:
        raise StrategyError(f"{exc}; layer-wise strategies can't tell its layers apart. Use full, lora, ia3 or adapter.") from None


def per_depth_parts(model: torch.nn.Module, kind: str) -> Parts:
    """:func:`split_parts` for strategies that treat each depth apart; StrategyError for ALBERT's shared layers."""
    parts = split_parts(model)
    if anatomy.of(model).shared_layers:
        depth = getattr(getattr(model, "config", None), "num_hidden_layers", "all")
        raise StrategyError(
            f"{kind} treats each encoder layer apart, but {type(anatomy.unwrap(model)).__name__} runs one shared set of "
            f"layer weights at all its {depth} depths (ALBERT). Use full, discriminative, bitfit, head_only, lora or ia3."
        )
    return parts
