"""Named crash points, for the fault tests and the kill -9 soak (bench/soak.py).

``TUNEBOARD_CRASH_AT=checkpoint_swap:2`` makes this process SIGKILL itself the 2nd time it passes the
point named ``checkpoint_swap``: a kill at an exact moment (between two renames, halfway through
the final save) that a timer from outside would hit only by luck. Unset, as everywhere but those
tests, a point costs one comparison. The points: ``step`` (after an optimizer step), ``eval``
(after the validation predictions), ``swap`` (between the two renames of runs.swap_in: a
checkpoint or the final model), ``final_save`` (the model's weights written, its tokenizer not yet).

``TUNEBOARD_PACE_STEP_S=0.05`` makes the loop sleep that long after every optimizer step (:func:`pace`):
the browser walk refreshes, then cancels a run mid-way, and on a fast CPU its 300 steps would otherwise
end before the click. Unset, it costs one comparison per step.
"""

from __future__ import annotations

import os
import signal
import time

ENV = "TUNEBOARD_CRASH_AT"
_target = os.environ.get(ENV, "")
_name, _, _nth = _target.partition(":")
_passed = 0


def point(name: str) -> None:
    global _passed
    if not _target or name != _name:
        return
    _passed += 1
    if _passed == int(_nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)


_pace_s = float(os.environ.get("TUNEBOARD_PACE_STEP_S") or 0)


def pace() -> None:
    if _pace_s:
        time.sleep(_pace_s)
