"""Compression methods: what turns a finished run's model into a smaller or faster one (issue #13).

One entry per method in :data:`METHODS`: its help, the tasks it takes, how it is made (``at_load``,
``export`` or ``train``), whether the result still has gradients (explanations), and its options — a
frozen dataclass whose field metadata validates ``--set key=value`` and builds the Deploy page's form,
as the run config's does. :mod:`core.derived` makes the derived run; this module changes models.

* ``int8`` (at load) — dynamic int8 quantization of every ``nn.Linear``: weights int8 with one scale
  per output channel, activations quantized per batch at run time, int8 matmuls (fbgemm/x86). The
  embeddings and LayerNorms stay fp32 — for MiniLM-L6 the word embeddings are half of the parameters,
  so the model shrinks by less than 4x. Saved as what it is: the derived run's ``model/`` is the
  parent's fp32 folder (hard links: no second copy on disk) with a marker in ``config.json``
  (:data:`MARKER`), and :func:`apply_at_load` re-quantizes at load. Why not a saved int8 state dict:
  torch's packed int8 weights only load through pickle (``weights_only`` refuses them), and
  re-quantizing is deterministic and takes well under a second. The backend is torch's
  ``torch.ao.quantization.quantize_dynamic``, deprecated in torch 2.13 in favour of torchao, whose
  CPU int8 path is slower without ``torch.compile`` (pytorch/ao#4365, #3157): :func:`quantize_int8` is
  the one place that calls it, so the backend can move.
* ``onnx`` / ``onnx-int8`` (export) — :mod:`core.onnx_export`: one ``model.onnx`` that onnxruntime and
  the tokenizer alone run (``predict.py`` beside it), int8 through onnxruntime's dynamic quantization.
* ``prune-layers`` / ``distill`` (train) — :mod:`core.student`: a student with fewer encoder layers,
  initialised from the parent's weights, trained by the normal loop (events, curves, early stopping,
  cancel, resume) on the parent's training split; ``distill`` adds the teacher's soft targets.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

from core.config import ConfigError, _coerce_section, _opt, _suggest, _validate

if TYPE_CHECKING:
    import torch

MARKER = "tuneboard_compression"  # model/config.json: {"method": ..., "options": {...}}
ALL_TASKS = ("single_label", "multi_label", "pair", "regression", "token")
CLASSIFY_TASKS = ("single_label", "multi_label", "pair", "token")  # those with logits a teacher can soften


@dataclass(frozen=True)
class Options:
    """A method's options (fields in subclasses), checked against their metadata as config fields are."""

    def __post_init__(self) -> None:
        _validate(self, "options")


NoOptions = Options  # a method without options


@dataclass(frozen=True)
class PruneOptions(Options):
    drop: str = _opt("top:half", "Encoder layers to drop: top:half (the upper half), top:N (the N highest) or layer "
                     "numbers counted from 0 at the bottom, e.g. 1,3,5.")
    epochs: float = _opt(1.0, "Fine-tuning epochs after the layers are dropped.", exclusive_min=0.0, max=100)
    learning_rate: float = _opt(0.0, "Peak learning rate of that fine-tuning (0: the parent's).", min=0.0, max=1.0)


@dataclass(frozen=True)
class DistillOptions(Options):
    student: str = _opt("", "Student model: empty = the parent with every other encoder layer kept (the top one "
                        "included), initialised from its weights; or bundled:<name>, a folder or a hub id that uses "
                        "the parent's tokenizer.")
    alpha: float = _opt(0.5, "Weight of the gold labels' loss; 1 - alpha weighs the teacher's softened "
                        "probabilities (Hinton et al. 2015).", min=0.0, max=1.0)
    temperature: float = _opt(2.0, "Temperature T that softens both distributions; the soft loss is scaled by T².",
                              exclusive_min=0.0, max=20.0)
    epochs: float = _opt(3.0, "Training epochs of the student.", exclusive_min=0.0, max=100)
    learning_rate: float = _opt(0.0, "Peak learning rate of the student (0: the parent's).", min=0.0, max=1.0)


@dataclass(frozen=True)
class Method:
    name: str
    help: str
    tasks: tuple[str, ...]  # the tasks it can compress
    made: str  # "at_load" (a marker; compressed when loaded), "export" (a new model file), "train" (a student run),
    # "fuse" (several runs into one: core.fuse)
    gradients: bool  # whether the result still has gradients (explanations); else explain via the parent
    options: type = NoOptions


METHODS = {
    "int8": Method("int8", "Dynamic int8 quantization of the linear layers, for CPU inference (re-quantized at load).",
                   ALL_TASKS, "at_load", gradients=False),
    "onnx": Method("onnx", "ONNX export (one model.onnx, dynamic batch and length) that onnxruntime and the tokenizer "
                   "alone run; predict.py included.", ALL_TASKS, "export", gradients=False),
    "onnx-int8": Method("onnx-int8", "The ONNX export quantized to int8 by onnxruntime (dynamic quantization of its "
                        "matrix multiplications).", ALL_TASKS, "export", gradients=False),
    "prune-layers": Method("prune-layers", "Drop encoder layers (the top ones by default) and fine-tune briefly: "
                           "fewer layers is what speeds up dense CPU inference.", ALL_TASKS, "train", gradients=True,
                           options=PruneOptions),
    "distill": Method("distill", "Train a smaller student on the parent's soft predictions and the gold labels "
                      "(a·CE + (1−a)·T²·KL); by default the parent with every other layer kept.", CLASSIFY_TASKS,
                      "train", gradients=True, options=DistillOptions),
}


class CompressionError(ValueError):
    """A method that can't apply to this run or model; the message says why and what to do."""


def method(name: str) -> Method:
    if name not in METHODS:
        raise CompressionError(f"unknown compression method {name!r}; the methods are: {', '.join(METHODS)}")
    return METHODS[name]


def parse_options(found: Method, values: dict[str, Any] | list[str] | None) -> Any:
    """The method's options dataclass from a dict or ``key=value`` strings; ConfigError names a bad key or value."""
    cls, name = found.options, found.name
    if isinstance(values, list):  # key=value strings: values read as YAML (2, 0.5, [1, 2]), as the config's --set
        import yaml

        texts = {f.name: str(f.type) for f in fields(cls)}
        pairs = {}
        for item in values:
            key, sep, text = item.partition("=")
            if not sep or not key.strip():
                raise ConfigError(f"options {item!r}", "an option is written key=value, e.g. epochs=2")
            parsed = yaml.safe_load(text) if text.strip() else ""
            pairs[key.strip()] = text.strip() if texts.get(key.strip(), "").startswith("str") else parsed
        values = pairs
    values = dict(values or {})
    names = [f.name for f in fields(cls)]
    for key in values:
        if key not in names:
            raise ConfigError(f"options.{key}", f"{name} has no such option"
                              + (_suggest(key, names) if names else "; it takes no options"))
    for f in fields(cls):  # a list option typed in a form's text box: "2, 1" (the widgets draw lists so)
        if str(f.type).startswith("list") and isinstance(values.get(f.name), str):
            try:
                values[f.name] = [float(v) for v in values[f.name].split(",") if v.strip()]
            except ValueError:
                raise ConfigError(f"options.{f.name}", f"{values[f.name]!r}: write numbers separated by commas, "
                                  "e.g. 2, 1") from None
    return cls(**_coerce_section(cls, "options", values))


def options_dict(options: Any) -> dict[str, Any]:
    return {f.name: getattr(options, f.name) for f in fields(options)}


def quantize_int8(model: torch.nn.Module) -> torch.nn.Module:
    """``model`` with every ``nn.Linear`` dynamically quantized to int8 (a new module; ``model`` is unchanged)."""
    import warnings

    import torch
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the deprecation notice, once per process: see the module docstring
        # One scale per output channel, not one per matrix: MiniLM-L6 on rotten_tomatoes lost 1.3 points of
        # accuracy per tensor and 0.55 per channel, at the same speed (bench/results/compress.md).
        return quantize_dynamic(model, {torch.nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8, inplace=False)


def refusal(name: str, model_config: dict[str, Any], save_format: str) -> str | None:
    """Why ``name`` can't compress a model whose saved ``config.json`` is ``model_config``; None when it can.

    ``save_format``: how the parent's model was saved (core.model_format.saved_format: plain, prefix, adapter).
    """
    earlier = (model_config.get(MARKER) or {}).get("method")
    if earlier:
        return f"it is already compressed ({earlier}); compress its parent run instead"
    made = method(name).made
    if save_format == "prefix" and made != "at_load":
        return ("a prefix-tuned model's prefix is peft's per-layer key/value cache, which neither the ONNX exporter "
                "nor a student with other layers can carry over; use int8, or fine-tune the parent with another strategy")
    if save_format == "adapter" and made == "train":
        return ("its bottleneck adapters live inside each encoder layer and its saved model is not a plain transformers "
                "model a student can start from; use int8 or onnx, or fine-tune the parent with another strategy")
    return None


def folder_method(marker: dict[str, Any]) -> Method:
    """The method of a saved folder's :data:`MARKER`; CompressionError when this Tuneboard does not know it."""
    name = marker.get("method")
    if name not in METHODS:
        raise CompressionError(f"this model folder was compressed with {name!r}, which this Tuneboard does not know; "
                               f"it knows {', '.join(METHODS)}. Upgrade Tuneboard or compress the parent run again.")
    return METHODS[name]


def apply_at_load(model: torch.nn.Module, marker: dict[str, Any]) -> torch.nn.Module:
    """What :func:`core.model_format.load_saved` does to a torch folder carrying :data:`MARKER` (int8)."""
    found = folder_method(marker)
    if found.made != "at_load":
        raise CompressionError(f"a {found.name} folder holds no torch weights to compress at load")
    return quantize_int8(model.eval())


def serialized_mb(model: torch.nn.Module) -> float:
    """Size of the model's weights as its own format holds them in memory (int8 weights count one byte each)."""
    import io

    import torch

    if hasattr(model, "onnx_path"):  # core.onnx_export.OnnxModel: its weights are the file
        return model.onnx_path.stat().st_size / 2**20
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)  # our own model, in memory: nothing is loaded back from it
    return buffer.getbuffer().nbytes / 2**20
