"""Named crash points, for the fault tests and the kill -9 soak (bench/soak.py).

``TUNEBOARD_CRASH_AT=checkpoint_swap:2`` makes this process SIGKILL itself the 2nd time it passes the
point named ``checkpoint_swap``: a kill at an exact moment (between two renames, halfway through
the final save) that a timer from outside would hit only by luck. Unset, as everywhere but those
tests, a point costs one comparison. The points: ``step`` (after an optimizer step), ``eval``
(after the validation predictions), ``swap`` (between the two renames of runs.swap_in: a
checkpoint or the final model), ``final_save`` (the model's weights written, its tokenizer not yet).
"""

from __future__ import annotations

import os
import signal

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
