"""The machine under the loop: numeric precision, autocast, peak memory, the CPU allocator, RNG state.

Everything here is about the device and the process, not about training: the loop (core.loop),
inference (core.inference), the recipe and the benchmarks call it.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import random
import resource
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch


def process_rank() -> tuple[int, int]:
    """(this process's rank, the number of processes) under ``torchrun`` or ``accelerate launch``; (0, 1) alone."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def shared_value(make: Any) -> Any:
    """``make()`` computed by the main process and handed to the others (e.g. the run directory it creates)."""
    rank, world = process_rank()
    if world == 1:
        return make()
    import torch.distributed as dist
    from accelerate import PartialState

    PartialState(cpu=_cpu_processes())  # joins the process group: gloo on CPUs, NCCL on GPUs
    box = [make() if rank == 0 else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _cpu_processes() -> bool:
    # accelerate reads several CPU processes as distributed only when told it runs on CPUs (else: one process each)
    return process_rank()[1] > 1 and not torch.cuda.is_available()


def make_accelerator(**options: Any) -> Any:
    """The run's Accelerator: one process, or this process's place among torchrun's (gloo on CPUs, NCCL on GPUs).

    The schedule steps once per optimizer step: core.schedule counts steps of the global batch already,
    and accelerate would otherwise step it once per process (twice as fast on two). ``options``: a
    tracker's (core.trackers.accelerator_options).
    """
    from accelerate import Accelerator

    return Accelerator(cpu=_cpu_processes(), step_scheduler_with_optimizer=False, **options)


def resolve_precision(precision: str, task: str | None = None) -> str:
    """Map the config's precision to 'no' (fp32) or 'bf16'.

    ``auto`` picks bf16 where the hardware has native bf16, except for regression: a bf16 output
    carries about three significant digits, too coarse for predicted values (classification only
    needs the largest logit, and the loss is computed in fp32 either way).
    """
    if precision == "bf16":
        return "bf16"
    if precision == "auto":
        if task == "regression":
            return "no"
        if torch.cuda.is_available():
            return "bf16" if torch.cuda.is_bf16_supported() else "no"
        return "bf16" if cpu_has_native_bf16() else "no"
    return "no"


def cpu_has_native_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def autocast(precision: str, device: torch.device, task: str | None = None) -> contextlib.AbstractContextManager:
    """bf16 autocast when ``precision`` resolves to bf16 for ``task``, else nothing (weights and optimizer stay fp32 either way).

    Decided per run here rather than by ``Accelerator(mixed_precision=...)``, whose state is global to
    the process: a second run in the same process with another precision would be refused.
    """
    if resolve_precision(precision, task) == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def reset_peak_memory(device: torch.device) -> None:
    """Start a new peak: several runs in one process (a comparison) would otherwise all report the largest so far."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return
    with contextlib.suppress(OSError):  # Linux: "5" resets the process's peak resident set size (VmHWM) to its current size
        Path("/proc/self/clear_refs").write_text("5")


def peak_memory_mb(device: torch.device) -> float:
    """Peak memory since the last reset_peak_memory: allocated on CUDA, resident set size on the CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    except (OSError, ValueError, IndexError):
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB; never reset


def tune_cpu_allocator() -> None:
    """Keep freed activation buffers in the heap (glibc) instead of returning them to the OS.

    Each step allocates and frees the same large activation and gradient buffers. By default glibc
    serves large blocks with mmap and unmaps them on free, so every step page-faults (and the kernel
    zero-fills) all of them again. Raising the mmap and trim thresholds makes freed blocks reusable.
    Process-wide and only for the training process; a no-op outside Linux/glibc.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    m_trim_threshold, m_mmap_threshold = -1, -3  # from <malloc.h>
    libc.mallopt(m_mmap_threshold, 1 << 30)
    libc.mallopt(m_trim_threshold, 1 << 30)


def save_rng(path: Path) -> None:
    """Dropout's random state, so a resumed run continues exactly as an uninterrupted one would.

    accelerate saves these too, but its loader reads them with ``weights_only=True`` under torch 2.6+
    and silently skips the numpy state, so resumed runs drifted; we keep our own copy.
    """
    states = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    torch.save(states, path)


def restore_rng(path: Path) -> None:
    """Put back the state :func:`save_rng` wrote; nothing if ``path`` doesn't exist."""
    if not path.exists():
        return
    states = torch.load(path, weights_only=False)  # our own file, written by save_rng
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
