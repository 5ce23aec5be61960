"""What every benchmark configuration shares: the data, the hyper-parameters, the step budget, FLOP counts."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
# Every benchmark subprocess: offline, quiet, tokenizers without their own thread pool.
ENV = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1", "PYTHONWARNINGS": "ignore"}

MODEL = "bundled:minilm-l6"
SOURCE = "sample:rotten_tomatoes"
SEED = 42
BATCH = 16
EVAL_BATCH = 32  # tuneboard evaluates at 2 x batch; the tuned Trainer variants are given the same
EVAL_ROWS = 1000
MAX_LENGTH = 128
WEIGHT_DECAY = 0.01
WARMUP_RATIO = 0.06
MAX_GRAD_NORM = 1.0
FREEZE_LAYERS = 4
LORA = {"r": 8, "alpha": 16, "dropout": 0.1, "targets": ["query", "value"]}
LEARNING_RATE = {"full": 1e-4, "freeze": 1e-4, "lora": 1e-3}  # high enough to move off the majority class in 100 steps; LoRA 10x
STEPS = 100  # optimizer steps per configuration (about; a 3-epoch run does 3 x ceil(100 / 3))


def run_worker(module: str, *args: str, timeout: float = 1800) -> dict[str, Any]:
    """Run ``python -m module args`` in a fresh process and return the JSON of its last ``RESULT`` line."""
    proc = subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=timeout)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode or not lines:
        raise RuntimeError(f"{module} {' '.join(args)[:200]} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def load_avg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


@dataclass(frozen=True)
class Spec:
    """One configuration run by one system (in its own process)."""

    system: str  # hf_tutorial | hf_tuned | hf_best | tuneboard
    strategy: str  # full | freeze | lora
    epochs: int
    steps: int = STEPS
    levers: tuple[tuple[str, Any], ...] = ()  # tuneboard lever experiments: (name, value) switched off/changed
    out_dir: str = ""
    seed: int = SEED  # training seed (head initialisation, dropout, batch order); the data subset always uses SEED

    @property
    def train_rows(self) -> int:
        """Rows of one pass: ``epochs`` passes of ``steps / epochs`` full batches."""
        return math.ceil(self.steps / self.epochs) * BATCH

    @property
    def lr(self) -> float:
        return LEARNING_RATE[self.strategy]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def data_config() -> Any:
    from core.config import DataConfig

    # No separate test split: both sides evaluate on the same 1,000 validation rows.
    return DataConfig(source=SOURCE, test_split=0.0, validation_split=0.1, max_eval_samples=EVAL_ROWS, seed=SEED)


def load_data(train_rows: int) -> Any:
    """The bundle every system trains on: a seeded, stratified ``train_rows`` subset and 1,000 validation rows."""
    from core.data import load_bundle

    return load_bundle(data_config().__class__(**{**asdict(data_config()), "max_train_samples": train_rows}), "single_label")


def quiet() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import warnings

    warnings.filterwarnings("ignore")


# --- model FLOPs ------------------------------------------------------------------------------------

def layer_params(hidden: int, intermediate: int) -> int:
    """Matmul weights of one encoder layer: Q, K, V, O (hidden^2 each) and the two FFN matrices."""
    return 4 * hidden * hidden + 2 * hidden * intermediate


def train_flops(strategy: str, lengths: list[int], layers: int = 6, hidden: int = 384, intermediate: int = 1536,
                frozen: int = FREEZE_LAYERS) -> float:
    """Model FLOPs of one pass over rows of these (unpadded) lengths, as the uncached computation does them.

    Per token and layer: forward 2 x P (P = layer matmul weights) plus attention 4 x L x hidden
    (scores and weighted sum over a row of length L); backward twice the forward where weights train
    (input and weight gradients), once where only the input gradient flows (LoRA's frozen base), zero
    below the lowest trainable layer (freeze). The pooler and head are ignored (< 1%).
    """
    p = layer_params(hidden, intermediate)
    total = 0.0
    for length in lengths:
        per_layer_fwd = length * (2 * p + 4 * length * hidden)
        if strategy == "full":
            total += layers * 3 * per_layer_fwd
        elif strategy == "freeze":
            total += layers * per_layer_fwd + (layers - frozen) * 2 * per_layer_fwd
        else:  # lora: forward everywhere, input gradients everywhere, weight gradients only for the tiny adapters
            total += layers * 2 * per_layer_fwd
    return total
