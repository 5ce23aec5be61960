"""PEFT strategies through the ``peft`` library: LoRA, AdaLoRA, IA3 and prefix tuning.

Each wraps the model with ``task_type`` SEQ_CLS or TOKEN_CLS, which makes peft keep a trainable,
saved copy of the task head (``modules_to_save``). Checked against peft 0.21 and transformers 5:

* target modules default to peft's per-architecture table (BERT: query, value for LoRA/AdaLoRA;
  key, value, output.dense for IA3 with output.dense as the feed-forward module). A name the model
  doesn't have is refused with the names it does have, before peft silently skips it.
* AdaLoRA only reallocates rank if ``update_and_allocate(step)`` runs after every optimizer step and
  it knows the run's total steps (peft#1327, #1801: otherwise it silently acts as plain LoRA).
  peft adds AdaLoRA's orthogonality penalty only to a loss the model computes from ``labels``; our loop
  computes the loss from logits (class weights, smoothing), so the plan adds the same penalty itself
  (``adalora_orthogonality``). The importance estimates and the rank pattern live outside the
  parameters: the plan hands them to the loop's checkpoint so a resumed run allocates as an
  uninterrupted one would.
* Prefix tuning works on BERT here: peft passes the prefix as a ``DynamicCache`` to the backbone,
  which attends to it and extends the attention mask. BERT also shifts position ids by the prefix
  length, so ``max_length + prefix_tokens`` must fit the position table. Models whose encoder
  takes no cache (``past_key_values``, ``cache`` since transformers 5.24: DistilBERT, DeBERTa, ...) are refused.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch

from core import anatomy
from core.config import RunConfig
from core.schedule import plan_steps
from core.strategy_plan import StrategyError, StrategyPlan, decay_groups, trainable_named

PREFIX_MODELS = "BERT, RoBERTa, XLM-RoBERTa, ELECTRA and other encoders whose forward takes past_key_values"


def _task_type(model: torch.nn.Module) -> Any:
    from peft import TaskType

    return TaskType.TOKEN_CLS if type(model).__name__.endswith("ForTokenClassification") else TaskType.SEQ_CLS


def linear_module_names(model: torch.nn.Module) -> list[str]:
    """Names of the encoder's linear modules as a user would write them (``attention.self.query``), layer index dropped."""
    try:
        return anatomy.layer_relative_names(model, torch.nn.Linear)
    except anatomy.AnatomyError:  # a layout core.anatomy doesn't know: the full names
        return sorted({n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)})


def check_target_modules(model: torch.nn.Module, targets: list[str], kind: str) -> None:
    """Refuse names that match no module, the way peft matches them (exact or a ``.``-suffix)."""
    module_names = [n for n, _ in model.named_modules()]
    missing = [t for t in targets if not any(n == t or n.endswith("." + t) for n in module_names)]
    if missing:
        raise StrategyError(
            f"strategy.target_modules: {', '.join(map(repr, missing))} match no module of {type(model).__name__} "
            f"({kind}). Its linear modules are: {', '.join(linear_module_names(model))} "
            "(a name matches a module whose name ends with it, e.g. 'query' or 'attention.output.dense')."
        )


def default_targets(model: torch.nn.Module, table: dict[str, list[str]], kind: str) -> list[str]:
    model_type = getattr(model.config, "model_type", "?")
    if model_type not in table:
        raise StrategyError(
            f"peft has no default {kind} target modules for model type {model_type!r}. Fix: set strategy.target_modules "
            f"to some of: {', '.join(linear_module_names(model))}."
        )
    return list(table[model_type])


def _wrap(kind: str, model: torch.nn.Module, config: RunConfig, peft_config: Any, notes: list[str],
          save_format: str = "peft_merge") -> StrategyPlan:
    from peft import get_peft_model

    try:
        wrapped = get_peft_model(model, peft_config)
    except (ValueError, TypeError, KeyError) as exc:
        raise StrategyError(f"peft could not apply {kind} to {type(model).__name__}: {exc}") from None
    groups = decay_groups(trainable_named(wrapped), config.train.learning_rate, config.train.weight_decay, kind)
    return StrategyPlan(kind, wrapped, groups, notes=notes, save_format=save_format)


def build_lora(model: torch.nn.Module, config: RunConfig, num_train_rows: int | None = None) -> StrategyPlan:
    from peft import LoraConfig
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as TABLE

    s = config.strategy
    targets = list(s.target_modules) or default_targets(model, TABLE, "LoRA")
    check_target_modules(model, targets, "lora")
    peft_config = LoraConfig(task_type=_task_type(model), r=s.lora_r, lora_alpha=s.lora_alpha,
                             lora_dropout=s.lora_dropout, target_modules=targets)
    return _wrap("lora", model, config, peft_config, [f"LoRA r={s.lora_r} alpha={s.lora_alpha} on {', '.join(targets)}"])


def adalora_schedule(total_steps: int) -> tuple[int, int]:
    """(tinit, tfinal) for a run of ``total_steps``: 10% warm-up at full rank, the last 20% at the final ranks.

    peft needs tinit < total − tfinal, and tfinal ≥ 1 so that the step that fixes the final rank
    pattern (total − tfinal) is one the loop actually reaches (its steps run 0..total−1).
    """
    tfinal = max(1, round(0.2 * total_steps))
    tinit = min(round(0.1 * total_steps), total_steps - tfinal - 1)
    return tinit, tfinal


def build_adalora(model: torch.nn.Module, config: RunConfig, num_train_rows: int | None = None) -> StrategyPlan:
    from peft import AdaLoraConfig
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_ADALORA_TARGET_MODULES_MAPPING as TABLE

    s = config.strategy
    if num_train_rows is None:
        raise StrategyError("adalora schedules its rank budget by step and needs the number of training rows "
                            "(build_strategy(..., num_train_rows=...)).")
    if s.adalora_target_r > s.lora_r:
        raise StrategyError(f"strategy.adalora_target_r={s.adalora_target_r} is above strategy.lora_r={s.lora_r} "
                            "(the starting rank); AdaLoRA only prunes rank. Fix: adalora_target_r <= lora_r.")
    from core.device import process_rank

    _, total = plan_steps(num_train_rows, config.train, process_rank()[1])  # the loop's count, under torchrun too
    if total < 3:
        raise StrategyError(f"adalora needs at least 3 optimizer steps to reallocate rank; this run has {total}. "
                            "Fix: more epochs, more rows or a smaller batch_size.")
    tinit, tfinal = adalora_schedule(total)
    targets = list(s.target_modules) or default_targets(model, TABLE, "AdaLoRA")
    check_target_modules(model, targets, "adalora")
    peft_config = AdaLoraConfig(task_type=_task_type(model), init_r=s.lora_r, target_r=s.adalora_target_r,
                                lora_alpha=s.lora_alpha, lora_dropout=s.lora_dropout, target_modules=targets,
                                total_step=total, tinit=tinit, tfinal=tfinal, deltaT=1,
                                orth_reg_weight=s.adalora_orth_reg_weight)
    note = (f"AdaLoRA rank {s.lora_r} -> average {s.adalora_target_r} on {', '.join(targets)}; "
            f"budget steps {tinit}..{total - tfinal} of {total}")
    plan = _wrap("adalora", model, config, peft_config, [note])
    wrapped = plan.model

    def after_optimizer_step(global_step: int) -> None:
        wrapped.base_model.update_and_allocate(global_step)

    allocator = wrapped.base_model.rankallocator

    def state_dict() -> dict[str, Any]:
        return {"ipt": allocator.ipt, "exp_avg_ipt": allocator.exp_avg_ipt, "exp_avg_unc": allocator.exp_avg_unc,
                "rank_pattern": wrapped.peft_config["default"].rank_pattern}

    def load_state_dict(state: dict[str, Any]) -> None:
        allocator.ipt, allocator.exp_avg_ipt, allocator.exp_avg_unc = state["ipt"], state["exp_avg_ipt"], state["exp_avg_unc"]
        wrapped.peft_config["default"].rank_pattern = state["rank_pattern"]

    plan.after_optimizer_step = after_optimizer_step
    factors = [(n, p) for n, p in wrapped.named_parameters() if ("lora_A" in n or "lora_B" in n) and p.requires_grad]
    if peft_config.orth_reg_weight > 0:
        plan.regulariser = lambda: adalora_orthogonality(factors, peft_config.orth_reg_weight)
    plan.state_dict, plan.load_state_dict = state_dict, load_state_dict
    return plan


def adalora_orthogonality(factors: list[tuple[str, torch.nn.Parameter]], weight: float) -> torch.Tensor:
    """peft's AdaLoRA penalty: weight × the mean over the A and B factors of ‖AAᵀ − I‖_F (resp. ‖BᵀB − I‖_F).

    The same sum ``AdaLoraModel.forward`` adds when it computes the loss itself from ``labels``.
    """
    terms = []
    for name, p in factors:
        cov = p @ p.T if "lora_A" in name else p.T @ p
        terms.append(torch.linalg.matrix_norm(cov - torch.eye(cov.shape[0], dtype=cov.dtype, device=cov.device)))
    return weight * torch.stack(terms).mean() if terms else torch.zeros(())


def build_ia3(model: torch.nn.Module, config: RunConfig, num_train_rows: int | None = None) -> StrategyPlan:
    from peft import IA3Config
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_IA3_FEEDFORWARD_MODULES_MAPPING as FF_TABLE
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_IA3_TARGET_MODULES_MAPPING as TABLE

    s = config.strategy
    targets = list(s.target_modules) or default_targets(model, TABLE, "IA3")
    check_target_modules(model, targets, "ia3")
    # IA3 scales a feed-forward module's input and any other module's output; peft requires the
    # feed-forward set to be a subset of the targets.
    feedforward = [t for t in FF_TABLE.get(getattr(model.config, "model_type", ""), []) if t in targets]
    peft_config = IA3Config(task_type=_task_type(model), target_modules=targets, feedforward_modules=feedforward)
    return _wrap("ia3", model, config, peft_config, [f"IA3 on {', '.join(targets)} (feed-forward: {', '.join(feedforward) or 'none'})"])


def build_prefix(model: torch.nn.Module, config: RunConfig, num_train_rows: int | None = None) -> StrategyPlan:
    from peft import PrefixTuningConfig

    model_type = getattr(model.config, "model_type", "?")
    backbone = getattr(model, "base_model", None)  # transformers: the model under the task head
    # transformers 5.24 renamed the argument to ``cache`` and still accepts ``past_key_values`` (what peft passes).
    takes_cache = any({"past_key_values", "cache"} & set(inspect.signature(m.forward).parameters)
                      for m in (model, backbone) if m is not None)
    if not takes_cache:
        raise StrategyError(
            f"prefix tuning can't work on {model_type!r}: its encoder takes no past_key_values, which is how peft feeds "
            f"the prefix to every layer. It works with {PREFIX_MODELS}. Fix: use lora, ia3 or adapter."
        )
    s = config.strategy
    positions = getattr(model.config, "max_position_embeddings", None)
    if positions is not None and config.model.max_length + s.prefix_tokens > positions:
        raise StrategyError(
            f"prefix tuning shifts position ids by strategy.prefix_tokens={s.prefix_tokens}, so model.max_length="
            f"{config.model.max_length} + {s.prefix_tokens} exceeds the model's {positions} positions. "
            f"Fix: model.max_length <= {positions - s.prefix_tokens} or fewer prefix tokens."
        )
    plan = _wrap("prefix", model, config, PrefixTuningConfig(task_type=_task_type(model), num_virtual_tokens=s.prefix_tokens),
                 [f"{s.prefix_tokens} virtual prefix tokens per layer; the head trains"], save_format="peft_prefix")
    _probe(plan.model, model_type)
    return plan


def _probe(model: torch.nn.Module, model_type: str) -> None:
    """One tiny forward: transformers changes how encoders take caches often enough that a signature isn't proof."""
    was_training = model.training
    model.eval()
    ids = torch.full((1, 4), 100, dtype=torch.long)
    try:
        with torch.no_grad():
            model(input_ids=ids, attention_mask=torch.ones_like(ids))
    except Exception as exc:  # any failure here means prefix tuning can't run on this model
        raise StrategyError(
            f"prefix tuning failed on {model_type!r} in this transformers version ({type(exc).__name__}: {str(exc)[:200]}). "
            f"It works with {PREFIX_MODELS}. Fix: use lora, ia3 or adapter."
        ) from None
    finally:
        model.train(was_training)

