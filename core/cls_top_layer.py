"""The top encoder layer computes only the first token's output, the one a sequence-classification head reads.

Why hand-written: BERT's pooler (and the RoBERTa and ELECTRA classification heads) read only the
top layer's hidden state of the first token (``[CLS]`` / ``<s>``). The top layer still needs the
keys and values of every token (the first token attends to all of them), but its query, attention
output projection, LayerNorms and feed-forward block are row-wise: for every other token they
compute something nobody reads. Computing them for the first token alone removes 10/12 of the top
layer's weight FLOPs per token — for MiniLM-L6, ~14% of a training step's matmul work, forward and
backward — with the same result: the first token's output is the same function of the same inputs
(tests/core/test_speedups.py checks logits and gradients against the unchanged model). Only
dropout draws fewer random numbers, so a training run follows a different, equally likely dropout
sequence. bench/results/levers.md has the A/B.

Applied by the training loop (``TrainConfig.cls_only_top_layer``) to sequence-level tasks of the
BERT-layer family (``CLS_MODEL_TYPES``) and nowhere else: token classification reads every token,
DistilBERT's and ALBERT's layers are built differently, and a call that passes a cache (prefix
tuning) or cross-attention inputs runs the layer's own forward. The saved model is untouched: the
layer's forward is replaced on the instance, and neither weights nor ``config.json`` change.
"""

from __future__ import annotations

import types
from typing import Any

import torch
from torch import nn

from core import anatomy

# Model types whose layer is BERT's (attention.self.{query,key,value}, attention.output, intermediate,
# output) and whose sequence-classification head reads only the first token of the top layer.
CLS_MODEL_TYPES = ("bert", "roberta", "xlm-roberta", "camembert", "electra")


def supports(model: nn.Module) -> bool:
    """True for a sequence-classification model of ``CLS_MODEL_TYPES`` whose top layer is BERT-shaped."""
    task = anatomy.unwrap(model)
    if getattr(getattr(task, "config", None), "model_type", None) not in CLS_MODEL_TYPES:
        return False
    if not type(task).__name__.endswith("ForSequenceClassification"):
        return False
    # Masks as eager and SDPA attention take them (flash attention's unpadding expects every query row).
    if getattr(task.config, "_attn_implementation", "eager") not in ("eager", "sdpa", "tuneboard_eager"):
        return False
    try:
        top = anatomy.of(model).layers[-1]
    except (anatomy.AnatomyError, IndexError):
        return False
    attention = getattr(top, "attention", None)
    return (all(hasattr(getattr(attention, "self", None), p) for p in ("query", "key", "value", "scaling"))
            and not getattr(top, "add_cross_attention", False) and hasattr(top, "intermediate") and hasattr(top, "output"))


def _first_token_forward(self: nn.Module, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None,
                         encoder_hidden_states: torch.Tensor | None = None, *args: Any, **kwargs: Any) -> torch.Tensor:
    """BertLayer.forward for the first token's query only; returns hidden states of shape (batch, 1, hidden)."""
    if encoder_hidden_states is not None or kwargs.get("past_key_values") is not None or args:
        return type(self).forward(self, hidden_states, attention_mask, encoder_hidden_states, *args, **kwargs)
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
    from transformers.models.bert.modeling_bert import eager_attention_forward

    attn = self.attention.self
    batch, length, _ = hidden_states.shape
    first = hidden_states[:, :1]
    heads = (batch, -1, attn.attention_head_size)
    query = attn.query(first).view(batch, 1, *heads[1:]).transpose(1, 2)
    key = attn.key(hidden_states).view(batch, length, *heads[1:]).transpose(1, 2)
    value = attn.value(hidden_states).view(batch, length, *heads[1:]).transpose(1, 2)
    # A (batch, 1, queries, keys) mask: keep the first query's row (a (batch, 1, 1, keys) one broadcasts as is).
    mask = attention_mask[:, :, :1] if attention_mask is not None and attention_mask.dim() == 4 else attention_mask
    interface = ALL_ATTENTION_FUNCTIONS.get_interface(attn.config._attn_implementation, eager_attention_forward)
    context, _ = interface(attn, query, key, value, mask, dropout=attn.dropout.p if attn.training else 0.0,
                           scaling=attn.scaling)
    attention_output = self.attention.output(context.reshape(batch, 1, -1).contiguous(), first)
    return self.output(self.intermediate(attention_output), attention_output)


def first_token_only(layer: nn.Module) -> bool:
    """Whether :func:`use_cls_only_top_layer` made ``layer`` compute its first token only (core.unpadded asks)."""
    return getattr(layer.__dict__.get("forward"), "__func__", None) is _first_token_forward


def use_cls_only_top_layer(model: nn.Module) -> bool:
    """Make the top layer of ``model`` compute its first token only; False (and nothing changed) where unsupported."""
    if not supports(model):
        return False
    top = anatomy.of(model).layers[-1]
    top.forward = types.MethodType(_first_token_forward, top)
    return True


def restore_top_layer(model: nn.Module) -> None:
    """Undo :func:`use_cls_only_top_layer` (every token's output again)."""
    try:
        top = anatomy.of(model).layers[-1]
    except anatomy.AnatomyError:
        return
    top.__dict__.pop("forward", None)
