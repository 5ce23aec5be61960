"""A sweep against the default settings and against a grid of the same budget, on real data.

``python -m bench.sweep [--rows 2000] [--trials 12]``: the bundled MiniLM-L6 (all 6 layers) on ``rotten_tomatoes``
(``--rows`` training rows, 500 validation and 500 test rows, 2 epochs, batch 32, macro F1 chooses):

1. **default**: one run with the example config's settings (full fine-tuning, learning rate 5e-5);
2. **sweep**: ``core.sweep.run_sweep`` with TPE (seed 0) and the median pruner over the learning rate
   (1e-5 to 1e-3, log) and the strategy (full, lora, freeze; LoRA's rank 8 or 16 when lora is drawn);
3. **grid**: the same budget as a grid, 4 learning rates x 3 strategies, not pruned (a grid is not).

Each picks its trial on validation macro F1; the test split is read once, for that trial. Trials run in this
process, one after another, at the machine's threads. Writes bench/results/sweep.json and sweep.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import RESULTS, load_avg

SPACE = {"train.learning_rate": {"low": 1e-5, "high": 1e-3, "log": True}, "strategy.kind": ["full", "lora", "freeze"],
         "strategy.lora_r": [8, 16]}
GRID_RATES = (1e-5, 5e-5, 2e-4, 1e-3)


def base_config(root: Path, rows: int) -> Any:
    from core.config import from_dict

    return from_dict({"name": "rt", "data": {"source": "sample:rotten_tomatoes", "max_train_samples": rows,
                                             "max_eval_samples": 500, "seed": 42},
                      "model": {"max_length": 128},
                      "train": {"epochs": 2, "batch_size": 32, "learning_rate": 5e-5, "warmup_ratio": 0.06,
                                "metric_for_best": "f1_macro", "eval_every": 16},
                      "output_dir": str(root)})


def summary(result: Any, seconds: float) -> dict[str, Any]:
    states = [t["state"] for t in result.trials]
    test = (result.best_test or {}).get("metrics") or {}
    return {"trials": len(states), "pruned": states.count("pruned"), "failed": states.count("fail"),
            "best_validation_f1_macro": result.best["value"] if result.best else None,
            "best_params": result.best["params"] if result.best else None,
            "test_accuracy": test.get("accuracy"), "test_f1_macro": test.get("f1_macro"), "wall_s": seconds,
            "trial_values": [(t["params"], t["state"], t["value"]) for t in result.trials]}


def main() -> None:
    from core import runs
    from core.recipe import run_training
    from core.sweep import parse_space, run_sweep

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--trials", type=int, default=12)
    args = parser.parse_args()
    out: dict[str, Any] = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "machine": platform.processor()
                           or platform.machine(), "rows": args.rows, "load_before": load_avg()}
    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as tmp:
        root = Path(tmp)
        base = base_config(root, args.rows)
        t0 = time.monotonic()
        default = run_training(base, None)
        report = runs.read_json(default.run_dir / runs.REPORT)
        out["default"] = {"trials": 1, "pruned": 0, "best_validation_f1_macro": report["best_metric"]["value"],
                          "test_accuracy": report["test"]["metrics"]["accuracy"],
                          "test_f1_macro": report["test"]["metrics"]["f1_macro"], "wall_s": time.monotonic() - t0}
        print("default", out["default"], flush=True)

        space = parse_space(SPACE)
        t0 = time.monotonic()
        tpe = run_sweep(base, space, args.trials, name="tpe", seed=0, pruner="median")
        out["sweep"] = summary(tpe, time.monotonic() - t0)
        print("sweep", out["sweep"], flush=True)

        grid = [{"train.learning_rate": rate, "strategy.kind": kind, **({"strategy.lora_r": 8} if kind == "lora" else {})}
                for kind in ("full", "lora", "freeze") for rate in GRID_RATES][: args.trials]
        t0 = time.monotonic()
        gridded = run_sweep(base, space, len(grid), name="grid", pruner="none", enqueue=grid)
        out["grid"] = summary(gridded, time.monotonic() - t0)
        print("grid", out["grid"], flush=True)
    out["load_after"] = load_avg()
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "sweep.json").write_text(json.dumps(out, indent=2))
    lines = [f"# Sweep vs default vs grid ({out['date']}, {out['machine']}, load {out['load_before']} → {out['load_after']})", "",
             f"rotten_tomatoes, {args.rows} training rows, 500 validation, 500 test; bundled MiniLM-L6 (6 layers), 2 epochs, "
             "batch 32; the trial is chosen on validation macro F1 and only that trial is evaluated on test.", "",
             "| | trials | pruned | best validation F1 (macro) | its test accuracy | its test F1 (macro) | wall time | best settings |",
             "|---|---:|---:|---:|---:|---:|---:|---|"]
    for key in ("default", "sweep", "grid"):
        r = out[key]
        lines.append(f"| {key} | {r['trials']} | {r['pruned']} | {r['best_validation_f1_macro']:.4f} | {r['test_accuracy']:.4f} | "
                     f"{r['test_f1_macro']:.4f} | {r['wall_s'] / 60:.1f} min | {r.get('best_params') or 'full, lr 5e-5'} |")
    for key in ("sweep", "grid"):
        lines += ["", f"{key} trials (settings, state, validation F1):", ""]
        lines += [f"- {p} {s} {v if v is None else round(v, 4)}" for p, s, v in out[key]["trial_values"]]
    (RESULTS / "sweep.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
