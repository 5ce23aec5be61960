"""The expert's whole ``Trainer`` script, the reference for bench.command: ``python -m bench.hf_command DIR OUT PRECISION``.

What a practitioner who knows Trainer's speed settings writes for the job Tuneboard's ``core train``
does: read train/validation/test CSVs with ``datasets``, tokenize, fine-tune with dynamic padding to
a multiple of 8, length grouping and fused AdamW (Trainer's default optimizer), evaluate and save at
every epoch, keep the best model, predict the test split and save the model. It imports nothing from
Tuneboard, so its start-up is its own. ``BENCH_STOP_AT_FIRST_STEP=1`` kills it after the first
optimizer step (the start-up measurement, as TUNEBOARD_CRASH_AT=step:1 does for Tuneboard).
"""

from __future__ import annotations

import json
import os
import signal
import sys

from bench.common import BATCH, EVAL_BATCH, MAX_GRAD_NORM, MAX_LENGTH, SEED, WARMUP_RATIO, WEIGHT_DECAY

LEARNING_RATE = 1e-4


def main(data_dir: str, out: str, precision: str) -> None:
    import numpy as np
    from datasets import load_dataset
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    model_dir = sys.argv[4]  # the bundled MiniLM's folder, resolved by the caller
    files = {split: os.path.join(data_dir, f"{split}.csv") for split in ("train", "validation", "test")}
    data = load_dataset("csv", data_files=files)
    names = sorted(set(data["train"]["label"]))
    label_id = {n: i for i, n in enumerate(names)}
    tokenizer = AutoTokenizer.from_pretrained(model_dir)

    def encode(rows: dict) -> dict:
        return {**tokenizer(rows["text"], truncation=True, max_length=MAX_LENGTH), "labels": [label_id[x] for x in rows["label"]]}

    data = data.map(encode, batched=True, remove_columns=["text", "label"])
    model = AutoModelForSequenceClassification.from_pretrained(
        model_dir, num_labels=len(names), id2label=dict(enumerate(names)), label2id=label_id)

    def accuracy(pred: object) -> dict[str, float]:
        return {"accuracy": float((np.argmax(pred.predictions, -1) == pred.label_ids).mean())}

    class StopAtFirstStep(TrainerCallback):
        def on_step_end(self, args: object, state: object, control: object, **kwargs: object) -> None:
            os.kill(os.getpid(), signal.SIGKILL)

    args = TrainingArguments(
        output_dir=out, per_device_train_batch_size=BATCH, per_device_eval_batch_size=EVAL_BATCH, num_train_epochs=1,
        learning_rate=LEARNING_RATE, weight_decay=WEIGHT_DECAY, warmup_steps=WARMUP_RATIO, lr_scheduler_type="linear",
        max_grad_norm=MAX_GRAD_NORM, seed=SEED, train_sampling_strategy="group_by_length", eval_strategy="epoch",
        save_strategy="epoch", save_total_limit=1, load_best_model_at_end=True, metric_for_best_model="accuracy",
        report_to="none", disable_tqdm=True, logging_steps=10, use_cpu=True, bf16=precision == "bf16",
    )
    trainer = Trainer(model=model, args=args, train_dataset=data["train"], eval_dataset=data["validation"],
                      compute_metrics=accuracy, data_collator=DataCollatorWithPadding(tokenizer, pad_to_multiple_of=8),
                      callbacks=[StopAtFirstStep()] if os.environ.get("BENCH_STOP_AT_FIRST_STEP") else [])
    trainer.train()
    test = trainer.predict(data["test"])
    trainer.save_model(os.path.join(out, "model"))
    tokenizer.save_pretrained(os.path.join(out, "model"))
    print("RESULT " + json.dumps({"test_accuracy": test.metrics["test_accuracy"]}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3])
