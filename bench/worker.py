"""Run one configuration in this (fresh) process and print its result as one JSON line: ``python -m bench.worker '<spec json>'``.

A process per configuration keeps peak RSS honest and stops one system's warm caches or allocator state
from helping the next.
"""

from __future__ import annotations

import json
import resource
import sys
import time

STARTED = time.monotonic()


def written_bytes() -> int | None:
    """Bytes this process sent to storage (the kernel's count: files later deleted, checkpoints, count too)."""
    try:
        with open("/proc/self/io") as io:
            for line in io:
                if line.startswith("write_bytes:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def main() -> None:
    from bench.common import Spec, quiet

    quiet()
    raw = json.loads(sys.argv[1])
    raw["levers"] = tuple(tuple(x) for x in raw.get("levers", ()))
    spec = Spec(**raw)
    if spec.system == "tuneboard":
        from bench.tb_runner import run
    else:
        from bench.hf_runner import run
    result = run(spec)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    result["wall_s"] = time.monotonic() - STARTED
    result["bytes_written"] = written_bytes()
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
