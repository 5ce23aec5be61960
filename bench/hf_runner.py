"""The Hugging Face side: ``transformers.Trainer`` as tutorials use it, tuned, and tuned + bf16."""

from __future__ import annotations

import tempfile
import time
from typing import Any

import numpy as np

from bench.common import BATCH, EVAL_BATCH, FREEZE_LAYERS, LORA, MAX_GRAD_NORM, MAX_LENGTH, MODEL, WARMUP_RATIO, WEIGHT_DECAY, Spec


class Rows:
    """A list of tokenized rows as a torch-style dataset (what Trainer needs: len and getitem)."""

    def __init__(self, encodings: dict[str, list], labels: list[int]):
        self.rows = [{**{k: v[i] for k, v in encodings.items()}, "labels": labels[i]} for i in range(len(labels))]

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.rows[i]


def run(spec: Spec) -> dict[str, Any]:
    import torch
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
        set_seed,
    )

    from bench.common import load_data
    from core.data import label_ids
    from core.models import quiet_transformers, resolve_source

    quiet_transformers()
    if spec.system == "hf_best_malloc":  # a reference point, not a tutorial setting: Tuneboard's malloc thresholds given to Trainer
        from core.device import tune_cpu_allocator

        tune_cpu_allocator()
    t0 = time.monotonic()
    bundle = load_data(spec.train_rows)
    source = resolve_source(MODEL)
    tokenizer = AutoTokenizer.from_pretrained(source)
    tutorial = spec.system == "hf_tutorial"
    pad = {"padding": "max_length"} if tutorial else {}
    encode = lambda frame: tokenizer(frame["text"].astype(str).tolist(), truncation=True, max_length=MAX_LENGTH, **pad)  # noqa: E731
    train_set = Rows(encode(bundle.train), label_ids(bundle.train, bundle, "single_label"))
    val_set = Rows(encode(bundle.validation), label_ids(bundle.validation, bundle, "single_label"))
    names = bundle.labels.names
    set_seed(spec.seed)  # as tuneboard does before loading: the new head starts from the same draw
    model = AutoModelForSequenceClassification.from_pretrained(
        source, num_labels=len(names), id2label=dict(enumerate(names)), label2id={n: i for i, n in enumerate(names)})
    if spec.strategy == "freeze":
        for module in [model.bert.embeddings, *model.bert.encoder.layer[:FREEZE_LAYERS]]:
            module.requires_grad_(False)
    elif spec.strategy == "lora":
        from peft import LoraConfig, TaskType, get_peft_model

        model = get_peft_model(model, LoraConfig(task_type=TaskType.SEQ_CLS, r=LORA["r"], lora_alpha=LORA["alpha"],
                                                 lora_dropout=LORA["dropout"], target_modules=LORA["targets"]))
    out = tempfile.mkdtemp(prefix="bench-hf-")
    args = TrainingArguments(
        output_dir=out, per_device_train_batch_size=BATCH, num_train_epochs=spec.epochs, learning_rate=spec.lr,
        weight_decay=WEIGHT_DECAY, warmup_steps=WARMUP_RATIO, lr_scheduler_type="linear", max_grad_norm=MAX_GRAD_NORM,
        seed=spec.seed, data_seed=spec.seed, eval_strategy="no", save_strategy="no", report_to="none", disable_tqdm=True,
        logging_steps=10, use_cpu=True,
        # What tutorials leave at the defaults (eval batch 8, random sampling, fp32); the tuned variants change.
        **({} if tutorial else {"per_device_eval_batch_size": EVAL_BATCH, "train_sampling_strategy": "group_by_length"}),
        **({"bf16": True} if spec.system.startswith("hf_best") else {}),
    )

    def accuracy(pred: Any) -> dict[str, float]:
        return {"accuracy": float((np.argmax(pred.predictions, -1) == pred.label_ids).mean())}

    trainer = Trainer(model=model, args=args, train_dataset=train_set, eval_dataset=val_set, compute_metrics=accuracy,
                      data_collator=None if tutorial else DataCollatorWithPadding(tokenizer, pad_to_multiple_of=8))
    setup_s = time.monotonic() - t0
    result = trainer.train()
    metrics = trainer.evaluate()
    padded = [len(r["input_ids"]) for r in train_set.rows]
    return {
        "steps": result.global_step, "train_s": result.metrics["train_runtime"], "eval_s": metrics["eval_runtime"],
        "accuracy": metrics["eval_accuracy"], "eval_loss": metrics["eval_loss"],
        "setup_s": setup_s, "dtype": "bf16" if args.bf16 else "fp32",
        "optimizer": str(args.optim), "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "padded_tokens_per_epoch": int(sum(padded)) if tutorial else None, "torch_threads": torch.get_num_threads(),
    }
