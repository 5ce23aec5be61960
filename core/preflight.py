"""Pre-flight: what a run would train, and how long an epoch would take, before it is queued.

The trainable parameters, the parameter groups and their learning rates come from the strategy plan
the run itself would build (with the number of training rows, which AdaLoRA's budget and step-wise
unfreezing need). The time per epoch is measured with the loop itself — ``core.loop.train`` on a few
real batches of the run's training split, with the run's precision, CPU dropout and frozen-layer
cache — so the estimate times the computation the run will do, not a lookalike.

The dashboard never runs this in its own process (a model load and a few steps would block the page
and hold the model's memory in the server): it calls :func:`preflight_in_subprocess`, which runs
``python -m core preflight`` and reads its JSON.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from core.config import RunConfig

MEASURED_BATCHES = 6
STRATEGY_TABLE_BATCHES = 4  # 3 timed steps after the warm-up one: twelve strategies in seconds


class PreflightError(RuntimeError):
    """Pre-flight could not run; the message says why and what to change."""


def preflight(config: RunConfig, batches: int = MEASURED_BATCHES) -> dict[str, Any]:
    """Build the run's data, model and strategy plan; time ``batches`` optimizer steps of the real loop.

    Returns the plan's ``describe()`` (kind, trainable/total parameters, groups, notes) plus
    ``seconds_per_step``, ``steps_per_epoch``, ``total_steps``, ``epoch_seconds``, ``train_rows``,
    ``measured_steps``, ``device`` and ``precision``.

    Raises:
        the core errors (DataError, ModelError, StrategyError, ConfigError) with their messages.
    """
    bench = _Bench(config, batches)
    return bench.measure(config, bench.model)


def preflight_strategies(config: RunConfig, kinds: list[str] | None = None,
                         batches: int = STRATEGY_TABLE_BATCHES) -> list[dict[str, Any]]:
    """Pre-flight of each strategy in ``kinds`` (default: all) on this config's data, model and settings.

    Data, tokenizer and base model are loaded once; each strategy gets a copy of the model. Each row
    is :func:`preflight`'s dict, or ``{"kind", "error"}`` where that strategy refuses these settings
    (e.g. ``freeze_layers`` above the model's depth), so one refusal doesn't hide the other rows.
    Each strategy gets the learning rate ``core.compare`` would give it, with the config's own
    strategy pinned to the config's rate: the table shows what a comparison of these strategies runs.
    """
    from core.compare import learning_rate_for, run_config
    from core.config import STRATEGY_KINDS
    from core.strategies import StrategyError

    bench = _Bench(config, batches)
    own = {config.strategy.kind: config.train.learning_rate}
    rows = []
    for kind in kinds or list(STRATEGY_KINDS):
        lr, _ = learning_rate_for(kind, config, own, same=False)
        variant = run_config(config, kind, config.train.seed, lr)
        try:
            rows.append(bench.measure(variant, copy.deepcopy(bench.model)))
        except StrategyError as exc:
            rows.append({"kind": kind, "error": str(exc)})
    return rows


class _Bench:
    """What every pre-flight of one config shares: its data, tokenizer, base model and a timed sample."""

    def __init__(self, config: RunConfig, batches: int) -> None:
        from accelerate.utils import set_seed

        from core.data import label_ids, load_bundle
        from core.models import load_model, load_tokenizer
        from core.tokenize import EncodedSplit, PaddingCollator, encode_split

        self.bundle = bundle = load_bundle(config.data, config.task)
        tokenizer = load_tokenizer(config.model)
        set_seed(config.train.seed)
        self.model = load_model(config.model, config.task, bundle.labels.names)
        cfg = config.train
        micro = batches * cfg.gradient_accumulation_steps
        frame = bundle.train.sample(min(len(bundle.train), cfg.batch_size * micro), random_state=cfg.seed)
        max_length = min(config.model.max_length, getattr(self.model.config, "max_position_embeddings", 512))
        self.encoded = encode_split(frame, config.task, tokenizer, max_length, label_ids(frame, bundle.labels, config.task),
                                    cache_dir=config.runs_root / ".cache" / "tokens")
        self.one_batch = EncodedSplit(self.encoded.features[: cfg.batch_size])  # validation is not what is timed
        self.collator = PaddingCollator(tokenizer.pad_token_id or 0, config.task)

    def measure(self, config: RunConfig, model: Any) -> dict[str, Any]:
        import torch

        from core.device import make_accelerator
        from core.loop import make_loss, plan_steps, resolve_precision, train
        from core.strategies import build_strategy

        train_rows = len(self.bundle.train)
        plan = build_strategy(model, config, num_train_rows=train_rows)
        facts = plan.describe()  # before the loop: it is what the run will start with
        cfg = config.train
        # One epoch over the sample, a step event per optimizer step, no evaluation until the last step.
        timed = dataclasses.replace(config, train=dataclasses.replace(cfg, epochs=1, log_every=1, eval_every=0,
                                                                      early_stopping_patience=0))
        steps: list[dict[str, Any]] = []
        with tempfile.TemporaryDirectory(prefix="tuneboard-preflight-") as tmp:
            train(timed, plan, self.encoded, self.one_batch, collator=self.collator, loss_fn=make_loss(config.task),
                  score=lambda preds: {}, metric_name="loss", events=lambda e: steps.append(e) if e["type"] == "step" else None,
                  should_stop=lambda: False, checkpoint_dir=Path(tmp) / "checkpoint", on_best=lambda m: None,
                  accelerator=make_accelerator())
        rates = [e["samples_per_s"] for e in steps]
        # The first step pays for allocation and kernel warm-up (and, with frozen layers, their one pass).
        rate = statistics.median(rates[1:]) if len(rates) > 1 else rates[0]
        steps_per_epoch, total = plan_steps(train_rows, cfg)
        return {**facts, "seconds_per_step": cfg.batch_size * cfg.gradient_accumulation_steps / rate,
                "steps_per_epoch": steps_per_epoch, "total_steps": total,
                "epoch_seconds": train_rows / rate, "train_rows": train_rows,
                "measured_steps": len(rates), "device": "cuda" if torch.cuda.is_available() else "cpu",
                "precision": "bf16" if resolve_precision(cfg.precision, config.task) == "bf16" else "fp32",
                "learning_rate": cfg.learning_rate}


def preflight_in_subprocess(config: RunConfig, timeout_s: float = 600, *, every_strategy: bool = False) -> Any:
    """:func:`preflight` (or, with ``every_strategy``, :func:`preflight_strategies`) in a fresh
    ``python -m core preflight`` process; raises PreflightError with its message."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False, encoding="utf-8") as f:
        json.dump(config.to_dict(), f)
        path = f.name
    command = [sys.executable, "-m", "core", "preflight", "--config", path, "--json"]
    if every_strategy:
        command.append("--every-strategy")
    try:
        proc = subprocess.run(command,
                              capture_output=True, text=True, timeout=timeout_s, cwd=Path(__file__).resolve().parent.parent,
                              env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
    except subprocess.TimeoutExpired as exc:
        raise PreflightError(f"pre-flight took longer than {timeout_s:.0f} s; the run can still be started") from exc
    finally:
        os.unlink(path)
    if proc.returncode == 0:
        return json.loads(proc.stdout.strip().splitlines()[-1])
    raise PreflightError(cli_error(proc.stderr) or f"pre-flight stopped with exit code {proc.returncode}")


def cli_error(stderr: str) -> str | None:
    """The message of the CLI's last ``error:`` block (it wraps long lines; warnings may come before it)."""
    lines = stderr.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("error: ")]
    if not starts:
        return None
    block = [lines[starts[-1]].removeprefix("error: ")]
    block += [line.strip() for line in lines[starts[-1] + 1:] if line.startswith("       ")]
    return " ".join(block)
