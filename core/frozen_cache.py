"""Compute the frozen bottom of the encoder once per row and reuse it in every later epoch.

With the ``freeze`` strategy the embeddings and the bottom k encoder layers never change. The loop
runs them in eval mode (no dropout: see :func:`frozen_prefix_modules`), so they compute the same
hidden states for a row in every epoch. :class:`FrozenPrefixCache` stores those hidden states
(unpadded, one tensor per row) the first time a row is seen and afterwards starts the forward pass
at layer k. The model's own forward still runs (masks, top layers, pooler, head); only its
embedding modules and its layer list (where they sit: core.anatomy) are swapped for one call.

Padding doesn't change a row's hidden states (padded keys are masked out), so the cached path
computes what the uncached one does, up to float rounding; tests/test_speedups.py checks it.
"""

from __future__ import annotations

import torch

from core import anatomy

# Above this many bytes of hidden states the cache is not used (a run falls back to recomputing).
DEFAULT_BUDGET_BYTES = 2 * 2**30


def supports(model: torch.nn.Module, num_frozen: int) -> bool:
    """True for a BERT-family model with a layer per depth (not ALBERT) whose embeddings and ``num_frozen`` ≥ 1
    bottom layers are frozen."""
    try:
        body = anatomy.of(model)
    except anatomy.AnatomyError:
        return False
    if num_frozen < 1 or body.layer_list is None:
        return False
    prefix = [*body.embeddings, *body.layers[:num_frozen]]
    return num_frozen < len(body.layers) and not any(p.requires_grad for m in prefix for p in m.parameters())


def frozen_prefix_modules(model: torch.nn.Module, num_frozen: int) -> list[torch.nn.Module]:
    """The embeddings and the bottom ``num_frozen`` layers: the loop keeps these in eval mode.

    Frozen layers run without dropout. Their weights never change, so in eval mode they are a fixed
    feature extractor — which is what makes their output cacheable.
    """
    if num_frozen < 1:
        return []
    body = anatomy.of(model)
    return [*body.embeddings, *body.layers[:num_frozen]]


class _Given(torch.nn.Module):
    """Stands in for the embeddings: returns hidden states computed earlier."""

    def __init__(self, hidden: torch.Tensor):
        super().__init__()
        self.hidden = hidden

    def forward(self, *args: object, **kwargs: object) -> torch.Tensor:
        return self.hidden


class FrozenPrefixCache:
    """Hidden states after the frozen prefix, per row of one dataset (rows are the dataset's indices)."""

    def __init__(self, model: torch.nn.Module, num_frozen: int):
        self.model = model
        self.body = anatomy.of(model)
        self.base = self.body.backbone
        self.layers = list(self.body.layers)
        self.k = num_frozen
        self.rows: dict[int, torch.Tensor] = {}
        self.computed = 0  # rows whose prefix was computed (each once)

    @staticmethod
    def fits(lengths: object, hidden_size: int, budget_bytes: int = DEFAULT_BUDGET_BYTES) -> bool:
        """Whether the hidden states of rows of these lengths (fp32) stay within ``budget_bytes``."""
        return int(sum(int(n) for n in lengths)) * hidden_size * 4 <= budget_bytes

    def _compute(self, rows: list[int], inputs: dict[str, torch.Tensor]) -> None:
        """Run the prefix on the batch positions whose rows are not cached yet and store each row unpadded."""
        missing = [j for j, r in enumerate(rows) if r not in self.rows]
        if not missing:
            return
        sub = {k: v[missing] for k, v in inputs.items()}
        # no_grad, not inference_mode: the stored tensors feed the top layers' autograd graph later.
        with torch.no_grad(), self.body.swapped(layers=self.layers[: self.k]):
            hidden = self.base(**sub).last_hidden_state
        lengths = sub["attention_mask"].sum(1).tolist() if "attention_mask" in sub else [hidden.shape[1]] * len(missing)
        for i, (j, n) in enumerate(zip(missing, lengths, strict=True)):
            self.rows[rows[j]] = hidden[i, : int(n)].clone()
        self.computed += len(missing)

    def forward(self, rows: list[int], inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """The model's logits for ``inputs`` (a padded batch of dataset rows ``rows``), starting at layer k."""
        self._compute(rows, inputs)
        width = inputs["input_ids"].shape[1]
        first = self.rows[rows[0]]
        hidden = first.new_zeros((len(rows), width, first.shape[-1]))
        for j, r in enumerate(rows):
            cached = self.rows[r]
            hidden[j, : cached.shape[0]] = cached
        # The stored states stand in for the embeddings; a projection after them (ELECTRA's) is already applied.
        given = [_Given(hidden), *(torch.nn.Identity() for _ in self.body.embedding_paths[1:])]
        with self.body.swapped(embeddings=given, layers=self.layers[self.k :]):
            return self.model(**inputs).logits
