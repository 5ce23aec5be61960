"""The event stream of a run: a JSONL writer that flushes each line, and a reader that tails it.

Schema (DESIGN.md): every event has ``type`` and ``time`` (seconds since the run's start);
``start``, ``step``, ``eval``, ``end`` carry the fields documented there, ``log`` carries a
``message``. Fields may be added; none may change meaning.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

EVENT_TYPES = ("start", "step", "eval", "end", "log")

EventSink = Callable[[dict[str, Any]], None]


def _clean(value: Any) -> Any:
    """JSON has no NaN/Infinity: write them as null so every reader can parse the line."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


class EventWriter:
    """Append events to ``events.jsonl``; each line is flushed so a reader in another process sees it."""

    def __init__(self, path: str | Path, *, time_offset: float = 0.0, echo: EventSink | None = None):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("a", encoding="utf-8")
        # A resumed run continues the clock where the previous attempt stopped.
        self._t0 = time.monotonic() - time_offset
        self._echo = echo

    def elapsed(self) -> float:
        return time.monotonic() - self._t0

    def __call__(self, event: dict[str, Any]) -> None:
        if event.get("type") not in EVENT_TYPES:
            raise ValueError(f"unknown event type {event.get('type')!r}")
        record = {"type": event["type"], "time": round(self.elapsed(), 3)}
        record.update({k: v for k, v in event.items() if k not in ("type", "time")})
        self._file.write(json.dumps(_clean(record), allow_nan=False) + "\n")
        self._file.flush()
        if self._echo is not None:
            self._echo(record)

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> EventWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_events(path: str | Path, offset: int = 0) -> tuple[list[dict[str, Any]], int]:
    """Read complete lines from byte ``offset``; return the events and the offset to continue from.

    A line still being written (no trailing newline) is left for the next call, and a corrupt
    line is skipped rather than breaking the page that tails the file.
    """
    p = Path(path)
    if not p.exists():
        return [], offset
    with p.open("rb") as f:
        f.seek(offset)
        data = f.read()
    end = data.rfind(b"\n")
    if end < 0:
        return [], offset
    events = []
    for line in data[: end + 1].splitlines():
        try:
            events.append(json.loads(line))
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue
    return events, offset + end + 1


def iter_events(path: str | Path, types: tuple[str, ...] | None = None) -> Iterator[dict[str, Any]]:
    events, _ = read_events(path)
    for event in events:
        if types is None or event.get("type") in types:
            yield event
