"""The encoder computes real tokens only: padding never enters a projection, feed-forward block or LayerNorm.

Why hand-written: a batch is padded to its longest text (rounded up to a multiple of 8), and every
row-wise module of every layer — the query/key/value and output projections, the feed-forward
block, both LayerNorms, dropout — then computes each padding position as if it were a token, for an
output nothing reads. On the bundled data, length-grouped batches compute 19–27% more tokens than
the texts have (bench/results/latest.md, "Padding"), and those modules are most of an fp32 step.
Here the layers run on the batch's real tokens packed into one ``(tokens, hidden)`` matrix; only
attention, which needs each text's tokens side by side, sees a padded ``(batch, heads, length,
head)`` view: one gather per query, key and value into the padded grid, one gather of the context
back. This is the CPU counterpart of the variable-length (padding-free) kernels flash attention
offers on GPUs.

The result is the padded model's: a real token's hidden state never depends on padding (padded keys
are masked out of attention; right padding, as core.tokenize pads), so logits and gradients agree up to float rounding
(tests/core/test_speedups.py); padding positions of the output are zeros rather than values nobody
reads. Only dropout draws fewer random numbers, so a training run follows a different, equally likely
dropout sequence. bench/results/levers.md has the A/B.

Applied (``TrainConfig.skip_padding``) where :func:`pays_off` — fp32 training, and evaluation and
prediction, on the CPU — to models whose encoder is a list of BERT-shaped layers (``MODEL_TYPES``,
encoder-only, no cross-attention, eager or SDPA attention). A top layer that core.cls_top_layer
made compute its first token only does so here too. A call that passes a cache or cross-attention
inputs, asks for hidden states or attentions, has no padding, or is padded on the left runs the
encoder's own forward. The saved model is untouched: the forward is replaced on the encoder instance
only.
"""

from __future__ import annotations

import contextlib
import types
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from core import anatomy
from core.cls_top_layer import first_token_only

MODEL_TYPES = ("bert", "roberta", "xlm-roberta", "camembert", "electra")
ATTENTION = ("eager", "sdpa", "tuneboard_eager")


def pays_off(device: torch.device, training_precision: str | None = None) -> bool:
    """Where leaving padding out is faster (bench/results/levers.md, 2 cores): on the CPU, for evaluation and
    prediction (``training_precision`` None) in fp32 and bf16 (7% and 10% more texts/s), and for training in
    fp32 (``"no"``, as core.device.resolve_precision says it; 1.12x) but not in bf16, where steps were slower
    (0.91x full fine-tuning, 0.85x LoRA): a bf16 matmul on the CPU takes nearly as long for fewer rows, so
    only the packing's own cost remains."""
    return device.type == "cpu" and training_precision in (None, "no")


def supports(model: nn.Module) -> bool:
    """True where the encoder is a list of BERT-shaped self-attention layers this module knows how to run."""
    try:
        body = anatomy.of(model)
    except anatomy.AnatomyError:
        return False
    encoder = _encoder(model)
    config = getattr(encoder, "config", None)
    if (encoder is None or getattr(config, "model_type", None) not in MODEL_TYPES or getattr(config, "is_decoder", False)
            or getattr(config, "_attn_implementation", "eager") not in ATTENTION or not body.layers):
        return False
    return all(_bert_shaped(layer) for layer in body.layers)


def _bert_shaped(layer: nn.Module) -> bool:
    attention = getattr(layer, "attention", None)
    return (all(hasattr(getattr(attention, "self", None), p) for p in ("query", "key", "value", "scaling", "attention_head_size"))
            and hasattr(attention, "output") and hasattr(layer, "intermediate") and hasattr(layer, "output")
            and not getattr(layer, "add_cross_attention", False) and getattr(layer, "chunk_size_feed_forward", 0) == 0)


def _encoder(model: nn.Module) -> nn.Module | None:
    base = getattr(anatomy.unwrap(model), "base_model", None)
    encoder = getattr(base, "encoder", None)
    return encoder if isinstance(getattr(encoder, "layer", None), nn.ModuleList) else None


def use_unpadded_encoder(model: nn.Module) -> bool:
    """Run ``model``'s encoder on real tokens only; False (and nothing changed) where unsupported.

    A top layer that core.cls_top_layer made compute its first token only does so here too (the
    encoder's output then has length 1).
    """
    if not supports(model):
        return False
    encoder = _encoder(model)
    encoder.forward = types.MethodType(_unpadded_forward, encoder)
    return True


@contextlib.contextmanager
def encoder_without_padding(model: nn.Module, enabled: bool = True) -> Iterator[None]:
    """Within: ``model``'s encoder runs on real tokens where supported; afterwards as it was (an encoder
    already running so, as in fp32 training, stays so)."""
    encoder = _encoder(model)
    applied = enabled and encoder is not None and "forward" not in encoder.__dict__ and use_unpadded_encoder(model)
    try:
        yield
    finally:
        if applied:
            restore_encoder(model)


def restore_encoder(model: nn.Module) -> None:
    """Undo :func:`use_unpadded_encoder`."""
    encoder = _encoder(model)
    if encoder is not None:
        encoder.__dict__.pop("forward", None)


def _keep(attention_mask: torch.Tensor | None) -> torch.Tensor | None:
    """(batch, length) bool of real tokens from the model's 4-D mask, None when nothing is padded.

    The encoder gets the mask transformers built for its attention: additive floats (0 where a key
    may be attended) or booleans, (batch, 1, queries or 1, keys), every query row alike for an
    encoder's padding mask. A key is real when the first query may attend to it.
    """
    if attention_mask is None or attention_mask.dim() != 4:
        return None
    row = attention_mask[:, 0, 0, :]
    keep = row if row.dtype == torch.bool else row == 0
    return None if bool(keep.all()) else keep


def _capturing_outputs() -> bool:
    """Whether the caller asked for hidden states or attentions. transformers 5.x collects them with hooks on the
    layers' own calls, which the packed forward doesn't make, so such a call runs the encoder's own forward.
    The collector is transformers' (private) context variable: where it is missing, nothing is collected."""
    try:
        from transformers.utils.output_capturing import _active_collector
    except ImportError:
        return False
    return bool(_active_collector.get())


class _Layout:
    """Where a batch's real tokens sit: ``slots`` (their positions in the flattened ``(batch * length)`` grid, in
    order) and ``source`` (for every grid position, its token's index, or ``len(slots)`` — a zero row — for padding)."""

    def __init__(self, keep: torch.Tensor):
        self.batch, self.length = keep.shape
        self.slots = keep.reshape(-1).nonzero().squeeze(1)
        self.source = torch.full((keep.numel(),), len(self.slots), dtype=torch.long, device=keep.device)
        self.source[self.slots] = torch.arange(len(self.slots), device=keep.device)


class _ToGrid(torch.autograd.Function):
    """Packed tokens ``(n, c)`` -> grid ``(batch * length, c)``, zeros at padding.

    Written out because it is the hot path: a gather from the tokens plus one zero row is 2-4x faster
    on the CPU than ``index_copy`` into zeros, and its gradient is a plain gather of the real slots
    (autograd's would be an ``index_add`` into zeros).
    """

    @staticmethod
    def forward(ctx: Any, tokens: torch.Tensor, layout: _Layout) -> torch.Tensor:
        ctx.layout = layout
        return torch.cat([tokens, tokens.new_zeros(1, tokens.shape[-1])]).index_select(0, layout.source)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad.index_select(0, ctx.layout.slots), None


class _FromGrid(torch.autograd.Function):
    """Grid ``(batch * length, c)`` -> its real tokens ``(n, c)``; the gradient goes back to the grid with zeros at padding."""

    @staticmethod
    def forward(ctx: Any, grid: torch.Tensor, layout: _Layout) -> torch.Tensor:
        ctx.layout = layout
        return grid.index_select(0, layout.slots)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return _ToGrid.forward(ctx, grad, ctx.layout), None


def _unpadded_forward(self: nn.Module, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None,
                      encoder_hidden_states: torch.Tensor | None = None, *args: Any, **kwargs: Any) -> Any:
    keep = _keep(attention_mask)
    # Packed rows assume what PaddingCollator makes: right padding, every row starting with a real token.
    plain = (keep is None or not bool(keep[:, 0].all()) or hidden_states.device.type != "cpu" or encoder_hidden_states is not None
             or args or kwargs.get("past_key_values") is not None or _capturing_outputs())
    if plain:
        return type(self).forward(self, hidden_states, attention_mask, encoder_hidden_states, *args, **kwargs)
    from transformers.modeling_outputs import BaseModelOutputWithPastAndCrossAttentions

    batch, length, width = hidden_states.shape
    layout = _Layout(keep)
    tokens = _FromGrid.apply(hidden_states.reshape(batch * length, width), layout)
    layers = list(self.layer)  # all of them, or those core.frozen_cache swapped in
    for i, layer in enumerate(layers):
        if i == len(layers) - 1 and first_token_only(layer):
            # Each text's first token: the first real slot of each row (right padding: its row's start).
            firsts = keep.int().cumsum(1).eq(1).logical_and(keep).reshape(-1).nonzero().squeeze(1)
            out = _layer(layer, tokens, layout, attention_mask, queries=layout.source[firsts])
            return BaseModelOutputWithPastAndCrossAttentions(last_hidden_state=out)
        tokens = _layer(layer, tokens, layout, attention_mask)
    grid = _ToGrid.apply(tokens, layout)
    return BaseModelOutputWithPastAndCrossAttentions(last_hidden_state=grid.view(batch, length, -1))


def _layer(layer: nn.Module, tokens: torch.Tensor, layout: _Layout, mask: torch.Tensor,
           queries: torch.Tensor | None = None) -> torch.Tensor:
    """One BERT layer on packed tokens ``(n, hidden)``; with ``queries`` (indices into the tokens, one per row),
    only those tokens' outputs, ``(batch, 1, hidden)``."""
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
    from transformers.models.bert.modeling_bert import eager_attention_forward

    attn = layer.attention.self
    head = attn.attention_head_size
    width = attn.query.out_features
    batch, length = layout.batch, layout.length

    def grid(x: torch.Tensor) -> torch.Tensor:  # packed (n, width) -> (batch, heads, length, head), zeros at padding
        return _ToGrid.apply(x, layout).view(batch, length, -1, head).transpose(1, 2)

    key, value = grid(attn.key(tokens)), grid(attn.value(tokens))
    if queries is None:
        residual = tokens
        query = grid(attn.query(tokens))
    else:  # (batch, 1, hidden), as core.cls_top_layer's top layer computes it
        residual = tokens.index_select(0, queries).unsqueeze(1)
        query = attn.query(residual).view(batch, 1, -1, head).transpose(1, 2)
        mask = mask[:, :, :1]
    interface = ALL_ATTENTION_FUNCTIONS.get_interface(attn.config._attn_implementation, eager_attention_forward)
    context, _ = interface(attn, query, key, value, mask, dropout=attn.dropout.p if attn.training else 0.0, scaling=attn.scaling)
    # context: (batch, queries, heads, head), as the attention functions of transformers 5.x return it
    context = context.reshape(batch, -1, width)
    if queries is None:
        context = _FromGrid.apply(context.reshape(batch * length, width), layout)
    attention_output = layer.attention.output(context, residual)
    return layer.output(layer.intermediate(attention_output), attention_output)
