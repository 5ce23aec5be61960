"""The int8 backend: torch.ao's dynamic quantization (what ``core.compress.quantize_int8`` calls, per channel) vs
torchao's ``Int8DynamicActivationInt8WeightConfig``, both eager (no ``torch.compile``), on one saved run.

torchao is not one of Tuneboard's requirements; install it beside them for this measurement only:
``pip install --no-deps torchao==0.18.0``, then ``python -m bench.int8_backends RUN_DIR [THREADS]``.
Accuracy on the run's test split and batch-32 texts/s (3 interleaved passes, median); printed as JSON.
Results: bench/results/int8-backends.md.
"""

import json
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch

from core.compress import quantize_int8
from core.data import load_bundle
from core.evaluate import _gold_and_scores, run_predictor
from core.metrics import build_report
from core.recipe import load_run_config


def main() -> None:
    warnings.simplefilter("ignore")
    import torchao
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_

    run = Path(sys.argv[1])
    torch.set_num_threads(int(sys.argv[2]) if len(sys.argv) > 2 else 2)
    cfg = load_run_config(run)
    frame = load_bundle(cfg.data, cfg.task).test
    texts = frame["text"].astype(str).tolist()
    preds = {"fp32": run_predictor(run), "torch.ao int8": run_predictor(run), "torchao int8": run_predictor(run)}
    preds["torch.ao int8"].model = quantize_int8(preds["torch.ao int8"].model)
    m = preds["torchao int8"].model
    quantize_(m, Int8DynamicActivationInt8WeightConfig())
    rates = {k: [] for k in preds}
    for rep in range(3):
        for name, p in (preds.items() if rep % 2 == 0 else reversed(list(preds.items()))):
            p.logits(texts[:64])
            t = time.perf_counter()
            for i in range(0, len(texts), 32):
                p.logits(texts[i:i + 32])
            rates[name].append(len(texts) / (time.perf_counter() - t))
    out = {"torchao": torchao.__version__, "torch": torch.__version__, "threads": torch.get_num_threads()}
    for name, p in preds.items():
        gold, scores = _gold_and_scores(p, frame, cfg.task)
        out[name] = {"accuracy": build_report(cfg.task, tuple(p.names), gold, scores)["metrics"]["accuracy"],
                     "texts_per_s": statistics.median(rates[name])}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
