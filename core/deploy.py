"""What the Deploy page and ``core compress`` show: every variant of a run, its quality, size and speed.

Speed is measured when a derived run is made (core.derived.lineage_block), by :func:`measure_speed`, with
the parent measured in the same process and interleaved with it, so a variant's speed-up is a ratio taken
under the same load, not two numbers from two moments. Its numbers: p50/p95 latency of one text (its
tokenization included: what a caller of ``/predict`` waits), and texts per second in batches of 32, at
this process's torch threads. :func:`variants` reads only report.json files: the page loads no model.
"""

from __future__ import annotations

import io
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from core import runs

SINGLE_TEXTS = 48  # one-text calls per model, after WARMUP
BATCH = 32
BATCHES = 4  # batches of BATCH texts per model
WARMUP = 4


def measure_speed(predictors: dict[str, Any], texts: list[str], *, single: int = SINGLE_TEXTS,
                  batches: int = BATCHES) -> dict[str, dict[str, Any]]:
    """p50/p95 ms for one text and texts/s in batches of 32, for each Predictor, interleaved call by call."""
    import torch

    if not texts:
        return {}
    pool = (texts * (1 + (single + batches * BATCH) // len(texts)))[: single + batches * BATCH]
    calls = {name: _caller(p) for name, p in predictors.items()}
    for call in calls.values():
        for text in pool[:WARMUP]:
            call([text])
    latency: dict[str, list[float]] = {name: [] for name in calls}
    for text in pool[:single]:
        for name, call in calls.items():
            t0 = time.perf_counter()
            call([text])
            latency[name].append(time.perf_counter() - t0)
    rate: dict[str, list[float]] = {name: [] for name in calls}
    for b in range(batches):
        chunk = pool[single + b * BATCH: single + (b + 1) * BATCH]
        for name, call in calls.items():
            t0 = time.perf_counter()
            call(chunk)
            rate[name].append(len(chunk) / (time.perf_counter() - t0))
    return {name: {"p50_ms": float(np.percentile(latency[name], 50) * 1e3), "p95_ms": float(np.percentile(latency[name], 95) * 1e3),
                   "batch32_texts_per_s": float(np.median(rate[name])), "threads": torch.get_num_threads(),
                   "texts": len(latency[name])} for name in calls}


def _caller(predictor: Any) -> Any:
    if predictor.task == "token":
        return lambda texts: predictor.predict_tokens([t.split() for t in texts])
    return lambda texts: predictor.logits(texts)


def descendants(root: str | Path, run_id: str) -> list[runs.RunSummary]:
    """The runs made from ``run_id``, and those made from them, in the index's order."""
    rows = runs.list_runs(root)
    found, frontier = [], {run_id}
    while frontier:
        children = [r for r in rows if set(r.parents) & frontier and r not in found]
        found.extend(children)
        frontier = {r.run_id for r in children}
    return found


def variants(root: str | Path, run_id: str) -> list[dict[str, Any]]:
    """One row per model: the run itself, then every variant made from it (derived runs, transitively).

    Each row: run id, name, method (``distill → int8`` for a chain), state, the headline metric and its
    change to the run's, weights MB, p50/p95 ms, batch-32 texts/s and the speed-up over the parent as
    measured beside it, and whether it is on the frontier (no other completed row is both at least as
    good and at least as small and fast, and better in one).
    """
    root = Path(root)
    base = runs.read_json(root / run_id / runs.REPORT) or {}
    base_headline = (base.get(base.get("eval_split", "test")) or {}).get("headline") or {}
    rows: list[dict[str, Any]] = [{"run_id": run_id, "name": run_id, "method": "original", "state": "completed",
                                   "metric": base_headline.get("name"), "value": base_headline.get("value"),
                                   "change": 0.0 if base_headline.get("value") is not None else None}]
    chains = {run_id: []}
    for row in descendants(root, run_id):
        chains[row.run_id] = [*chains.get(row.parents[0], []), row.derived_method or "?"]
        report = runs.read_json(root / row.run_id / runs.REPORT) or {}
        block = report.get("derived") or {}
        mine = block.get("headline") or {}
        value = mine.get("value")
        speed, parent_speed = block.get("speed") or {}, block.get("parent_speed") or {}
        rows.append({"run_id": row.run_id, "name": row.name, "method": " → ".join(chains[row.run_id]), "state": row.state,
                     "metric": mine.get("name") or base_headline.get("name"), "value": value,
                     "change": value - base_headline["value"] if value is not None and base_headline.get("value") is not None else None,
                     "weights_mb": block.get("weights_mb"), "p50_ms": speed.get("p50_ms"), "p95_ms": speed.get("p95_ms"),
                     "batch32_texts_per_s": speed.get("batch32_texts_per_s"),
                     "speedup": _ratio(speed.get("batch32_texts_per_s"), parent_speed.get("batch32_texts_per_s")),
                     "threads": speed.get("threads"),
                     "error": row.error if row.state == "failed" else None})
        if len(chains[row.run_id]) == 1 and block.get("parent_speed"):  # the run itself, as measured beside its variant
            rows[0].update({k: rows[0].get(k) or v for k, v in {
                "weights_mb": block.get("parent_weights_mb"), "p50_ms": parent_speed.get("p50_ms"),
                "p95_ms": parent_speed.get("p95_ms"), "batch32_texts_per_s": parent_speed.get("batch32_texts_per_s"),
                "speedup": 1.0}.items()})
    mark_frontier(rows)
    return rows


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a and b else None


def mark_frontier(rows: list[dict[str, Any]]) -> None:
    """Set ``frontier`` on each row: True where no other row is as good in quality, size and latency and better in one."""
    scored = [r for r in rows if r.get("value") is not None and r.get("weights_mb") is not None and r.get("p50_ms") is not None]
    for row in rows:
        row["frontier"] = row in scored and not any(
            other is not row and other["value"] >= row["value"] and other["weights_mb"] <= row["weights_mb"]
            and other["p50_ms"] <= row["p50_ms"]
            and (other["value"] > row["value"] or other["weights_mb"] < row["weights_mb"] or other["p50_ms"] < row["p50_ms"])
            for other in scored)


def model_zip(run_dir: str | Path) -> bytes:
    """The run's ``model/`` folder as a zip (what to ship: an ONNX export's predict.py included)."""
    model_dir = Path(run_dir) / runs.MODEL_DIR
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(model_dir.rglob("*")):
            if path.is_file():
                archive.write(path, f"{Path(run_dir).name}/{path.relative_to(model_dir)}")
    return buffer.getvalue()


def loading_note(model_dir: str | Path) -> str:
    """How a run's saved ``model/`` loads outside Tuneboard, in one sentence (markdown)."""
    from core import compress
    from core.model_format import plain_loadable

    config = runs.read_json(Path(model_dir) / "config.json") or {}
    made = (config.get(compress.MARKER) or {}).get("method")
    if made in ("onnx", "onnx-int8"):
        return ("An ONNX model (`model.onnx`) that runs with onnxruntime and the tokenizer alone: inside the folder, "
                '`pip install onnxruntime tokenizers numpy` then `python predict.py "a text"`.')
    if made == "int8":
        return ("fp32 weights with a marker: Tuneboard quantizes them to int8 when it loads them "
                "(`core.inference.Predictor(folder)`, `python -m core serve`); plain transformers would load them as fp32.")
    if not config or plain_loadable(model_dir):
        return "As `save_pretrained` wrote it: loads with `AutoModelForSequenceClassification.from_pretrained` or `pipeline()`."
    return ("Its prefix or adapters are beyond what plain transformers can load, so it loads with Tuneboard: "
            "`core.inference.Predictor(folder)` (the README.md inside says how).")
