"""Compression: every method's cost in quality, size and speed, against the fp32 Predictor and ``pipeline()``.

``python -m bench.compress [--rows 4000] [--epochs 1] [--repeats 2]``:

1. trains a parent with ``python -m core train`` (bundled MiniLM-L6, all 6 layers, full fine-tuning) on
   ``rotten_tomatoes`` and one on ``wnut16`` (NER);
2. makes every variant with ``python -m core compress --methods ...`` (int8, onnx, onnx-int8, a 3-layer
   distilled student, the top 3 layers pruned), each evaluated on the parent's test split;
3. measures each model in a fresh process (``--measure``), variants interleaved and their order reversed
   on every repeat: p50/p95 latency of one text (tokenization included) and texts/s in batches of 32, at
   1 and 2 torch threads, over the test split's texts; ``transformers.pipeline`` on the parent's folder is
   measured the same way (text classification only).

Writes bench/results/compress.json and compress.md. Ratios are taken within one repeat (same load),
then the median over repeats is reported.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import ENV, RESULTS, ROOT, load_avg, run_worker

METHODS = ("int8", "onnx", "onnx-int8", "distill", "prune-layers")
SINGLE = 100  # one-text calls per measurement, after a warm-up


def measure(run_dir: str, threads: int, pipeline: bool) -> dict[str, Any]:
    """In this process: p50/p95 ms for one text and texts/s in batches of 32 for the run's model."""
    import numpy as np
    import torch

    torch.set_num_threads(threads)
    from bench.common import quiet

    quiet()
    from core.data import load_bundle
    from core.evaluate import run_predictor
    from core.recipe import load_run_config

    config = load_run_config(Path(run_dir))
    frame = load_bundle(config.data, config.task).test
    token = config.task == "token"
    texts = [" ".join(t) for t in frame["tokens"]] if token else frame["text"].astype(str).tolist()
    if pipeline:
        from transformers import pipeline as make_pipeline

        pipe = make_pipeline("text-classification", model=str(Path(run_dir) / "model"), device="cpu")
        one, batch = (lambda t: pipe(t)), (lambda t: pipe(t, batch_size=32))
    else:
        predictor = run_predictor(run_dir)
        call = (lambda t: predictor.predict_tokens([x.split() for x in t])) if token else predictor.predict_texts
        one, batch = call, call
    for text in texts[:8]:
        one([text])
    latencies = []
    for text in texts[:SINGLE]:
        t0 = time.perf_counter()
        one([text])
        latencies.append(time.perf_counter() - t0)
    batch(texts[:64])
    t0 = time.perf_counter()
    for start in range(0, len(texts), 32):
        batch(texts[start:start + 32])
    seconds = time.perf_counter() - t0
    return {"p50_ms": float(np.percentile(latencies, 50) * 1e3), "p95_ms": float(np.percentile(latencies, 95) * 1e3),
            "batch32_texts_per_s": len(texts) / seconds, "texts": len(texts), "threads": threads}


def cli(*args: str, root: Path) -> str:
    proc = subprocess.run([sys.executable, "-m", "core", "--root", str(root), *args], cwd=ROOT, env=ENV,
                          capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"core {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    return proc.stdout


def train_parent(root: Path, task: str, source: str, rows: int, epochs: float) -> Path:
    config = {"name": f"parent-{source.split(':')[-1]}", "task": task,
              "data": {"source": source, "max_train_samples": rows, "seed": 42},
              "model": {"name": "bundled:minilm-l6", "max_length": 128},
              "train": {"epochs": epochs, "batch_size": 16, "learning_rate": 1e-4 if task != "token" else 2e-4,
                        **({"metric_for_best": "f1"} if task == "token" else {})}}
    root.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix="bench-config-")) / f"{config['name']}.json"
    path.write_text(json.dumps(config))
    t0 = time.monotonic()
    cli("train", "--config", str(path), root=root)
    print(f"trained {config['name']} in {time.monotonic() - t0:.0f} s", file=sys.stderr)
    from core import runs

    return next(Path(r.path) for r in runs.list_runs(root) if r.name == config["name"])


def variants_of(root: Path, parent: Path, methods: tuple[str, ...], epochs: float) -> dict[str, Path]:
    from core import runs

    t0 = time.monotonic()
    for method in methods:  # one CLI call each: a method's options go with it
        options = {"distill": ["--set", f"epochs={epochs}"], "prune-layers": ["--set", "drop=top:3", "--set", f"epochs={epochs}"]}
        cli("compress", str(parent), "--method", method, *options.get(method, []), root=root)
        print(f"  {method} of {parent.name}: {time.monotonic() - t0:.0f} s so far", file=sys.stderr)
    return {r.derived_method: Path(r.path) for r in runs.list_runs(root) if r.parents == (parent.name,)}


def table_for(parent: Path, made: dict[str, Path], repeats: int, pipeline: bool) -> dict[str, Any]:
    """Quality and size from the reports; speed measured in fresh processes, interleaved, order reversed each repeat."""
    from core import runs

    models = {"fp32 Predictor": parent, **{m: made[m] for m in METHODS if m in made}}
    order = list(models) + (["pipeline()"] if pipeline else [])
    speed: dict[str, dict[int, list[dict[str, Any]]]] = {name: {1: [], 2: []} for name in order}
    for rep in range(repeats):
        for threads in (1, 2):
            for name in (order if rep % 2 == 0 else order[::-1]):
                run = models.get(name, parent)
                speed[name][threads].append(run_worker("bench.compress", "--measure", str(run), "--threads", str(threads),
                                                       *(["--pipeline"] if name == "pipeline()" else [])))
    parent_report = runs.read_json(parent / runs.REPORT) or {}
    split = parent_report.get("eval_split", "test")
    rows = []
    for name in order:
        run = models.get(name, parent)
        report = runs.read_json(run / runs.REPORT) or {}
        metrics = (report.get(split) or {}).get("metrics") or {}
        derived = report.get("derived") or {}
        row = {"variant": name, "run_id": run.name, "headline": (report.get(split) or {}).get("headline"),
               "accuracy": metrics.get("accuracy"), "f1": metrics.get("f1") or metrics.get("f1_macro"),
               "weights_mb": derived.get("weights_mb") or derived.get("parent_weights_mb")
               or _weights_mb(parent), "layers": (report.get("model") or {}).get("layers")}
        for threads in (1, 2):
            runs_ = speed[name][threads]
            for key in ("p50_ms", "p95_ms", "batch32_texts_per_s"):
                row[f"{key}@{threads}"] = _median([r[key] for r in runs_])
            base = speed["fp32 Predictor"][threads]
            row[f"x_predictor@{threads}"] = _median([r["batch32_texts_per_s"] / b["batch32_texts_per_s"]
                                                     for r, b in zip(runs_, base, strict=True)])
            if pipeline:
                pipe = speed["pipeline()"][threads]
                row[f"x_pipeline@{threads}"] = _median([r["batch32_texts_per_s"] / b["batch32_texts_per_s"]
                                                        for r, b in zip(runs_, pipe, strict=True)])
        rows.append(row)
    base = rows[0]
    for row in rows:
        for key in ("accuracy", "f1"):
            row[f"{key}_change"] = row[key] - base[key] if row.get(key) is not None and base.get(key) is not None else None
    return {"parent": parent.name, "split": split, "rows": rows}


def _weights_mb(run: Path) -> float:
    from core import compress
    from core.evaluate import run_predictor

    return compress.serialized_mb(run_predictor(run).model)


def _median(values: list[float]) -> float | None:
    import statistics

    return statistics.median(values) if values else None


def markdown(result: dict[str, Any]) -> str:
    lines = [f"Compression benchmark of {result['date']} on {result['cpu']} ({result['cores']} cores, torch "
             f"{result['torch']}); load {result['load_start']} at the start, {result['load_end']} at the end; "
             f"{result['minutes']:.1f} min in all. Parents: bundled MiniLM-L6 (6 layers), full fine-tuning, "
             f"{result['rows']} training rows, {result['epochs']} epoch(s) ({result.get('ner_epochs')} for NER); students "
             "(distill: every other layer kept, 3 of 6; "
             f"prune-layers: the top 3 dropped) trained {result['student_epochs']} epoch(s) on the same rows. "
             "Speed: a fresh process per model, models interleaved and their order reversed every repeat, "
             f"{result['repeats']} repeats, medians; one text = p50/p95 of {SINGLE} single-text calls, tokenization included; "
             "batch = texts/s over the test split in batches of 32. Ratios are taken within a repeat (same load).", ""]
    for task, table in result["tables"].items():
        has_pipe = any(r.get("x_pipeline@1") for r in table["rows"])
        lines += [f"### {task}: parent `{table['parent']}`, {table['split']} split", "",
                  "| variant | layers | accuracy | change | F1 | change | weights MB | p50/p95 ms (1 thread) | p50/p95 ms (2) "
                  "| texts/s (1) | texts/s (2) | x fp32 Predictor (1 / 2) |" + (" x pipeline() (1 / 2) |" if has_pipe else ""),
                  "|---|---|---|---|---|---|---|---|---|---|---|---|" + ("---|" if has_pipe else "")]
        for r in table["rows"]:
            def f(v: Any, fmt: str) -> str:
                return format(v, fmt) if isinstance(v, (int, float)) else "—"

            cells = [r["variant"], f(r.get("layers"), "d"), f(r.get("accuracy"), ".4f"), f(r.get("accuracy_change"), "+.4f"),
                     f(r.get("f1"), ".4f"), f(r.get("f1_change"), "+.4f"), f(r.get("weights_mb"), ".1f"),
                     f"{f(r.get('p50_ms@1'), '.1f')} / {f(r.get('p95_ms@1'), '.1f')}",
                     f"{f(r.get('p50_ms@2'), '.1f')} / {f(r.get('p95_ms@2'), '.1f')}",
                     f(r.get("batch32_texts_per_s@1"), ".0f"), f(r.get("batch32_texts_per_s@2"), ".0f"),
                     f"{f(r.get('x_predictor@1'), '.2f')}x / {f(r.get('x_predictor@2'), '.2f')}x"]
            if has_pipe:
                cells.append(f"{f(r.get('x_pipeline@1'), '.2f')}x / {f(r.get('x_pipeline@2'), '.2f')}x")
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=2, help=argparse.SUPPRESS)
    parser.add_argument("--pipeline", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--rows", type=int, default=4000, help="training rows of each parent")
    parser.add_argument("--epochs", type=float, default=1.0, help="epochs of each parent")
    parser.add_argument("--student-epochs", type=float, default=2.0, help="epochs of each student (distill, prune-layers)")
    parser.add_argument("--ner-epochs", type=float, default=4.0, help="epochs of the NER parent (WNUT-16 needs more than one)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--skip-ner", action="store_true")
    parser.add_argument("--root", help="keep the runs here (default: a temporary folder)")
    args = parser.parse_args()
    if args.measure:
        print("RESULT " + json.dumps(measure(args.measure, args.threads, args.pipeline)))
        return
    import torch

    started, load_start = time.monotonic(), load_avg()
    root = Path(args.root or tempfile.mkdtemp(prefix="bench-compress-"))
    tables = {}
    parent = train_parent(root, "single_label", "sample:rotten_tomatoes", args.rows, args.epochs)
    tables["rotten_tomatoes"] = table_for(parent, variants_of(root, parent, METHODS, args.student_epochs), args.repeats, pipeline=True)
    if not args.skip_ner:
        ner = train_parent(root, "token", "sample:wnut16", args.rows, args.ner_epochs)
        tables["wnut16"] = table_for(ner, variants_of(root, ner, METHODS, args.student_epochs), args.repeats, pipeline=False)
    result = {"date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"), "cpu": _cpu(),
              "cores": __import__("os").cpu_count(), "torch": torch.__version__, "load_start": load_start,
              "load_end": load_avg(), "minutes": (time.monotonic() - started) / 60, "rows": args.rows,
              "epochs": args.epochs, "student_epochs": args.student_epochs, "ner_epochs": args.ner_epochs,
              "repeats": args.repeats, "root": str(root), "tables": tables}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "compress.json").write_text(json.dumps(result, indent=1))
    (RESULTS / "compress.md").write_text(markdown(result) + "\n")
    print(markdown(result))


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


if __name__ == "__main__":
    main()
