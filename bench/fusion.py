"""Fusion: does combining runs help, and by more than the seed-to-seed noise?

``python -m bench.fusion [--rows 4000] [--epochs 1] [--seeds 5]``: trains ``--seeds`` full fine-tunings of the
bundled MiniLM-L6 on ``rotten_tomatoes`` (same split, seeds 1..N) and one LoRA and one adapter run, all with
``python -m core train``; then fuses them with ``python -m core fuse`` — the seeds by ensemble, uniform soup,
greedy soup, task arithmetic, TIES and DARE-TIES; full + LoRA + adapter by ensemble — and reports each fused
model's test accuracy and macro-F1 against the best and the mean member, beside the members' spread
(standard deviation over seeds), so a gain can be told from noise. Writes bench/results/fusion.json and .md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import ENV, RESULTS, ROOT, load_avg

LEARNING_RATES = {"full": 1e-4, "lora": 1e-3, "adapter": 1e-3}


def core(root: Path, *args: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "core", "--root", str(root), *args], cwd=ROOT, env=ENV,
                          capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"core {' '.join(args)[:200]} failed:\n{proc.stderr[-3000:]}")
    return proc.stdout


def train(root: Path, name: str, kind: str, seed: int, rows: int, epochs: float) -> str:
    config = {"name": name, "data": {"source": "sample:rotten_tomatoes", "max_train_samples": rows, "seed": 42},
              "model": {"name": "bundled:minilm-l6", "max_length": 128}, "strategy": {"kind": kind},
              "train": {"epochs": epochs, "batch_size": 16, "learning_rate": LEARNING_RATES[kind], "seed": seed}}
    path = Path(tempfile.mkdtemp(prefix="bench-fusion-")) / f"{name}.json"
    path.write_text(json.dumps(config))
    t0 = time.monotonic()
    core(root, "train", "--config", str(path))
    print(f"trained {name} in {time.monotonic() - t0:.0f} s", file=sys.stderr)
    from core import runs

    return next(r.run_id for r in runs.list_runs(root) if r.name == name)


def scores(root: Path, run_id: str) -> dict[str, Any]:
    from core import runs

    report = runs.read_json(root / run_id / runs.REPORT) or {}
    metrics = (report.get("test") or {}).get("metrics") or {}
    return {"accuracy": metrics.get("accuracy"), "f1_macro": metrics.get("f1_macro"),
            "weights_mb": (report.get("derived") or {}).get("weights_mb")}


def fused_row(root: Path, label: str, members: list[str], method: str, *options: str) -> dict[str, Any]:
    from core import runs

    name = f"fused-{label.replace(' ', '-').replace('+', '')}"
    t0 = time.monotonic()
    core(root, "fuse", *members, "--method", method, "--name", name, *options)
    run_id = next(r.run_id for r in runs.list_runs(root) if r.name == name)
    mine, theirs = scores(root, run_id), [scores(root, m) for m in members]
    row = {"fused": label, "method": method, "options": list(options), "run_id": run_id, "seconds": time.monotonic() - t0,
           "weights_mb": mine["weights_mb"], "members": len(members)}
    for key in ("accuracy", "f1_macro"):
        values = [t[key] for t in theirs]
        row[key] = mine[key]
        row[f"{key}_best"], row[f"{key}_mean"] = max(values), statistics.mean(values)
        row[f"{key}_sd"] = statistics.stdev(values) if len(values) > 1 else 0.0
        row[f"{key}_vs_best"], row[f"{key}_vs_mean"] = mine[key] - max(values), mine[key] - statistics.mean(values)
    used = (runs.read_json(root / run_id / runs.REPORT) or {}).get("fusion", {}).get("members_used")
    if used:
        row["members_used"] = len(used)
    print(f"  {label}: {time.monotonic() - t0:.0f} s", file=sys.stderr)
    return row


def markdown(result: dict[str, Any]) -> str:
    lines = [f"Fusion benchmark of {result['date']} ({result['cores']} cores); load {result['load_start']} -> {result['load_end']}; "
             f"{result['minutes']:.1f} min. Members: bundled MiniLM-L6 (6 layers) on rotten_tomatoes, {result['train_rows']} training "
             f"rows, {result['epochs']} epoch(s), the same split; {result['seeds']} full fine-tunings (seeds 1..{result['seeds']}, "
             "lr 1e-4) and one LoRA (r=8, lr 1e-3) and one adapter (Pfeiffer, lr 1e-3) run. Test split: "
             f"{result['test_rows']} rows. Points are accuracy/macro-F1 x 100; 'vs best' and 'vs mean' compare with the "
             "fused members; sd is the members' standard deviation (the noise a gain must beat).", "",
             "| fused | members | accuracy | vs best | vs mean | members' sd | macro-F1 | vs best | vs mean | members' sd | weights MB |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        used = f" ({r['members_used']} used)" if r.get("members_used") else ""
        lines.append(f"| {r['fused']} | {r['members']}{used} | {100 * r['accuracy']:.2f} | {100 * r['accuracy_vs_best']:+.2f} | "
                     f"{100 * r['accuracy_vs_mean']:+.2f} | {100 * r['accuracy_sd']:.2f} | {100 * r['f1_macro']:.2f} | "
                     f"{100 * r['f1_macro_vs_best']:+.2f} | {100 * r['f1_macro_vs_mean']:+.2f} | {100 * r['f1_macro_sd']:.2f} | "
                     f"{r['weights_mb'] or 0:.1f} |")
    lines += ["", "Members: " + ", ".join(f"{m['name']} {100 * m['accuracy']:.2f} / {100 * m['f1_macro']:.2f}"
                                          for m in result["members"]), ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=4000)
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--root", help="keep the runs here (default: a temporary folder)")
    args = parser.parse_args()
    started, load_start = time.monotonic(), load_avg()
    root = Path(args.root or tempfile.mkdtemp(prefix="bench-fusion-runs-"))
    root.mkdir(parents=True, exist_ok=True)
    seeds = [train(root, f"full-seed{s}", "full", s, args.rows, args.epochs) for s in range(1, args.seeds + 1)]
    lora, adapter = (train(root, kind, kind, 1, args.rows, args.epochs) for kind in ("lora", "adapter"))
    rows = [fused_row(root, "ensemble of seeds", seeds, "ensemble"),
            fused_row(root, "uniform soup of seeds", seeds, "soup"),
            fused_row(root, "greedy soup of seeds", seeds, "soup", "--set", "recipe=greedy"),
            fused_row(root, "task arithmetic of seeds", seeds, "task_arithmetic"),
            fused_row(root, "TIES of seeds", seeds, "ties"),
            fused_row(root, "DARE-TIES of seeds", seeds, "dare_ties"),
            fused_row(root, "ensemble of full + LoRA + adapter", [seeds[0], lora, adapter], "ensemble")]
    from core import runs

    members = [{"name": r.name, **scores(root, r.run_id)} for r in runs.list_runs(root) if not r.derived_method]
    report = runs.read_json(root / seeds[0] / runs.REPORT) or {}
    result = {"date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"), "cores": __import__("os").cpu_count(),
              "load_start": load_start, "load_end": load_avg(), "minutes": (time.monotonic() - started) / 60,
              "train_rows": args.rows, "epochs": args.epochs, "seeds": args.seeds,
              "test_rows": (report.get("test") or {}).get("num_examples"), "root": str(root), "members": members, "rows": rows}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "fusion.json").write_text(json.dumps(result, indent=1))
    (RESULTS / "fusion.md").write_text(markdown(result) + "\n")
    print(markdown(result))


if __name__ == "__main__":
    main()
