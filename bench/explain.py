"""Explanations: time per explanation, the step count the convergence bound needs, and faithfulness curves.

``python -m bench.explain [--rows 2000] [--texts 40] [--run RUN_DIR]``:

1. trains (or reuses ``--run``) a parent with ``python -m core train``: the bundled MiniLM-L6, all 6 layers,
   full fine-tuning on ``rotten_tomatoes`` (``--rows`` training rows, 1 epoch);
2. takes ``--texts`` texts of its test split cut to 64 tokens (the issue's reference length) and explains
   each with ``core.explain`` at 2 torch threads: the adaptive step count (16, doubled until the
   convergence delta is within 5% of p(text) - p(baseline)), and fixed 8/16/32/64 steps for the delta each gives;
3. measures ERASER comprehensiveness and sufficiency at k = 1, 3, 5 words and 10% of the words, against
   random words (5 draws per text), on the same texts.

Writes bench/results/explain.json and explain.md. Times are medians over the texts, on this machine.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import ENV, RESULTS, ROOT, load_avg

TOKENS = 64


def train_parent(root: Path, rows: int) -> Path:
    config = root / "explain.yaml"
    config.write_text(f"""name: explain-bench
data: {{source: "sample:rotten_tomatoes", max_train_samples: {rows}, max_eval_samples: 400}}
model: {{max_length: 128}}
train: {{epochs: 1, batch_size: 16, learning_rate: 1.0e-4}}
output_dir: {root / 'runs'}
""")
    subprocess.run([sys.executable, "-m", "core", "train", "--config", str(config)], cwd=ROOT, env=ENV, check=True,
                   capture_output=True)
    return next((root / "runs").glob("*explain-bench*"))


def texts_of(run_dir: Path, tokenizer: Any, n: int) -> list[str]:
    """Test texts cut to ``TOKENS`` tokens (whole words; shorter texts are joined to the next)."""
    import pandas as pd

    words: list[str] = []
    out = []
    for text in pd.read_parquet(run_dir / "predictions.parquet")["text"]:
        words += str(text).split()
        while len(tokenizer(" ".join(words))["input_ids"]) >= TOKENS:
            cut = len(words)
            while len(tokenizer(" ".join(words[:cut]))["input_ids"]) > TOKENS:
                cut -= 1
            out.append(" ".join(words[:cut]))
            words = words[cut:]
            if len(out) == n:
                return out
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--texts", type=int, default=40)
    parser.add_argument("--run", help="a completed single-label run to explain (skips training)")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(2)
    from bench.common import quiet

    quiet()
    from core.explain import Explainer, explainer_for_run, faithfulness

    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(args.run) if args.run else train_parent(Path(tmp), args.rows)
        report = json.loads((run_dir / "report.json").read_text())
        explainer = explainer_for_run(run_dir)
        texts = texts_of(run_dir, explainer.predictor.tokenizer, args.texts)
        explainer.explain(texts[0])  # warm-up: captum's import, the first autograd graph
        adaptive, seconds = [], []
        for text in texts:
            t0 = time.perf_counter()
            adaptive.append(explainer.explain(text))
            seconds.append(time.perf_counter() - t0)
        fixed: dict[int, dict[str, float]] = {}
        for steps in (8, 16, 32, 64):
            exact = Explainer(explainer.predictor, steps=steps, max_steps=steps)
            times, relative, converged = [], [], 0
            for text in texts[:15]:
                t0 = time.perf_counter()
                e = exact.explain(text)
                times.append(time.perf_counter() - t0)
                relative.append(abs(e.delta) / max(abs(e.output - e.baseline_output), 1e-9))
                converged += e.converged
            fixed[steps] = {"median_s": statistics.median(times), "median_relative_delta": statistics.median(relative),
                            "converged_share": converged / len(times)}
        faithful = faithfulness(explainer.predictor, adaptive, random_draws=5)
    result = {
        "date": datetime.date.today().isoformat(), "machine": platform.processor() or platform.machine(),
        "cpu_flags_bf16": "avx512_bf16" in Path("/proc/cpuinfo").read_text(), "threads": 2, "load_avg": load_avg(),
        "model": report["model"], "texts": len(texts), "tokens_per_text": TOKENS,
        "test_accuracy": report["test"]["metrics"]["accuracy"],
        "adaptive": {"median_s": statistics.median(seconds), "max_s": max(seconds),
                     "steps": {str(s): sum(e.steps == s for e in adaptive) for s in sorted({e.steps for e in adaptive})},
                     "converged_share": sum(e.converged for e in adaptive) / len(adaptive)},
        "fixed_steps": fixed, "faithfulness": faithful,
    }
    (RESULTS / "explain.json").write_text(json.dumps(result, indent=2))
    (RESULTS / "explain.md").write_text(markdown(result))
    print(markdown(result))


def markdown(r: dict[str, Any]) -> str:
    lines = [f"# Explanations ({r['date']}, {r['machine']}, native bf16: {r['cpu_flags_bf16']}, {r['threads']} threads, "
             f"load {r['load_avg']})", "",
             f"MiniLM-L6 ({r['model'].get('num_layers', 6)} layers), full fine-tune, test accuracy {r['test_accuracy']:.3f}; "
             f"{r['texts']} test texts of {r['tokens_per_text']} tokens. Integrated gradients on the word embeddings "
             "(Captum LayerIntegratedGradients, Gauss-Legendre), baseline [CLS] [PAD]… [SEP].", "",
             "## Time per explanation", "",
             f"Adaptive (16 steps, doubled until abs(delta) ≤ 5% of p(text) − p(baseline)): median "
             f"**{r['adaptive']['median_s']:.2f} s**, max {r['adaptive']['max_s']:.2f} s (target ≤ 2 s); steps used "
             f"{r['adaptive']['steps']}; within the bound: {r['adaptive']['converged_share']:.0%}.", "",
             "| fixed steps | median s | median abs(delta) / abs(p(text) − p(baseline)) | within the bound |",
             "|---:|---:|---:|---:|"]
    for steps, row in r["fixed_steps"].items():
        lines.append(f"| {steps} | {row['median_s']:.2f} | {row['median_relative_delta']:.3f} | {row['converged_share']:.0%} |")
    lines += ["", "## Faithfulness (ERASER)", "",
              "Drop of the explained class's probability when the top-k attributed words are deleted "
              "(comprehensiveness, higher is more faithful) or kept alone (sufficiency, lower is more faithful), "
              "against k random words (5 draws).", "",
              "| k | comprehensiveness | random | sufficiency | random |", "|---|---:|---:|---:|---:|"]
    for k, row in r["faithfulness"]["k"].items():
        lines.append(f"| {k} | {row['comprehensiveness']:.3f} | {row['random_comprehensiveness']:.3f} | "
                     f"{row['sufficiency']:.3f} | {row['random_sufficiency']:.3f} |")
    m = r["faithfulness"]["mean"]
    lines.append(f"| mean | {m['comprehensiveness']:.3f} | {m['random_comprehensiveness']:.3f} | {m['sufficiency']:.3f} | "
                 f"{m['random_sufficiency']:.3f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
