"""``python -m bench.accuracy``: does speed cost accuracy? Tuneboard vs the tuned Trainer over several seeds.

The main benchmark's runs are 100 optimizer steps, and one seed of a run that short moves by several
points of accuracy with nothing but the seed changed (LoRA at 100 steps sits near the class prior).
So this measures each configuration over ``--seeds`` training seeds (head initialisation, dropout,
batch order; the data subset and the evaluation rows stay fixed), systems interleaved per seed, and
reports mean ± standard deviation and the difference of the means with its standard error.

Results: bench/results/accuracy.{json,md} (with ``--steps N`` other than the default:
accuracy-N-steps.{json,md}).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import statistics
import time
from pathlib import Path
from typing import Any

from bench.common import RESULTS, SEED, STEPS, Spec, load_avg, run_worker

# Tuneboard with one lever set, compared like a system (``--systems fp32_reference,fp32_fused``).
VARIANTS: dict[str, tuple[tuple[str, Any], ...]] = {
    "fp32_reference": (("precision", "fp32"), ("fused_adamw", False)),
    "fp32_fused": (("precision", "fp32"),),
    "every_token": (("cls_only_top_layer", False),),
    "first_token": (),
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.accuracy", description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default="full:3,lora:3", help="strategy:epochs list (default %(default)s)")
    parser.add_argument("--systems", default="hf_tuned,tuneboard",
                        help=f"systems to compare (default %(default)s; also tuneboard variants: {', '.join(VARIANTS)})")
    parser.add_argument("--seeds", type=int, default=5, help="training seeds per configuration (default %(default)s)")
    parser.add_argument("--steps", type=int, default=STEPS)
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args(argv)
    runs_root = os.environ.get("BENCH_RUNS", "/tmp/tuneboard-bench-runs")
    systems = args.systems.split(",")
    started, load_start = time.monotonic(), load_avg()
    results: list[dict[str, Any]] = []
    for item in args.configs.split(","):
        strategy, epochs = item.split(":")
        for k in range(args.seeds):
            for system in systems if k % 2 == 0 else systems[::-1]:
                spec = Spec("tuneboard" if system in VARIANTS else system, strategy, int(epochs), steps=args.steps,
                            levers=VARIANTS.get(system, ()), out_dir=runs_root, seed=SEED + k)
                print(f"  {system:<10} {strategy:<6} {epochs} epoch(s) seed {spec.seed} ... ", end="", flush=True)
                r = run_worker("bench.worker", json.dumps(spec.to_dict()))
                results.append({"system": system, "strategy": strategy, "epochs": int(epochs), "seed": spec.seed,
                                "accuracy": r["accuracy"], "eval_loss": r["eval_loss"], "dtype": r["dtype"],
                                "train_samples_per_s": spec.train_rows * int(epochs) / r["train_s"]})
                print(f"acc {r['accuracy']:.3f} ({r['dtype']})", flush=True)

    date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [f"Accuracy over {args.seeds} training seeds, {date} ({args.steps} optimizer steps per run, the main benchmark's "
             f"data and settings; load {load_start[0]} → {load_avg()[0]}, {(time.monotonic() - started) / 60:.1f} min).", "",
             "| strategy | epochs | " + " | ".join(f"{s} accuracy" for s in systems) + f" | {systems[-1]} − {systems[0]} (± s.e.) |",
             "|---|---|" + "---|" * (len(systems) + 1)]
    summary = []
    for item in args.configs.split(","):
        strategy, epochs = item.split(":")
        accs = {s: [r["accuracy"] for r in results if (r["system"], r["strategy"], r["epochs"]) == (s, strategy, int(epochs))]
                for s in systems}
        cells = [f"{statistics.mean(a):.3f} ± {statistics.stdev(a) if len(a) > 1 else 0:.3f}" for a in accs.values()]
        a, b = accs[systems[0]], accs[systems[-1]]
        diff = statistics.mean(b) - statistics.mean(a)
        se = math.sqrt(sum(statistics.variance(x) / len(x) for x in (a, b))) if min(len(a), len(b)) > 1 else float("nan")
        summary.append({"strategy": strategy, "epochs": int(epochs), "difference": diff, "standard_error": se,
                        **{f"{s}_mean": statistics.mean(v) for s, v in accs.items()}})
        lines.append(f"| {strategy} | {epochs} | " + " | ".join(cells) + f" | {100 * diff:+.1f} ± {100 * se:.1f} pt |")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = "accuracy" if args.steps == STEPS else f"accuracy-{args.steps}-steps"
    (out / f"{stem}.json").write_text(json.dumps({"date": date, "seeds": args.seeds, "steps": args.steps, "results": results,
                                                  "summary": summary}, indent=2))
    (out / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
