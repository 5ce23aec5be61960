"""Tables written for people to open: CSV that a spreadsheet reads as text, never as a formula.

A cell that begins with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is run as a formula
by Excel, LibreOffice and Google Sheets (CSV injection, OWASP). Texts in Tuneboard come from users'
files, so every exported text cell that starts so is prefixed with an apostrophe, which the
spreadsheet hides and which keeps the value as text. Numbers stay numbers: ``-0.5`` is a value, not a
formula, and only strings are touched.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value: Any) -> Any:
    """``value`` with a leading apostrophe if it is a string a spreadsheet would run as a formula."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def safe_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``frame`` whose text cells (and column names) are spreadsheet-safe."""
    out = frame.copy()
    for column in out.columns:
        if out[column].dtype == object or pd.api.types.is_string_dtype(out[column]):
            out[column] = out[column].map(spreadsheet_safe)
    out.columns = [spreadsheet_safe(str(c)) for c in out.columns]
    return out


def to_csv_bytes(frame: pd.DataFrame) -> bytes:
    """UTF-8 CSV (with a BOM, so Excel picks the encoding) of a spreadsheet-safe copy of ``frame``."""
    return safe_frame(frame).to_csv(index=False).encode("utf-8-sig")
