"""The Tuneboard side: ``core.recipe.run_training`` with its defaults and the shared hyper-parameters.

``spec.levers`` switches single speed mechanisms off, for the lever measurements (bench --levers).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from bench.common import BATCH, FREEZE_LAYERS, LORA, MAX_GRAD_NORM, MAX_LENGTH, MODEL, WARMUP_RATIO, WEIGHT_DECAY, Spec


def apply_levers(levers: dict[str, Any]) -> dict[str, Any]:
    """Monkeypatch core for a lever experiment; returns TrainConfig overrides."""
    import torch

    import core.loop
    import core.tokenize

    train_overrides: dict[str, Any] = {}
    if levers.get("fused_adamw") is False:
        core.loop.make_optimizer = lambda groups, lr, device, fused=True: torch.optim.AdamW(groups, lr=lr)
    if levers.get("word_embeddings_train") is False:  # an upper bound on what a sparse embedding update could save
        make = core.loop.make_optimizer

        def without_word_embeddings(groups: list, lr: float, device: Any, fused: bool = True) -> Any:
            for group in groups:
                for p in group["params"]:
                    if p.dim() == 2 and p.shape[0] > 10_000:  # the word-embedding matrix (30,522 rows for MiniLM)
                        p.requires_grad_(False)
            return make(groups, lr, device, fused)
        core.loop.make_optimizer = without_word_embeddings
    if levers.get("compile"):  # torch.compile of the model's forward (inductor), lengths bucketed by the padding multiple
        use_first_token = core.loop.use_cls_only_top_layer

        def compiled(model: Any) -> bool:
            applied = use_first_token(model)
            model.forward = torch.compile(model.forward, dynamic=levers["compile"] == "dynamic")
            return applied
        core.loop.use_cls_only_top_layer = compiled
    if levers.get("cls_only_top_layer") is False:
        train_overrides["cls_only_top_layer"] = False
    if levers.get("skip_padding") is False:
        train_overrides["skip_padding"] = False
    if levers.get("allocator") is False:
        core.loop.tune_cpu_allocator = lambda: None
    if "pad_to_multiple_of" in levers:
        core.tokenize.PaddingCollator.__init__.__defaults__ = (levers["pad_to_multiple_of"],)
    if "precision" in levers:
        train_overrides["precision"] = levers["precision"]
    if "log_every" in levers:
        train_overrides["log_every"] = levers["log_every"]
    if levers.get("fast_cpu_dropout") is False:
        train_overrides["fast_cpu_dropout"] = False
    if levers.get("frozen_cache") is False:
        train_overrides["cache_frozen_layers"] = False
    if levers.get("length_grouping") is False:  # random batches instead of length-grouped ones
        init = core.tokenize.LengthGroupedBatches.__init__
        core.tokenize.LengthGroupedBatches.__init__ = lambda self, *a, **k: init(self, *a, **{**k, "grouped": False})
    if levers.get("batch_order") == "trainer":  # transformers' order: windows in turn, each long to short, unshuffled
        core.tokenize.LengthGroupedBatches.batches = lambda self: self.window_batches(np.random.default_rng([self.seed, self.epoch]))
    if "threads" in levers:
        torch.set_num_threads(levers["threads"])
    return train_overrides


def run(spec: Spec) -> dict[str, Any]:
    from bench.common import data_config
    from core.config import ModelConfig, RunConfig, StrategyConfig, TrainConfig
    from core.device import resolve_precision
    from core.events import read_events
    from core.recipe import run_training
    from core.runs import EVENTS

    t0 = time.monotonic()
    overrides = apply_levers(dict(spec.levers))
    steps_per_epoch = spec.train_rows // BATCH
    config = RunConfig(
        name=f"bench-{spec.strategy}-{spec.epochs}",
        data=data_config().__class__(**{**data_config().__dict__, "max_train_samples": spec.train_rows}),
        model=ModelConfig(name=MODEL, max_length=MAX_LENGTH),
        strategy=StrategyConfig(kind=spec.strategy, freeze_layers=FREEZE_LAYERS, lora_r=LORA["r"], lora_alpha=LORA["alpha"],
                                lora_dropout=LORA["dropout"], target_modules=LORA["targets"] if spec.strategy == "lora" else []),
        # Evaluate once, at the end, as the Trainer runs do.
        train=TrainConfig(epochs=spec.epochs, batch_size=BATCH, learning_rate=spec.lr, weight_decay=WEIGHT_DECAY,
                          warmup_ratio=WARMUP_RATIO, max_grad_norm=MAX_GRAD_NORM, seed=spec.seed,
                          eval_every=steps_per_epoch * spec.epochs, **overrides),
        output_dir=spec.out_dir,
    )
    outcome = run_training(config)
    report = outcome.report
    last_eval = [e for e in read_events(outcome.run_dir / EVENTS)[0] if e["type"] == "eval"][-1]
    return {
        "steps": report["steps"]["done"], "train_s": report["timings"]["step_s"], "eval_s": last_eval["seconds"],
        "accuracy": last_eval["metrics"]["accuracy"], "eval_loss": last_eval["metrics"]["loss"], "setup_s": report["timings"]["setup_s"],
        "run_wall_s": time.monotonic() - t0, "dtype": "bf16" if resolve_precision(config.train.precision) == "bf16" else "fp32",
        "optimizer": "adamw" if dict(spec.levers).get("fused_adamw", True) is False else "adamw fused",
        "trainable_params": report["strategy"]["trainable_params"], "report_samples_per_s": report["timings"]["samples_per_s"],
        "report_tokens_per_s": report["timings"]["tokens_per_s"], "run_dir": str(outcome.run_dir),
    }
