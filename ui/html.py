"""Users' texts in markup: highlighted entity spans as escaped HTML, and any text made literal for markdown."""

from __future__ import annotations

import html
import re
from collections.abc import Sequence

from ui.charts import PALETTE
from ui.selection import bio_spans


def entity_colors(types: Sequence[str]) -> dict[str, str]:
    return {t: PALETTE[i % len(PALETTE)] for i, t in enumerate(sorted(types))}


def highlight(tokens: Sequence[str], tags: Sequence[str], colors: dict[str, str], joiner: str = " ") -> str:
    """Tokens joined with each BIO entity wrapped in a coloured pill labelled with its type."""
    spans = {start: (end, kind) for start, end, kind in bio_spans(tokens, tags)}
    parts, i = [], 0
    while i < len(tokens):
        if i in spans:
            end, kind = spans[i]
            color = colors.get(kind, "#64748B")
            words = html.escape(joiner.join(tokens[i:end]))
            parts.append(f'<span style="background:{color}22;border:1px solid {color};border-radius:6px;padding:1px 4px">'
                         f'{words} <b style="color:{color};font-size:0.75em">{html.escape(kind)}</b></span>')
            i = end
        else:
            parts.append(html.escape(tokens[i]))
            i += 1
    return f'<div style="line-height:2">{joiner.join(parts)}</div>'


_MARKDOWN_PUNCTUATION = re.compile(r"([!-/:-@\[-`{-~])")  # every ASCII punctuation mark (CommonMark escapes them all)


def md_literal(text: object) -> str:
    """``text`` for st.markdown, st.caption and the like, shown as written: every punctuation mark that
    markdown (or Streamlit's :emoji:, :color[...] and $math$) would read is backslash-escaped, and line
    breaks become spaces. Labels, file names and column names come from users' files."""
    return _MARKDOWN_PUNCTUATION.sub(r"\\\1", " ".join(str(text).splitlines()))
