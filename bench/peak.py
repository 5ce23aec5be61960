"""The machine's dense matmul peak: ``torch.mm`` at the shapes a MiniLM layer multiplies, fp32 and bf16."""

from __future__ import annotations

import time
from typing import Any

# (tokens, in, out): a batch of 16 x 32 tokens through QKV/O (384x384) and the FFN (384x1536, 1536x384).
SHAPES = [(512, 384, 384), (512, 384, 1536), (512, 1536, 384), (2048, 384, 1536)]


def matmul_peak(seconds_per_shape: float = 1.0) -> dict[str, Any]:
    """Best GFLOP/s over the shapes, per dtype; each shape timed for about ``seconds_per_shape`` after warm-up."""
    import torch

    out: dict[str, Any] = {"threads": torch.get_num_threads(), "shapes": {}}
    for dtype in (torch.float32, torch.bfloat16):
        name = str(dtype).removeprefix("torch.").replace("bfloat16", "bf16").replace("float32", "fp32")
        best = 0.0
        for m, k, n in SHAPES:
            a, b = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
            for _ in range(5):
                torch.mm(a, b)
            reps, start = 0, time.perf_counter()
            while time.perf_counter() - start < seconds_per_shape:
                torch.mm(a, b)
                reps += 1
            gflops = 2 * m * k * n * reps / (time.perf_counter() - start) / 1e9
            out["shapes"][f"{name} {m}x{k}x{n}"] = round(gflops, 1)
            best = max(best, gflops)
        out[name] = round(best, 1)
    return out


if __name__ == "__main__":
    import json

    print("RESULT " + json.dumps(matmul_peak()))
