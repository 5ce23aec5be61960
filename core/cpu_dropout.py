"""Dropout for CPU training at under a third of torch's cost, and an eager attention that uses it.

Why hand-written: on the CPU, torch draws a dropout mask one Bernoulli sample per element from its
mt19937 generator (~4.5 ns per element on this machine class). A training step of MiniLM-L6 at
batch 16 draws ~3.7 million mask elements in its forward pass; switching dropout off took a step
from 117 to 91 ms. Here each 64-bit draw of the same generator gives four 16-bit lanes, compared
against a threshold: ~1.3 ns per element for the same distribution — independent Bernoulli masks,
keep probability ``1 - p`` to within 2^-17 (the rate is rounded to a multiple of 1/65536; the scale
``1 / (1 - p)`` uses the rounded rate, so the expected activation is unchanged). With it a step
takes 105 ms (bench/results/levers.md: 1.19x samples/s with eager attention below).

The draws come from torch's global generator, so ``torch.manual_seed`` reproduces a run and the
loop's RNG checkpoint resumes it. On other devices (CUDA has a fast Philox dropout) and in eval
mode the module is plain ``nn.Dropout``.

Attention dropout happens inside the attention function, not in a module, so
:func:`use_cpu_dropout` also switches BERT-family models (``EAGER_MODEL_TYPES``) to
``tuneboard_eager``: transformers' eager attention with this dropout. Eager attention is itself
faster than SDPA here: with dropout SDPA falls back to its math path (a step: 117 ms eager vs 126 ms
SDPA), and without dropout its CPU flash kernel is slower than eager on rows this short (an
evaluation batch: 21.5 vs 23.6 ms).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

LANES = 65536  # a 16-bit lane takes this many values
EAGER = "tuneboard_eager"
# Model types whose attention calls transformers' eager_attention_forward in exactly BERT's form
# (tests/test_cpu_dropout.py checks the source of each against BERT's); others keep their attention.
EAGER_MODEL_TYPES = {"bert": "bert", "roberta": "roberta", "xlm-roberta": "xlm_roberta", "electra": "electra",
                     "camembert": "camembert", "distilbert": "distilbert", "albert": "albert"}


def keep_multiplier(shape: torch.Size, p: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """``1 / (1 - p')`` where an element is kept and 0 where dropped, ``p'`` = ``p`` rounded to 1/65536."""
    n = math.prod(shape)
    dropped_lanes = round(p * LANES)
    # Full-range int64 draws (the default range would leave the top bit 0), read as four int16 lanes each.
    bits = torch.empty((n + 3) // 4, dtype=torch.int64, device=device).random_(-(2**63), 2**63 - 1)
    lanes = bits.view(torch.int16)[:n].view(shape)
    scale = torch.tensor(LANES / (LANES - dropped_lanes), dtype=dtype, device=device)
    # lanes are uniform over [-32768, 32767]: exactly dropped_lanes of the 65536 values lie below the threshold.
    return torch.where(lanes >= dropped_lanes - LANES // 2, scale, torch.zeros((), dtype=dtype, device=device))


def cpu_dropout(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    if not training or p == 0.0:
        return x
    if x.device.type != "cpu" or p >= 1.0:
        return nn.functional.dropout(x, p, training)
    return x * keep_multiplier(x.shape, p, x.dtype, x.device)


class CpuDropout(nn.Dropout):
    """``nn.Dropout`` with :func:`cpu_dropout` (a subclass: code that reads ``.p`` or checks the type still works)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return cpu_dropout(x, self.p, self.training)


def eager_attention(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                    attention_mask: torch.Tensor | None, scaling: float | None = None, dropout: float = 0.0,
                    **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """transformers' ``eager_attention_forward`` (BERT family, 5.x) with :func:`cpu_dropout` on the probabilities."""
    if scaling is None:
        scaling = query.size(-1) ** -0.5
    attn_weights = torch.matmul(query, key.transpose(2, 3)) * scaling
    if attention_mask is not None:
        attn_weights = attn_weights + attention_mask
    attn_weights = nn.functional.softmax(attn_weights, dim=-1)
    attn_weights = cpu_dropout(attn_weights, dropout, module.training)
    attn_output = torch.matmul(attn_weights, value).transpose(1, 2).contiguous()
    return attn_output, attn_weights


def _register() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, eager_mask

    AttentionInterface.register(EAGER, eager_attention)
    AttentionMaskInterface.register(EAGER, eager_mask)  # the additive float mask eager attention expects


def use_eager_attention(model: nn.Module) -> None:
    """Attention through :func:`eager_attention` (for evaluation on the CPU too: faster than SDPA on short rows)."""
    _register()
    for module in model.modules():
        config = getattr(module, "config", None)
        if (getattr(config, "model_type", None) in EAGER_MODEL_TYPES and hasattr(module, "set_attn_implementation")
                and getattr(config, "_attn_implementation", None) in ("sdpa", "eager")):
            module.set_attn_implementation(EAGER)


def use_cpu_dropout(model: nn.Module) -> int:
    """Swap every ``nn.Dropout`` in ``model`` for :class:`CpuDropout` and SDPA/eager attention for ``tuneboard_eager``.

    Returns how many dropout modules were swapped. Nothing saved changes: dropout has no weights and
    the attention choice is not written to ``config.json``.
    """
    swapped = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.Dropout:
                replacement = CpuDropout(child.p, child.inplace)
                replacement.train(child.training)
                setattr(parent, name, replacement)
                swapped += 1
    use_eager_attention(model)
    return swapped
