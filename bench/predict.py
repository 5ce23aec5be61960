"""Prediction throughput of a saved run: ``core.inference.Predictor`` vs ``transformers.pipeline`` on the same texts.

``python -m bench.predict <run_dir>``: after a warm-up, alternates Predictor and pipeline() once each
(pipeline with its default batch size 1, then batch_size=32; Predictor in fp32, its default, then bf16 autocast).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path


def main(run_dir: str) -> dict:
    from bench.common import load_data, quiet

    quiet()
    import numpy as np
    from transformers import pipeline

    from core.inference import Predictor
    from core.models import quiet_transformers

    quiet_transformers()
    texts = load_data(16).validation["text"].astype(str).tolist()
    model_dir = Path(run_dir) / "model"
    predictors = {"predictor": Predictor(model_dir), "predictor_bf16": Predictor(model_dir, precision="auto")}
    pipe = pipeline("text-classification", model=str(model_dir), device="cpu")
    for p in predictors.values():
        p.predict_texts(texts[:64])
    pipe(texts[:8])
    runs = {
        "predictor": lambda: predictors["predictor"].predict_texts(texts)["predicted"].tolist(),
        "pipeline": lambda: [r["label"] for r in pipe(texts)],
        "predictor_bf16": lambda: predictors["predictor_bf16"].predict_texts(texts)["predicted"].tolist(),
        "pipeline_batch32": lambda: [r["label"] for r in pipe(texts, batch_size=32)],
    }
    seconds, labels = {}, {}
    for name, fn in runs.items():
        t = time.perf_counter()
        labels[name] = fn()
        seconds[name] = time.perf_counter() - t
    agree = lambda a, b: float(np.mean([x == y for x, y in zip(labels[a], labels[b], strict=True)]))  # noqa: E731
    return {
        "texts": len(texts), "seconds": seconds, "texts_per_s": {k: len(texts) / v for k, v in seconds.items()},
        "ratio_vs_pipeline": seconds["pipeline"] / seconds["predictor"],
        "ratio_vs_pipeline_batch32": seconds["pipeline_batch32"] / seconds["predictor"],
        "bf16_ratio_vs_pipeline": seconds["pipeline"] / seconds["predictor_bf16"],
        "agreement": agree("predictor", "pipeline"), "bf16_agreement": agree("predictor_bf16", "pipeline"),
        "predictor_batch_size": predictors["predictor"].batch_size,
    }


if __name__ == "__main__":
    print("RESULT " + json.dumps(main(sys.argv[1])))
