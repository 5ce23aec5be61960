"""How many optimizer steps a run takes, and the learning rate at each of them.

AdaLoRA's rank budget (core.peft_strategies) is laid out over the run's steps before the loop
starts, so it must count them exactly as the loop does. The schedules are transformers'
``get_scheduler`` formulas, written here because importing ``transformers.optimization`` pulls in
``transformers.trainer_utils`` and, with it, all of peft (1.7 s of a trainer's start on a full
fine-tuning run that never touches peft); tests/core/test_loop.py checks them against transformers.
"""

from __future__ import annotations

import math
from functools import partial
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from core.config import TrainConfig


def plan_steps(num_rows: int, cfg: TrainConfig, num_processes: int = 1) -> tuple[int, int]:
    """(optimizer steps per epoch, total optimizer steps) for ``num_rows`` training rows.

    ``cfg.batch_size`` rows on each of ``num_processes`` processes make one global batch (a last one too
    small to give every process a row is dropped: core.tokenize.LengthGroupedBatches); a fractional
    ``cfg.epochs`` rounds the total up.
    """
    global_batch = cfg.batch_size * num_processes
    full, last = divmod(num_rows, global_batch)
    batches = full + (1 if last >= num_processes else 0)
    steps_per_epoch = max(1, math.ceil(batches / cfg.gradient_accumulation_steps))
    return steps_per_epoch, max(1, math.ceil(cfg.epochs * steps_per_epoch))


def _warmup(step: int, warmup: int) -> float:
    return float(step) / float(max(1, warmup))


def _linear(step: int, *, warmup: int, total: int) -> float:
    if step < warmup:
        return _warmup(step, warmup)
    return max(0.0, float(total - step) / float(max(1, total - warmup)))


def _cosine(step: int, *, warmup: int, total: int) -> float:
    if step < warmup:
        return _warmup(step, warmup)
    progress = float(step - warmup) / float(max(1, total - warmup))
    return max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))  # half a cosine, as transformers' num_cycles=0.5


def _constant(step: int, *, warmup: int, total: int) -> float:
    return _warmup(step, warmup) if step < warmup else 1.0


SCHEDULES = {"linear": _linear, "cosine": _cosine, "constant": _constant}  # constant = transformers' constant_with_warmup


def lr_schedule(name: str, optimizer: Any, warmup_steps: int, total_steps: int) -> Any:
    """A LambdaLR with the named schedule (``partial`` objects, so the scheduler's state saves as transformers' does)."""
    from torch.optim.lr_scheduler import LambdaLR

    return LambdaLR(optimizer, partial(SCHEDULES[name], warmup=warmup_steps, total=total_steps))
