"""Where a BERT-family model keeps its parts: embeddings, encoder layers, the top of the encoder, the head.

The one place that knows the layouts; the strategies, the frozen-layer cache, the adapters and the
PEFT target-module listing all ask here. Paths are relative to the backbone
(``model.<base_model_prefix>``: ``bert``, ``roberta``, ``distilbert``, ``albert``, ``electra``, ...):

* BERT, RoBERTa, XLM-R, CamemBERT: embeddings ``embeddings``; layers ``encoder.layer.N``.
* ELECTRA: as BERT, plus ``embeddings_project`` among the embeddings when the embedding size isn't
  the hidden size (ELECTRA-small: 128 -> 256).
* DistilBERT: ``embeddings``; layers ``transformer.layer.N``.
* ALBERT: ``embeddings`` and ``encoder.embedding_hidden_mapping_in``; layers
  ``encoder.albert_layer_groups.G.albert_layers.I``.

ALBERT shares weights across depth: its ``num_hidden_layers`` applications run
``num_hidden_groups`` layer groups in turn (each of ``inner_group_num`` layers). Here its
"layers" are the distinct layer modules — one with the default config, however deep the model —
and :attr:`Anatomy.shared_layers` is True: a strategy that treats depths separately (freezing the
bottom k, per-layer learning rates, unfreezing one at a time) can't apply to it.

Every parameter of a model falls in exactly one part (:func:`split_parts`):

* **embeddings** — the modules above, below the first layer;
* **layer i** — encoder layer i (bottom = 0), including anything inserted into it (adapters, LoRA);
* **top** — the rest of the backbone: BERT's and ALBERT's pooler (RoBERTa, DistilBERT and ELECTRA
  have none);
* **head** — the task model outside the backbone (``classifier``; DistilBERT's ``pre_classifier``
  too), peft's trainable copy of it included;
* **other** — outside the task model: peft's prompt encoder (prefix tuning).

Wrappers are taken off first: peft's ``PeftModel`` and torch's ``DistributedDataParallel``; the
parameter-name prefixes are those of the model as given.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field

from torch import nn

Named = list[tuple[str, nn.Parameter]]

# Modules of the backbone that project the embeddings to the hidden size, by layout.
_PROJECTIONS = ("embeddings_project", "encoder.embedding_hidden_mapping_in")
# Where the layer list sits, by layout (ALBERT's nested groups are handled apart).
_LAYER_LISTS = ("encoder.layer", "transformer.layer", "encoder.layers")
KNOWN = ("BERT, RoBERTa, XLM-RoBERTa, CamemBERT, ELECTRA (<base>.embeddings, <base>.encoder.layer.N), "
         "DistilBERT (<base>.transformer.layer.N), ALBERT (<base>.encoder.albert_layer_groups)")


class AnatomyError(ValueError):
    """The model isn't laid out like any BERT-family encoder this module knows."""


def get_path(module: nn.Module, dotted: str) -> nn.Module | None:
    for part in filter(None, dotted.split(".")):
        module = getattr(module, part, None)
        if module is None:
            return None
    return module


def _set_path(module: nn.Module, dotted: str, value: nn.Module) -> None:
    parent, _, leaf = dotted.rpartition(".")
    setattr(get_path(module, parent) if parent else module, leaf, value)


def unwrap(model: nn.Module) -> nn.Module:
    """The task model inside peft's and torch's wrappers (the model itself when there are none)."""
    while True:
        if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            model = model.module
        elif type(model).__module__.startswith("peft.") and callable(getattr(model, "get_base_model", None)):
            model = model.get_base_model()
        else:
            return model


@dataclass(frozen=True)
class Anatomy:
    """A task model's parts (see the module docstring). Build it with :func:`of`."""

    model: nn.Module  # the task model, wrappers taken off
    backbone: nn.Module  # model.<base_model_prefix>, or the model itself when it has no head
    embedding_paths: tuple[str, ...]  # in the backbone, in forward order
    layers: tuple[nn.Module, ...]  # distinct layer modules, bottom first
    layer_list: str | None  # in the backbone: the ModuleList holding ``layers``; None for ALBERT's groups
    shared_layers: bool = False  # ALBERT: one layer module runs at several depths
    _names: dict[int, str] = field(default_factory=dict, repr=False, compare=False)

    @property
    def embeddings(self) -> list[nn.Module]:
        """The embedding modules, the token embeddings first."""
        return [get_path(self.backbone, p) for p in self.embedding_paths]

    @property
    def head(self) -> list[nn.Module]:
        """The task model's modules outside the backbone that hold parameters (``classifier``, ...)."""
        return [m for m in self.model.children() if m is not self.backbone and any(True for _ in m.parameters())]

    @property
    def top(self) -> list[nn.Module]:
        """Backbone modules with parameters that are neither embeddings nor inside a layer (BERT's pooler)."""
        placed = {id(m) for m in [*self.embeddings, *self.layers]}
        out: list[nn.Module] = []

        def visit(module: nn.Module) -> None:
            for child in module.children():
                if id(child) in placed or not any(True for _ in child.parameters()):
                    continue
                if any(id(m) in placed for m in child.modules()):
                    visit(child)
                else:
                    out.append(child)

        visit(self.backbone)
        return out

    def prefix(self, module: nn.Module) -> str:
        """The parameter-name prefix of ``module`` in the model as given (``bert.encoder.layer.0.``)."""
        name = self._names[id(module)]
        return f"{name}." if name else ""

    @contextlib.contextmanager
    def swapped(self, embeddings: list[nn.Module] | None = None, layers: list[nn.Module] | None = None) -> Iterator[None]:
        """Run the backbone with other embedding modules (one per path) and/or another layer list, then put them back."""
        if layers is not None and self.layer_list is None:
            raise AnatomyError("ALBERT's shared layer groups can't be swapped for a layer list")
        changes: dict[str, nn.Module] = {}
        if embeddings is not None:
            changes.update(zip(self.embedding_paths, embeddings, strict=True))
        if layers is not None:
            changes[self.layer_list] = nn.ModuleList(layers)
        old = {path: get_path(self.backbone, path) for path in changes}
        for path, module in changes.items():
            _set_path(self.backbone, path, module)
        try:
            yield
        finally:
            for path, module in old.items():
                _set_path(self.backbone, path, module)


def of(model: nn.Module) -> Anatomy:
    """The parts of ``model`` (a task model, possibly peft- or DDP-wrapped); AnatomyError for other layouts."""
    task = unwrap(model)
    prefix = getattr(task, "base_model_prefix", "")
    backbone = getattr(task, prefix, None) if prefix else None
    if backbone is None and getattr(task, "embeddings", None) is not None:
        backbone = task  # a bare encoder (BertModel): no head
    if backbone is None or not isinstance(getattr(backbone, "embeddings", None), nn.Module):
        raise AnatomyError(f"{type(task).__name__} is not laid out like a BERT-family encoder ({KNOWN})")
    embedding_paths = ("embeddings", *(p for p in _PROJECTIONS if isinstance(get_path(backbone, p), nn.Module)))
    groups = get_path(backbone, "encoder.albert_layer_groups")
    layer_list = next((p for p in _LAYER_LISTS if isinstance(get_path(backbone, p), nn.ModuleList)), None)
    if isinstance(groups, nn.ModuleList):
        layers, shared = tuple(layer for group in groups for layer in group.albert_layers), True
    elif layer_list is not None:
        layers, shared = tuple(get_path(backbone, layer_list)), False
    else:
        raise AnatomyError(f"{type(task).__name__}: can't find its encoder layers ({KNOWN})")
    names: dict[int, str] = {}
    for name, module in model.named_modules(remove_duplicate=False):
        names.setdefault(id(module), name)
    return Anatomy(task, backbone, embedding_paths, layers, layer_list if not shared else None, shared, names)


def embeddings(model: nn.Module) -> list[nn.Module]:
    """The embedding modules of ``model``, the token embeddings first."""
    return of(model).embeddings


def encoder_layers(model: nn.Module) -> list[nn.Module]:
    """The encoder's layer modules, bottom first (ALBERT: its distinct, shared layers)."""
    return list(of(model).layers)


def head(model: nn.Module) -> list[nn.Module]:
    """The task head's modules (outside the backbone)."""
    return of(model).head


@dataclass
class Parts:
    """A model's parameters by part, bottom to top; every parameter is in exactly one."""

    embeddings: Named
    layers: list[Named]
    top: Named  # the rest of the backbone (BERT's pooler)
    head: Named
    other: Named = field(default_factory=list)  # outside the task model (peft's prompt encoder)

    @property
    def pooler(self) -> Named:
        return self.top

    def all(self) -> Named:
        return [*self.embeddings, *(p for layer in self.layers for p in layer), *self.top, *self.head, *self.other]


def split_parts(model: nn.Module) -> Parts:
    """Sort every parameter of ``model`` (names as ``model.named_parameters()`` gives them) into its part."""
    body = of(model)
    embedding_prefixes = tuple(body.prefix(m) for m in body.embeddings)
    layer_prefixes = [body.prefix(m) for m in body.layers]
    backbone, task = body.prefix(body.backbone), body.prefix(body.model)
    parts = Parts([], [[] for _ in layer_prefixes], [], [])
    for name, param in model.named_parameters():
        if name.startswith(embedding_prefixes):
            parts.embeddings.append((name, param))
        elif (i := next((i for i, p in enumerate(layer_prefixes) if name.startswith(p)), None)) is not None:
            parts.layers[i].append((name, param))
        elif name.startswith(backbone):
            parts.top.append((name, param))
        elif name.startswith(task):
            parts.head.append((name, param))
        else:
            parts.other.append((name, param))
    return parts


def layer_relative_names(model: nn.Module, modules: type[nn.Module] = nn.Linear) -> list[str]:
    """Names of the backbone's ``modules`` as a user would write them: relative to their layer when inside one
    (``attention.self.query``), else to the backbone (``pooler.dense``). Sorted, without repeats."""
    body = of(model)
    layer_prefixes = [body.prefix(m) for m in body.layers]
    backbone = body.prefix(body.backbone)
    names: set[str] = set()
    for name, module in model.named_modules():
        if not isinstance(module, modules) or not name.startswith(backbone):
            continue
        dotted = name + "."
        inside = next((p for p in layer_prefixes if dotted.startswith(p)), None)
        names.add(name[len(inside):] if inside else name[len(backbone):])
    return sorted(names)
