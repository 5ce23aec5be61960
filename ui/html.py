"""Users' texts in markup: highlighted entity spans as escaped HTML, and any text made literal for markdown."""

from __future__ import annotations

import html
import re
from collections.abc import Sequence

from core.data.tags import bio_spans
from ui.charts import PALETTE


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


# Blue for "raised the target's probability", orange for "lowered it": a diverging pair that reads apart
# under every common colour-vision deficiency (ColorBrewer's PuOr/RdBu ends), never red against green.
SUPPORTS, OPPOSES = (33, 102, 172), (230, 97, 1)


def attribution_html(words: Sequence[str], scores: Sequence[float], *, scale: float | None = None,
                     span: tuple[int, int] | None = None) -> str:
    """The words, each on a background whose colour is its score's sign and whose strength its size.

    Escaped text only (the words are users'); ``scale``: the score that gets full colour (default the
    largest |score|); ``span``: words to underline (an NER entity being explained). Each word's score is
    in its tooltip.
    """
    top = scale or max((abs(s) for s in scores), default=0.0) or 1.0
    parts = []
    for i, (word, score) in enumerate(zip(words, scores, strict=True)):
        r, g, b = SUPPORTS if score >= 0 else OPPOSES
        alpha = min(1.0, abs(score) / top) * 0.85
        underline = ";border-bottom:2px solid #111827" if span and span[0] <= i < span[1] else ""
        parts.append(f'<span title="{score:+.4f}" style="background:rgba({r},{g},{b},{alpha:.2f});border-radius:4px;'
                     f'padding:1px 2px{underline}">{html.escape(str(word))}</span>')
    return f'<div style="line-height:2;white-space:normal">{" ".join(parts)}</div>'


def attribution_legend(target: str) -> str:
    """The key to :func:`attribution_html`'s colours, naming the explained label (escaped)."""
    def swatch(rgb: tuple[int, int, int]) -> str:
        r, g, b = rgb
        return f'<span style="display:inline-block;width:12px;height:12px;border-radius:3px;background:rgba({r},{g},{b},0.85)"></span>'

    label = html.escape(str(target))
    return (f'<div style="font-size:0.8em;color:#475569">{swatch(SUPPORTS)} raised the probability of <b>{label}</b> '
            f'&nbsp; {swatch(OPPOSES)} lowered it &nbsp; (stronger colour: a larger share; hover a word for its score)</div>')
