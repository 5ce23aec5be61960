"""Bottleneck adapters (Houlsby et al., 2019; Pfeiffer et al., 2021), hand-written.

Why our own ~100 lines: peft has no bottleneck adapter (peft#244), and AdapterHub's ``adapters``
package pins transformers 4.57 while we run transformers 5. The module is small enough to own.

An adapter is ``x + up(act(down(x)))`` with ``down: hidden -> hidden / reduction_factor`` and
``up`` initialised to zero, so before the first step the model computes exactly what the
pretrained model does. It is applied to the output of a sublayer's ``dense`` projection, i.e.
before dropout, the residual add and the LayerNorm of ``BertSelfOutput`` / ``BertOutput``:

* ``houlsby``: after the attention output projection and after the feed-forward output projection;
* ``pfeiffer``: after the feed-forward output projection only.

The ``dense`` module is replaced by :class:`AdaptedLinear`, a ``Linear`` that *shares* the original
weight and bias and owns the adapter as a child. So the base model's parameter names don't change
(``...output.dense.weight``); the adapter adds ``...output.dense.adapter.{down,up}.*``. No forward
hooks: a deep copy or a pickle carries the adapters with it.

Saving and loading are ``core.model_format``'s: ``model/`` holds the full weights, adapters included,
and ``config.json`` the adapters' kind and reduction factor (the plan's ``save_options``), from which
``load_saved`` (and so the Predictor) puts them back in with :func:`insert_adapters`.
"""

from __future__ import annotations

import torch
from torch import nn

from core import anatomy
from core.config import RunConfig
from core.strategy_plan import StrategyError, StrategyPlan, decay_groups, set_trainable, split_parts

# Which ``dense`` projections of a BERT-family layer get an adapter, per kind.
SITES = {"houlsby": ("attention.output.dense", "output.dense"), "pfeiffer": ("output.dense",)}


class Bottleneck(nn.Module):
    """``x + up(relu(down(x)))``; ``up`` starts at zero so the adapter starts as the identity."""

    def __init__(self, hidden: int, bottleneck: int):
        super().__init__()
        self.down = nn.Linear(hidden, bottleneck)
        self.up = nn.Linear(bottleneck, hidden)
        nn.init.normal_(self.down.weight, std=0.02)
        nn.init.zeros_(self.down.bias)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.up(torch.relu(self.down(x)))


class AdaptedLinear(nn.Linear):
    """A Linear that shares an existing layer's weight and bias and runs a bottleneck adapter on its output."""

    def __init__(self, base: nn.Linear, bottleneck: int):
        super().__init__(base.in_features, base.out_features, bias=base.bias is not None,
                         device=base.weight.device, dtype=base.weight.dtype)
        self.weight = base.weight
        self.bias = base.bias
        self.adapter = Bottleneck(base.out_features, bottleneck).to(base.weight.device, base.weight.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.adapter(super().forward(x))


def insert_adapters(model: nn.Module, kind: str, reduction_factor: int) -> list[nn.Module]:
    """Put adapters into every encoder layer of ``model``; returns the adapter modules. StrategyError if it can't."""
    if kind not in SITES:
        raise StrategyError(f"strategy.adapter_kind={kind!r}: choose one of {', '.join(SITES)}")
    try:
        layers = anatomy.encoder_layers(model)
    except anatomy.AnatomyError as exc:
        raise StrategyError(f"adapters need a BERT-family encoder: {exc}") from None
    hidden = model.config.hidden_size
    bottleneck = max(1, hidden // reduction_factor)
    adapters: list[nn.Module] = []
    for layer in layers:
        for site in SITES[kind]:
            parent_name, _, leaf = site.rpartition(".")
            parent = anatomy.get_path(layer, parent_name)
            dense = getattr(parent, leaf, None) if parent is not None else None
            if isinstance(dense, AdaptedLinear):
                raise StrategyError("this model already has adapters; load a fresh model for a new run")
            if not isinstance(dense, nn.Linear):
                raise StrategyError(
                    f"{type(model).__name__} has no '{site}' linear layer in its encoder layers (BERT, RoBERTa, ELECTRA "
                    "and similar have one); bottleneck adapters can't be placed. Use lora or ia3."
                )
            adapted = AdaptedLinear(dense, bottleneck)
            setattr(parent, leaf, adapted)
            adapters.append(adapted.adapter)
    return adapters


def build_adapter(model: nn.Module, config: RunConfig, num_train_rows: int | None = None) -> StrategyPlan:
    """Adapters and the task head train; the pretrained encoder (LayerNorms included) stays frozen."""
    s = config.strategy
    hidden = getattr(model.config, "hidden_size", 0)
    if s.reduction_factor > hidden:
        raise StrategyError(f"strategy.reduction_factor={s.reduction_factor} is above the hidden size {hidden}; "
                            f"the bottleneck would be empty. Fix: 1..{hidden}.")
    head = split_parts(model).head
    adapters = insert_adapters(model, s.adapter_kind, s.reduction_factor)
    adapter_params = [(f"adapter{i}.{n}", p) for i, a in enumerate(adapters) for n, p in a.named_parameters()]
    set_trainable(model, adapter_params + head)
    groups = decay_groups(adapter_params, config.train.learning_rate, config.train.weight_decay, "adapters")
    groups += decay_groups(head, config.train.learning_rate, config.train.weight_decay, "head")
    note = f"{s.adapter_kind} adapters, bottleneck {max(1, hidden // s.reduction_factor)} (hidden {hidden} / {s.reduction_factor})"
    return StrategyPlan("adapter", model, groups, notes=[note], save_format="adapter",
                        save_options={"kind": s.adapter_kind, "reduction_factor": s.reduction_factor})

