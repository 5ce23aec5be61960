"""Our loop computes what transformers' Trainer computes (the fast in-suite version of bench.equivalence).

Dropout off on both sides, the same initial weights, and our loop fed exactly the batches Trainer drew:
then loss, clipping, AdamW's parameter groups and the learning-rate schedule are all that can differ,
and the two loss curves must agree step by step. A change to any of them in core.loop shows here.
"""

from __future__ import annotations

import numpy as np
import pytest

import core.tokenize
from bench.equivalence import batch_recorder, no_dropout
from core.config import ModelConfig, StrategyConfig, TrainConfig
from core.data import label_ids, load_bundle
from core.loop import make_loss, train
from core.models import load_model, load_tokenizer
from core.strategies import build_strategy
from core.tokenize import PaddingCollator, encode_split
from tests.support.tiny import tiny_config

# warmup 0.1 x 12 steps = 1.2: Trainer takes 2 warmup steps (ceil), round() would take 1. A weight decay
# this large makes decaying the wrong parameters visible: with LayerNorm and biases decayed too, full
# fine-tuning's losses part by 5e-6 within 12 steps; the two loops agree to 6e-8.
HYPER = {"learning_rate": 2e-4, "weight_decay": 0.5, "warmup_ratio": 0.1, "max_grad_norm": 1.0, "seed": 7}


@pytest.mark.parametrize("kind", ["full", "lora"])
def test_loop_matches_trainer_step_for_step(kind, tmp_path, monkeypatch):
    from peft import LoraConfig, TaskType, get_peft_model
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments, set_seed

    config = tiny_config(tmp_path, train_rows=96).replace(
        strategy=StrategyConfig(kind=kind, lora_r=4, lora_alpha=8, target_modules=["query", "value"] if kind == "lora" else []),
        train=TrainConfig(epochs=2, batch_size=16, log_every=1, precision="fp32", eval_every=1000, **HYPER))
    bundle = load_bundle(config.data, "single_label")
    tokenizer = load_tokenizer(config.model)
    targets = label_ids(bundle.train, bundle.labels, "single_label")
    encoded = encode_split(bundle.train, "single_label", tokenizer, 64, targets)
    rows = [dict(r) for r in encoded.features]

    # --- Trainer, recording the rows of each batch it draws (the benchmark's recorder) ---------------
    set_seed(HYPER["seed"])
    model = load_model(ModelConfig(num_layers=2, max_length=64), "single_label", bundle.labels.names)
    if kind == "lora":
        model = get_peft_model(model, LoraConfig(task_type=TaskType.SEQ_CLS, r=4, lora_alpha=8, lora_dropout=0.1,
                                                 target_modules=["query", "value"]))
    no_dropout(model)
    recording_collator, drawn = batch_recorder(rows, DataCollatorWithPadding(tokenizer, pad_to_multiple_of=8))

    args = TrainingArguments(output_dir=str(tmp_path / "hf"), per_device_train_batch_size=16, num_train_epochs=2,
                             learning_rate=HYPER["learning_rate"], weight_decay=HYPER["weight_decay"],
                             warmup_steps=HYPER["warmup_ratio"], max_grad_norm=HYPER["max_grad_norm"], seed=HYPER["seed"],
                             lr_scheduler_type="linear", logging_steps=1, eval_strategy="no", save_strategy="no",
                             report_to="none", disable_tqdm=True, use_cpu=True)
    trainer = Trainer(model=model, args=args, train_dataset=rows, data_collator=recording_collator)
    trainer.train()
    hf_loss = [h["loss"] for h in trainer.state.log_history if "loss" in h and "step" in h]
    hf_lr = [h["learning_rate"] for h in trainer.state.log_history if "learning_rate" in h]

    # --- our loop on the same batches, from the same initial weights ---------------------------------
    per_epoch = len(drawn) // 2
    monkeypatch.setattr(core.tokenize.LengthGroupedBatches, "batches",
                        lambda self: drawn[self.epoch * per_epoch:(self.epoch + 1) * per_epoch])
    set_seed(HYPER["seed"])
    ours = load_model(ModelConfig(num_layers=2, max_length=64), "single_label", bundle.labels.names)
    plan = build_strategy(ours, config, num_train_rows=len(rows))
    no_dropout(plan.model)
    events: list[dict] = []
    train(config, plan, encoded, encoded, collator=PaddingCollator(tokenizer.pad_token_id, "single_label"),
          loss_fn=make_loss("single_label"), score=lambda preds: {"accuracy": 0.0}, metric_name="accuracy",
          events=events.append, should_stop=lambda: False, checkpoint_dir=tmp_path / "ckpt", on_best=lambda m: None)
    steps = [e for e in events if e["type"] == "step"]

    assert len(steps) == len(hf_loss) == 12  # 96 rows / 16 x 2 epochs
    assert np.max(np.abs(np.array([e["loss"] for e in steps]) - np.array(hf_loss))) < 5e-7
    assert [e["lr"] for e in steps] == pytest.approx(hf_lr, rel=1e-6, abs=1e-12)
