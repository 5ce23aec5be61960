"""Compression methods: what turns a finished run's model into a smaller or faster one (issue #13).

One entry per method in :data:`METHODS` (its help, the tasks it takes, whether it needs gradients to
be explained later); :mod:`core.derived` makes the derived run, this module only changes models.

``int8`` — dynamic int8 quantization of every ``nn.Linear``: weights stored as int8 with a scale per
output channel, activations quantized per batch at run time, matmuls in int8 (fbgemm/x86 kernels).
The embeddings and LayerNorms stay fp32 — for MiniLM-L6 the word embeddings are half of the
parameters, so the model shrinks by less than 4x. Saved as what it is: the derived run's ``model/`` is
the parent's fp32 folder (hard links where the file system allows: no second copy on disk) with a
marker in ``config.json`` (:data:`MARKER`), and :func:`apply_at_load` re-quantizes at load. Why not a
saved int8 state dict: torch's packed int8 weights only load through pickle (``weights_only`` refuses
them), and re-quantizing is deterministic and takes well under a second.

The backend is torch's ``torch.ao.quantization.quantize_dynamic``, deprecated in torch 2.13 in favour of
torchao, whose CPU int8 path is slower than it without ``torch.compile`` (pytorch/ao#4365, #3157):
:func:`quantize_int8` is the one place that calls it, so the backend can move.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

MARKER = "tuneboard_compression"  # model/config.json: {"method": ..., "options": {...}}


@dataclass(frozen=True)
class Method:
    name: str
    help: str
    tasks: tuple[str, ...]  # the tasks it can compress
    gradients: bool  # whether the compressed model still has gradients (explanations); else explain via the parent


METHODS = {
    "int8": Method("int8", "Dynamic int8 quantization of the linear layers, for CPU inference (re-quantized at load).",
                   ("single_label", "multi_label", "pair", "regression", "token"), gradients=False),
}


class CompressionError(ValueError):
    """A method that can't apply to this run or model; the message says why and what to do."""


def method(name: str) -> Method:
    if name not in METHODS:
        raise CompressionError(f"unknown compression method {name!r}; the methods are: {', '.join(METHODS)}")
    return METHODS[name]


def quantize_int8(model: torch.nn.Module) -> torch.nn.Module:
    """``model`` with every ``nn.Linear`` dynamically quantized to int8 (a new module; ``model`` is unchanged)."""
    import warnings

    import torch
    from torch.ao.quantization import quantize_dynamic

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the deprecation notice, once per process: see the module docstring
        return quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8, inplace=False)


def apply_at_load(model: torch.nn.Module, marker: dict[str, Any]) -> torch.nn.Module:
    """What :func:`core.model_format.load_saved` does to a folder carrying :data:`MARKER`."""
    name = marker.get("method")
    if name == "int8":
        return quantize_int8(model.eval())
    raise CompressionError(f"this model folder was compressed with {name!r}, which this Tuneboard does not know; "
                           f"it knows {', '.join(METHODS)}. Upgrade Tuneboard or compress the parent run again.")


def serialized_mb(model: torch.nn.Module) -> float:
    """Size of the model's weights as its own format holds them in memory (int8 weights count one byte each)."""
    import io

    import torch

    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)  # our own model, in memory: nothing is loaded back from it
    return buffer.getbuffer().nbytes / 2**20
