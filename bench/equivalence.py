"""``python -m bench.equivalence``: does Tuneboard's loop compute what ``transformers.Trainer`` computes?

The accuracy comparison (bench.accuracy) can only say "within noise": batch order and dropout masks
differ between the two systems, and a 100-step run moves by several points with either. This takes
both away. Dropout is switched off on both sides, the Trainer run records the rows of every batch it
draws, and Tuneboard's loop is fed exactly those batches; both run fp32 from the same initial weights.
What is left to differ is the loop itself: loss, gradient clipping, AdamW and its parameter groups,
the learning-rate schedule. The two loss curves then agree step by step to float rounding, or the
first step where they part says which piece differs.

Each side runs in its own process (``--side hf|tuneboard`` is the worker entry). Results:
bench/results/equivalence.{json,md} (``--precision auto``: equivalence-auto.{json,md}, where the
difference is bf16's rounding on top of the loop).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.common import BATCH, RESULTS, SEED, STEPS, Spec, load_avg, quiet, run_worker


def no_dropout(model: Any) -> None:
    """Every dropout module of BERT and peft off (BERT's attention reads its rate from one, too)."""
    import torch

    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0


def batch_recorder(rows: list[dict[str, Any]], collate: Any, limit: int | None = None) -> tuple[Any, list[list[int]]]:
    """A collator that hands batches to ``collate`` and records which of ``rows`` each batch held.

    Trainer copies rows (dropping unused columns) before they reach the collator, so a row is known
    by its content; rows with equal content are interchangeable for training. ``limit``: record only
    the first batches (the training ones; evaluation's come after).
    """
    def key(row: dict[str, Any]) -> tuple:
        return tuple(row["input_ids"]), int(row["labels"])

    index = {key(row): i for i, row in enumerate(rows)}
    drawn: list[list[int]] = []

    def collator(features: list[dict[str, Any]]) -> Any:
        if limit is None or len(drawn) < limit:
            drawn.append([index[key(f)] for f in features])
        return collate(features)

    return collator, drawn


def hf_side(spec: Spec, batches_file: Path, keep_dropout: bool = False) -> dict[str, Any]:
    import peft
    import transformers

    from bench import hf_runner

    # Dropout off wherever a model is built or wrapped; every batch Trainer draws, recorded.
    original_peft, original_trainer_init = peft.get_peft_model, transformers.Trainer.__init__
    switch_off = (lambda model: None) if keep_dropout else no_dropout

    def get_peft_model(*args: Any, **kwargs: Any) -> Any:
        wrapped = original_peft(*args, **kwargs)
        switch_off(wrapped)
        return wrapped

    def trainer_init(self: Any, *args: Any, **kwargs: Any) -> None:
        switch_off(kwargs["model"])
        kwargs["args"].logging_steps = 1
        kwargs["data_collator"], drawn = batch_recorder(kwargs["train_dataset"].rows, kwargs["data_collator"],
                                                        limit=spec.epochs * math.ceil(spec.train_rows / BATCH))
        original_trainer_init(self, *args, **kwargs)
        built.append((self, drawn))

    built: list[tuple[Any, list[list[int]]]] = []  # the Trainer and its recorded batches, once it is built
    peft.get_peft_model = get_peft_model
    transformers.Trainer.__init__ = trainer_init
    result = hf_runner.run(spec)
    trainer, batches = built[0]
    history = trainer.state.log_history
    per_epoch = len(batches) // spec.epochs
    batches_file.write_text(json.dumps([batches[e * per_epoch: (e + 1) * per_epoch] for e in range(spec.epochs)]))
    return {"accuracy": result["accuracy"], "eval_loss": result["eval_loss"],
            "loss": [h["loss"] for h in history if "loss" in h and "step" in h],
            "lr": [h["learning_rate"] for h in history if "learning_rate" in h]}


def tuneboard_side(spec: Spec, batches_file: Path, keep_dropout: bool = False, dropout_seed: int | None = None) -> dict[str, Any]:
    import core.loop
    import core.recipe
    import core.tokenize
    from bench import tb_runner
    from core.events import read_events
    from core.runs import EVENTS

    recorded = json.loads(batches_file.read_text())
    core.tokenize.LengthGroupedBatches.batches = lambda self: recorded[self.epoch]
    build = core.recipe.build_strategy

    def build_strategy(*args: Any, **kwargs: Any) -> Any:
        plan = build(*args, **kwargs)
        if not keep_dropout:
            no_dropout(plan.model)
        return plan

    core.recipe.build_strategy = build_strategy
    if dropout_seed is not None:  # the loop's seed (dropout draws; batches are given) apart from the initialisation's
        seed_everything = core.loop.set_seed
        core.loop.set_seed = lambda _seed: seed_everything(dropout_seed)
    result = tb_runner.run(Spec(**{**spec.to_dict(), "levers": tuple(spec.levers) + (("log_every", 1),)}))
    steps = [e for e in read_events(Path(result["run_dir"]) / EVENTS)[0] if e["type"] == "step"]
    return {"accuracy": result["accuracy"], "eval_loss": result["eval_loss"], "loss": [e["loss"] for e in steps],
            "lr": [e["lr"] for e in steps]}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.equivalence", description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default="full:1,freeze:3,lora:3", help="strategy:epochs list (default %(default)s)")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--steps", type=int, default=STEPS)
    parser.add_argument("--precision", default="fp32", help="Tuneboard's precision: fp32 (as the Trainer here) or auto")
    parser.add_argument("--keep-dropout", action="store_true",
                        help="leave dropout on: the batches are shared, the dropout draws are each system's own "
                             "(accuracy only; the loss curves then differ from the first step)")
    parser.add_argument("--dropout-seeds", type=int, default=0,
                        help="with --keep-dropout: also rerun Tuneboard on the same batches and initial weights with N other "
                             "dropout seeds (how far dropout draws alone move the result)")
    parser.add_argument("--out", default=str(RESULTS))
    parser.add_argument("--dropout-seed", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--side", choices=["hf", "tuneboard"], help=argparse.SUPPRESS)
    parser.add_argument("--spec", help=argparse.SUPPRESS)
    parser.add_argument("--batches", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.side:  # worker
        quiet()
        spec = Spec(**{**json.loads(args.spec), "levers": tuple(tuple(x) for x in json.loads(args.spec)["levers"])})
        if args.side == "hf":
            result = hf_side(spec, Path(args.batches), args.keep_dropout)
        else:
            result = tuneboard_side(spec, Path(args.batches), args.keep_dropout, args.dropout_seed)
        print("RESULT " + json.dumps(result), flush=True)
        return

    if args.dropout_seeds and not args.keep_dropout:
        parser.error("--dropout-seeds needs --keep-dropout")
    dropout_flag = ["--keep-dropout"] if args.keep_dropout else []
    load_start = load_avg()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-equivalence-") as tmp:
        for item in args.configs.split(","):
            strategy, epochs = item.split(":")
            hf_spec = Spec("hf_tuned", strategy, int(epochs), steps=args.steps, seed=args.seed)
            tb_spec = Spec("tuneboard", strategy, int(epochs), steps=args.steps, seed=args.seed, out_dir=str(Path(tmp) / "runs"),
                           levers=(("precision", args.precision),))
            batches = Path(tmp) / f"{strategy}-{epochs}.json"
            print(f"  {strategy} {epochs} epoch(s): Trainer ... ", end="", flush=True)
            hf = run_worker("bench.equivalence", "--side", "hf", "--spec", json.dumps(hf_spec.to_dict()), "--batches", str(batches),
                            *dropout_flag)
            print("Tuneboard on its batches ... ", end="", flush=True)
            tb_args = ["--side", "tuneboard", "--spec", json.dumps(tb_spec.to_dict()), "--batches", str(batches), *dropout_flag]
            tb = run_worker("bench.equivalence", *tb_args)
            other_draws = [run_worker("bench.equivalence", *tb_args, "--dropout-seed", str(1000 + k))["accuracy"]
                           for k in range(args.dropout_seeds)]
            n = min(len(hf["loss"]), len(tb["loss"]))
            diffs = [abs(a - b) for a, b in zip(hf["loss"][:n], tb["loss"][:n], strict=True)]
            lr_diffs = [abs(a - b) for a, b in zip(hf["lr"], tb["lr"], strict=False)]
            first_apart = next((i + 1 for i, d in enumerate(diffs) if d > 1e-3), None)
            row = {"strategy": strategy, "epochs": int(epochs), "steps": n, "hf_accuracy": hf["accuracy"],
                   "tb_accuracy": tb["accuracy"], "hf_eval_loss": hf["eval_loss"], "tb_eval_loss": tb["eval_loss"],
                   "max_loss_diff": max(diffs), "first_step_apart": first_apart, "max_lr_diff": max(lr_diffs),
                   "tb_accuracy_other_dropout_seeds": other_draws,
                   "hf_loss": hf["loss"], "tb_loss": tb["loss"], "hf_lr": hf["lr"], "tb_lr": tb["lr"]}
            rows.append(row)
            print(f"accuracy {hf['accuracy']:.3f} / {tb['accuracy']:.3f}, max |loss difference| {max(diffs):.2e}", flush=True)

    date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    dropout = "dropout on, each system its own draws" if args.keep_dropout else "dropout off"
    lines = [f"Loop equivalence, {date}: Trainer (fp32) and Tuneboard (precision={args.precision}), {dropout}, "
             f"on the same batches from the same initial weights, seed {args.seed}, ~{args.steps} optimizer steps "
             f"(load {load_start[0]} → {load_avg()[0]}).", "",
             "| strategy | epochs | steps | max abs loss difference | first step apart (> 1e-3) | max lr difference "
             "| Trainer accuracy | Tuneboard accuracy | eval loss (Trainer / Tuneboard) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['strategy']} | {r['epochs']} | {r['steps']} | {r['max_loss_diff']:.2e} | {r['first_step_apart'] or '—'} "
                     f"| {r['max_lr_diff']:.1e} | {r['hf_accuracy']:.3f} | {r['tb_accuracy']:.3f} "
                     f"| {r['hf_eval_loss']:.4f} / {r['tb_eval_loss']:.4f} |")
        if r["tb_accuracy_other_dropout_seeds"]:
            draws = r["tb_accuracy_other_dropout_seeds"]
            lines.append(f"\n{r['strategy']}, {r['epochs']} epoch(s): Tuneboard with {len(draws)} other dropout seeds on the same "
                         f"batches: accuracy {', '.join(f'{a:.3f}' for a in draws)} (mean {statistics.mean(draws):.3f}).")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = "equivalence" + ("" if args.precision == "fp32" else f"-{args.precision}") + ("-keep-dropout" if args.keep_dropout else "")
    (out / f"{stem}.json").write_text(json.dumps({"date": date, "seed": args.seed, "precision": args.precision,
                                                      "results": rows}, indent=2))
    (out / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
