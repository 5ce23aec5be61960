"""DataError, and the helpers that word its messages (rows, counts, sizes)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from core.config import TASKS
from core.data.formats import LINE_FORMATS, format_name


class DataError(ValueError):
    """Bad input. ``str(err)`` is one paragraph: where (file, row, column), what is wrong, the fix.

    ``row`` is the row as the user counts it (1-based; the CSV header is row 1; line numbers for
    JSONL and CoNLL files). ``.file .row .column .fix`` and the bare ``.message`` stay available
    so the UI can highlight the place.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        row: int | None = None,
        column: str | None = None,
        fix: str | None = None,
    ):
        self.message = message
        self.file = None if file is None else str(file)
        self.row = row
        self.column = column
        self.fix = fix
        super().__init__(self._paragraph())

    def _paragraph(self) -> str:
        where = []
        if self.file:
            where.append(self.file)
        if self.row is not None:
            where.append(f"{row_word(self.file)} {self.row}")
        if self.column:
            where.append(f"column {self.column!r}")
        text = f"{', '.join(where)}: {self.message}" if where else self.message
        text = text.rstrip(". ") + "."
        if self.fix:
            text += f" Fix: {self.fix.rstrip('. ')}."
        return " ".join(text.split())

    def at(self, file: str | None) -> DataError:
        """The same error, naming ``file`` when it did not name one yet."""
        if self.file or not file:
            return self
        return DataError(self.message, file=file, row=self.row, column=self.column, fix=self.fix)


def row_word(file: str | None) -> str:
    """'line' for files numbered by line (JSONL, CoNLL), else 'row'."""
    return "line" if file and format_name(Path(file)) in LINE_FORMATS else "row"


def list_rows(rows: list[int] | np.ndarray, limit: int = 10) -> str:
    """'row 4' / 'rows 4, 9 and 12' / 'rows 4, 9, ... and 31 more'."""
    rows = [int(r) for r in rows]
    shown = ", ".join(map(str, rows[:limit]))
    if len(rows) > limit:
        shown += f" and {len(rows) - limit} more"
    return f"row {shown}" if len(rows) == 1 else f"rows {shown}"


def plural(n: int, word: str) -> str:
    """'1 row' / '1,234 rows'."""
    return f"{n:,} {word}" + ("" if n == 1 else "s")


def human_bytes(n: float) -> str:
    """'512 B' / '3.4 MB'."""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"  # pragma: no cover


def check_task(task: str) -> None:
    """Raises DataError for a task name that is not one of core.config.TASKS."""
    if task not in TASKS:
        raise DataError(f"unknown task {task!r}", fix=f"use one of: {', '.join(TASKS)}")
