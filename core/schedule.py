"""How many optimizer steps a run takes: the loop and the step-scheduled strategies both ask here.

AdaLoRA's rank budget (core.peft_strategies) is laid out over the run's steps before the loop
starts, so it must count them exactly as the loop does.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from core.config import TrainConfig


def plan_steps(num_rows: int, cfg: TrainConfig, num_processes: int = 1) -> tuple[int, int]:
    """(optimizer steps per epoch, total optimizer steps) for ``num_rows`` training rows.

    Batches are sharded across ``num_processes``; a fractional ``cfg.epochs`` rounds the total up.
    """
    batches = math.ceil(num_rows / cfg.batch_size)
    if num_processes > 1:
        batches //= num_processes
    steps_per_epoch = max(1, math.ceil(batches / cfg.gradient_accumulation_steps))
    return steps_per_epoch, max(1, math.ceil(cfg.epochs * steps_per_epoch))
