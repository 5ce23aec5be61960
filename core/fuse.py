"""Fusion: one model from several finished runs of one task (issue #15). Each fused model is a derived run.

Methods (:data:`METHODS`, options as frozen dataclasses, as the compression methods'):

* ``ensemble`` — the members' probabilities averaged (uniform, weighted by each member's validation
  headline, or weights given), or a weighted majority vote. Members may differ in base model, tokenizer
  and strategy: each tokenizes for itself (core.inference.EnsemblePredictor), and for NER the average is
  taken per word. ``model/`` holds ``members/<run id>/``, hard links to each member's ``model/``, so the
  ensemble is whole on its own (download, serve) and costs no disk. Prediction costs the sum of the members'.
* ``soup`` — the members' weights averaged (Wortsman et al. 2022, arXiv 2203.05482): ``uniform``, or
  ``greedy`` (members taken best validation first; one is added only if the soup's validation headline
  does not drop). One model, the cost of one.
* ``task_arithmetic``, ``ties``, ``dare_ties`` — each member's difference from the shared pretrained base
  (``model.name`` with ``model.num_layers``, loaded as training loads it) merged per parameter with
  ``peft.utils.merge_utils`` and added back to the base; the classifier heads, which have no pretrained
  base, are averaged (or the best member's kept: ``head=best``). peft's ``add_weighted_adapter`` can't
  be used: it refuses adapters that share a ``modules_to_save`` head, which every classification adapter
  has; LoRA and IA3 members enter through their merged weights, which their ``model/`` holds.

Refused before any work, with the reason (:func:`check_members`): a member that is not completed or has
no saved model; members of other tasks, labels or label order; members whose test splits differ (their
data configs), since no honest comparison exists then; for the weight methods, a different base model,
parameter names or shapes, a prefix-tuned or adapter member, or a compressed one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core import runs
from core.compress import ALL_TASKS, MARKER, CompressionError, Method, Options, _opt

WEIGHT_METHODS = ("soup", "task_arithmetic", "ties", "dare_ties")


@dataclass(frozen=True)
class EnsembleOptions(Options):
    weighting: str = _opt("uniform", "uniform, validation (each member by its validation headline) or given (weights).",
                          choices=("uniform", "validation", "given"))
    weights: list[float] = _opt([], "With weighting=given: one positive weight per member, in the members' order.")
    combine: str = _opt("average", "average the probabilities, or a weighted majority vote.", choices=("average", "vote"))


@dataclass(frozen=True)
class SoupOptions(Options):
    recipe: str = _opt("uniform", "uniform: every member's weights averaged; greedy: best validation first, a member "
                       "joins only if the soup's validation headline does not drop.", choices=("uniform", "greedy"))


@dataclass(frozen=True)
class MergeOptions(Options):
    weights: list[float] = _opt([], "One weight per member's difference from the base (empty: task_arithmetic 1/number "
                                "of members each, their mean; ties and dare_ties 1 each, as they average what agrees).")
    density: float = _opt(0.5, "ties and dare_ties: the share of each task vector's entries kept.", exclusive_min=0.0, max=1.0)
    head: str = _opt("average", "The classifier head (no pretrained base): the members' average, or the best member's.",
                     choices=("average", "best"))
    seed: int = _opt(42, "dare_ties: the seed of its random drop.", min=0)


METHODS = {
    "ensemble": Method("ensemble", "Average the members' probabilities (or vote); members may differ in model and "
                       "strategy. Costs the sum of the members' predictions.", ALL_TASKS, "fuse", gradients=True,
                       options=EnsembleOptions),
    "soup": Method("soup", "Average the weights of members fine-tuned from the same base model (uniform or greedy). "
                   "One model's cost.", ALL_TASKS, "fuse", gradients=True, options=SoupOptions),
    "task_arithmetic": Method("task_arithmetic", "Add the members' weighted differences from the base model.", ALL_TASKS,
                              "fuse", gradients=True, options=MergeOptions),
    "ties": Method("ties", "TIES merging: keep each difference's largest entries, elect a sign, average what agrees.",
                   ALL_TASKS, "fuse", gradients=True, options=MergeOptions),
    "dare_ties": Method("dare_ties", "DARE (random drop and rescale) then TIES.", ALL_TASKS, "fuse", gradients=True,
                        options=MergeOptions),
}


def check_members(member_dirs: list[Path], method_name: str) -> list[dict[str, Any]]:
    """The members' configs, or CompressionError saying which member can't be fused this way and why."""
    from core.model_format import saved_format

    if method_name not in METHODS:
        raise CompressionError(f"unknown fusion method {method_name!r}; the methods are: {', '.join(METHODS)}")
    if not member_dirs:
        raise CompressionError("name at least one run to fuse (two or more make sense).")
    if len({d.name for d in member_dirs}) != len(member_dirs):
        raise CompressionError("a run is named twice; name each member once.")
    configs = []
    for run_dir in member_dirs:
        status = runs.read_status(run_dir).get("state")
        if status != "completed":
            raise CompressionError(f"member {run_dir.name} is {status or 'broken'}, not completed: only finished runs "
                                   "can be fused. Wait for it, or leave it out.")
        config, model_config = runs.read_json(run_dir / runs.CONFIG), runs.read_json(run_dir / runs.MODEL_DIR / "config.json")
        if not config or not model_config:
            raise CompressionError(f"member {run_dir.name} has no complete saved model; leave it out or train it again.")
        configs.append((run_dir, config, model_config))
    first_dir, first, _ = configs[0]
    labels = _labels(first_dir)
    for run_dir, config, _ in configs[1:]:
        if config.get("task") != first.get("task"):
            raise CompressionError(f"member {run_dir.name} is a {config.get('task')} run and {first_dir.name} a "
                                   f"{first.get('task')} run: members must share the task.")
        if _labels(run_dir) != labels:
            raise CompressionError(f"member {run_dir.name} has the labels {_labels(run_dir)} and {first_dir.name} "
                                   f"{labels}: members must share the labels, in the same order.")
        if config.get("data") != first.get("data"):
            differ = sorted(k for k in {*config.get("data", {}), *first.get("data", {})}
                            if (config.get("data") or {}).get(k) != (first.get("data") or {}).get(k))
            raise CompressionError(f"member {run_dir.name} was trained on another split than {first_dir.name} (data "
                                   f"settings differ: {', '.join(differ)}), so no test split is shared and the fused "
                                   "model could not be compared honestly. Fuse runs made from the same data settings.")
    if method_name in WEIGHT_METHODS:
        _check_same_weights(configs, method_name, saved_format)
    return [config for _, config, _ in configs]


def _labels(run_dir: Path) -> list[str]:
    model_config = runs.read_json(run_dir / runs.MODEL_DIR / "config.json") or {}
    id2label = model_config.get("id2label") or {}
    return [id2label[k] for k in sorted(id2label, key=int)]


def _check_same_weights(configs: list[tuple[Path, dict[str, Any], dict[str, Any]]], method_name: str, saved_format: Any) -> None:
    from safetensors import safe_open

    first_dir, first, _ = configs[0]
    shapes = None
    for run_dir, config, model_config in configs:
        if model_config.get("tuneboard_compression"):
            raise CompressionError(f"member {run_dir.name} is a compressed model ({model_config['tuneboard_compression'].get('method')}): "
                                   f"{method_name} averages fp32 weights; use its parent run, or ensemble it.")
        form = saved_format(model_config)
        if form != "plain":
            why = "its prefix lives outside the weights" if form == "prefix" else "its adapters add layers"
            raise CompressionError(f"member {run_dir.name} is a {form}-tuned model whose saved weights are not a plain "
                                   f"transformers model ({why}); {method_name} can't average it. Ensemble it instead.")
        base = (config.get("model") or {}).get("name"), (config.get("model") or {}).get("num_layers")
        first_base = (first.get("model") or {}).get("name"), (first.get("model") or {}).get("num_layers")
        if base != first_base:
            raise CompressionError(f"member {run_dir.name} starts from {base[0]} ({base[1] or 'all'} layers) and "
                                   f"{first_dir.name} from {first_base[0]} ({first_base[1] or 'all'} layers): {method_name} "
                                   "needs members fine-tuned from the same base model. Ensemble them instead.")
        files = sorted((run_dir / runs.MODEL_DIR).glob("*.safetensors"))
        found = {}
        for path in files:
            with safe_open(str(path), "pt") as f:
                found.update({k: tuple(f.get_slice(k).get_shape()) for k in f.keys()})  # noqa: SIM118 - safe_open has no iteration
        if shapes is not None and found != shapes:
            raise CompressionError(f"member {run_dir.name}'s parameters differ from {first_dir.name}'s in names or "
                                   f"shapes; {method_name} needs the same architecture.")
        shapes = found


def member_weights(member_dirs: list[Path], options: Any) -> list[float]:
    """Ensemble weights: uniform, by validation headline, or as given (one per member, positive)."""
    n = len(member_dirs)
    if options.weighting == "given":
        if len(options.weights) != n or any(w <= 0 for w in options.weights):
            raise CompressionError(f"options.weights has {len(options.weights)} value(s) for {n} member(s): give one "
                                   "positive weight per member, in their order.")
        return [float(w) for w in options.weights]
    if options.weighting == "validation":
        values = [_validation_headline(d) for d in member_dirs]
        if any(v is None or v <= 0 for v in values):
            raise CompressionError("weighting=validation needs every member's validation headline to be positive "
                                   "(a regression run's -MSE is not): use uniform or given weights.")
        return [float(v) for v in values]
    return [1.0] * n


def _validation_headline(run_dir: Path) -> float | None:
    report = runs.read_json(run_dir / runs.REPORT) or {}
    return ((report.get("validation") or {}).get("headline") or {}).get("value")


# --- making the fused model ----------------------------------------------------------------------------


def write_ensemble(member_dirs: list[Path], out_dir: Path, options: Any) -> None:
    """``out_dir``: the first member's config and tokenizer, each member's model/ (hard links), the marker."""
    from core.inference import MEMBERS_DIR
    from core.recipe import load_run_config

    weights = member_weights(member_dirs, options)
    out_dir.mkdir(parents=True)
    members = []
    for run_dir, weight in zip(member_dirs, weights, strict=True):
        runs.link_or_copy_tree(run_dir / runs.MODEL_DIR, out_dir / MEMBERS_DIR / run_dir.name)
        config = load_run_config(run_dir)
        members.append({"run": run_dir.name, "weight": weight, "max_length": config.model.max_length,
                        "threshold": config.train.multi_label_threshold})
    first = member_dirs[0] / runs.MODEL_DIR
    for path in first.iterdir():  # the tokenizer's files (the first member's), so the folder opens as a model folder
        if path.is_file() and path.suffix != ".safetensors" and path.name != "config.json":
            runs.link_or_copy(path, out_dir / path.name)
    model_config = runs.read_json(first / "config.json") or {}
    from core.compress import options_dict

    runs.atomic_write_json(out_dir / "config.json", {**model_config, MARKER: {
        "method": "ensemble", "options": options_dict(options), "members": members}})


def merged_model(member_dirs: list[Path], method_name: str, options: Any, configs: list[dict[str, Any]]) -> tuple[Any, Any, dict[str, Any]]:
    """The fused torch model (weights averaged or merged), its tokenizer, and what the method decided."""
    import torch

    from core.model_format import load_saved

    model, tokenizer, _ = load_saved(member_dirs[0] / runs.MODEL_DIR)
    states = [_state(d) for d in member_dirs]
    if method_name == "soup":
        if options.recipe == "greedy":
            chosen = _greedy(member_dirs, states, model, configs[0])
            return model, tokenizer, {"members_used": [member_dirs[i].name for i in chosen]}
        model.load_state_dict(_average(states), strict=False)
        return model, tokenizer, {"members_used": [d.name for d in member_dirs]}
    from peft.utils import merge_utils

    from core import anatomy
    from core.config import from_dict
    from core.models import load_model

    config = from_dict(configs[0])
    base_model = load_model(config.model, config.task, _labels(member_dirs[0]))
    parts = anatomy.of(base_model)
    head = tuple(parts.prefix(m) for m in parts.head)  # a fresh, random head: no pretrained value to take a difference from
    base = {k: v for k, v in base_model.state_dict().items() if not k.startswith(head)}
    # task arithmetic sums the weighted differences (1/n each: their mean); TIES and DARE-TIES already average
    # the entries that agree in sign, so their weights scale each difference (1 each: that mean, unscaled)
    default = 1.0 / len(states) if method_name == "task_arithmetic" else 1.0
    weights = torch.tensor(options.weights or [default] * len(states), dtype=torch.float32)
    torch.manual_seed(options.seed)
    merged, heads = {}, []
    best = max(range(len(member_dirs)), key=lambda i: _validation_headline(member_dirs[i]) or float("-inf"))
    for key, value in states[0].items():
        if key in base and base[key].shape == value.shape and value.is_floating_point():
            deltas = [s[key].float() - base[key].float() for s in states]
            if method_name == "task_arithmetic":
                delta = merge_utils.task_arithmetic(deltas, weights)
            else:
                merge = merge_utils.ties if method_name == "ties" else merge_utils.dare_ties
                delta = merge(deltas, weights, options.density)
            merged[key] = (base[key].float() + delta).to(value.dtype)
        else:  # the head (and anything without a pretrained value): averaged, or the best member's
            heads.append(key)
            merged[key] = states[best][key] if options.head == "best" else _average([{key: s[key]} for s in states])[key]
    model.load_state_dict(merged, strict=False)
    return model, tokenizer, {"head_parameters": heads, "head_from": member_dirs[best].name if options.head == "best" else "average"}


def _state(run_dir: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    state: dict[str, Any] = {}
    for path in sorted((run_dir / runs.MODEL_DIR).glob("*.safetensors")):
        state.update(load_file(str(path)))
    return state


def _average(states: list[dict[str, Any]]) -> dict[str, Any]:
    return {k: (sum(s[k].float() for s in states) / len(states)).to(states[0][k].dtype) if states[0][k].is_floating_point()
            else states[0][k] for k in states[0]}


def _greedy(member_dirs: list[Path], states: list[dict[str, Any]], model: Any, config: dict[str, Any]) -> list[int]:
    """Greedy soup: members by validation headline, best first; each joins only if the soup doesn't get worse."""
    from core.config import from_dict
    from core.data import load_bundle
    from core.evaluate import _gold_and_scores, run_predictor
    from core.metrics import build_report

    run_config = from_dict(config)
    judge = run_predictor(member_dirs[0])  # loaded once; each candidate soup's weights are put into its model
    frame = load_bundle(run_config.data, run_config.task).validation

    def validation_value(state: dict[str, Any]) -> float:
        judge.model.load_state_dict(state, strict=False)
        gold, scores = _gold_and_scores(judge, frame, run_config.task)
        return float(build_report(run_config.task, tuple(judge.names), gold, scores,
                                  threshold=run_config.train.multi_label_threshold)["headline"]["value"])

    order = sorted(range(len(member_dirs)), key=lambda i: -(_validation_headline(member_dirs[i]) or float("-inf")))
    chosen = [order[0]]
    best = validation_value(states[order[0]])
    for i in order[1:]:
        value = validation_value(_average([states[j] for j in [*chosen, i]]))
        if value >= best:
            chosen, best = [*chosen, i], value
    model.load_state_dict(_average([states[j] for j in chosen]), strict=False)
    return chosen


def fusion_block(member_dirs: list[Path], report: dict[str, Any], decided: dict[str, Any], seconds: float) -> dict[str, Any]:
    """What a fused run's report adds: each member's headline, the best and the mean, and the differences."""
    split = report["eval_split"]
    mine = (report.get(split) or {}).get("headline") or {}
    members = []
    for run_dir in member_dirs:
        theirs = ((runs.read_json(run_dir / runs.REPORT) or {}).get(split) or {}).get("headline") or {}
        members.append({"run": run_dir.name, "value": theirs.get("value")})
    values = [m["value"] for m in members if m["value"] is not None]
    best, mean = (max(values), sum(values) / len(values)) if values else (None, None)
    value = mine.get("value")
    return {"members": members, "best_member": best, "mean_member": mean,
            "vs_best": value - best if value is not None and best is not None else None,
            "vs_mean": value - mean if value is not None and mean is not None else None, **decided, "seconds": seconds}
