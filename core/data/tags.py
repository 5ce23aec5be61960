"""Entity tags: check them, and bring IOB1, BIOES/IOBES and BILOU files to IOB2 (BIO).

The token task trains on IOB2: every entity starts with ``B-TYPE`` and ``I-TYPE`` continues it.
Files in the other common schemes are converted when they are read, with a note saying so:

- IOB1, the original CoNLL-2003 scheme: an entity starts with ``I-``; ``B-`` only separates two
  adjacent entities of the same type. Recognised by an ``I-TYPE`` that opens an entity (after
  ``O`` or another type) in a file where no ``B-`` opens one. Each opening ``I-`` becomes ``B-``.
- BIOES/IOBES (``S-`` single token, ``E-`` end) and BILOU (``U-`` unit, ``L-`` last), recognised
  by those letters: ``S-``/``U-`` become ``B-``, ``E-``/``L-`` become ``I-``.

The scheme is decided per file, not per sentence. A file that fits none of them — some entities
opened with ``B-`` and others with ``I-``, or a BIOES entity without its end — is refused, naming
the first tag that breaks the file's scheme.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain

from core.data.errors import DataError, row_word

_TAG = re.compile(r"^(O|[BIESUL]-.+)$")
IOB1_NOTE = "tags converted from IOB1 to IOB2 (the CoNLL-2003 scheme)"


@dataclass(frozen=True)
class TagConversion:
    """A file's tags in IOB2, and what it took: the scheme it was written in, tags rewritten."""

    tags: list[list[str]]  # the input lists themselves when the file was IOB2 already
    scheme: str  # "IOB2", "IOB1", "BIOES", "BILOU" (or "BIOES/BILOU" when both sets of letters occur)
    rewritten: int
    total: int

    @property
    def note(self) -> str | None:
        """The warning a bundle carries for a converted file; None for IOB2 input."""
        if self.scheme == "IOB2":
            return None
        counts = f"{self.rewritten:,} of {self.total:,} tags rewritten"
        if self.scheme == "IOB1":
            return f"{IOB1_NOTE}: {counts}"
        single, end = {"BIOES": ("S-", "E-"), "BILOU": ("U-", "L-")}.get(self.scheme, ("S-/U-", "E-/L-"))
        return f"tags converted from {self.scheme} to IOB2: {counts} ({single} → B-, {end} → I-)"


class _Place:
    """Where a tag is, in the user's terms: in a CoNLL file the k-th token of a sentence sits k
    lines below its first one; in a table it is token k of the sentence's row."""

    def __init__(self, rows: Sequence[int] | None, file: str | None, line_based: bool):
        self.rows, self.file, self.line_based = rows, file, line_based

    def row(self, i: int) -> int:
        return i + 1 if self.rows is None else int(self.rows[i])

    def line(self, i: int, k: int) -> int:
        return self.row(i) + k if self.line_based else self.row(i)

    def token(self, k: int) -> str:
        """' (token 3)' for tables; '' for CoNLL files, whose line says it."""
        return "" if self.line_based else f" (token {k + 1})"

    def named(self, i: int, k: int) -> str:
        """'line 7' / 'row 4, token 3', for a tag mentioned inside a message."""
        return f"{row_word(self.file)} {self.line(i, k)}" + ("" if self.line_based else f", token {k + 1}")

    def error(self, i: int, k: int, message: str, fix: str) -> DataError:
        return DataError(message, file=self.file, row=self.line(i, k), fix=fix)


def check_tag_syntax(tags: list[str], row: int, *, file: str | None = None, line_based: bool = False) -> None:
    """Every tag of one sentence is O or a B-/I-/E-/S-/L-/U- prefix with an entity type.

    ``row`` is the sentence's row (for CoNLL files, ``line_based``: the line of its first token).

    Raises:
        DataError: the first tag that is not, naming its line (or row and token).
    """
    place = _Place([row], file, line_based)
    for k, tag in enumerate(tags):
        if not _TAG.match(tag):
            raise place.error(
                0, k, f"tag {tag!r}{place.token(k)} is not a BIO tag",
                "write tags as O, B-TYPE (first token of an entity) or I-TYPE (the tokens after it)"
                + ("; numeric tag ids need to be written as their names" if tag.isdigit() else ""),
            )


def to_iob2(
    tag_lists: Sequence[list[str]],
    rows: Sequence[int] | None = None,
    *,
    file: str | None = None,
    line_based: bool = False,
) -> TagConversion:
    """The tags of every sentence of one file, in IOB2 (see the module docstring for the schemes).

    Args:
        tag_lists: one list of tags per sentence, the whole file.
        rows: each sentence's row as the user counts it (the line of its first token for CoNLL
            files); 1, 2, ... when omitted.
        file: the file, for messages.
        line_based: a CoNLL file, where token k of a sentence is k lines below its first token.

    Returns:
        A :class:`TagConversion`; its ``note`` is the warning to show when tags were rewritten.

    Raises:
        DataError: a tag of no scheme, or tags that mix schemes (file, line or row, what breaks
            the file's scheme and how to fix it).
    """
    place = _Place(rows, file, line_based)
    seen = set(chain.from_iterable(tag_lists))
    if not all(_TAG.match(tag) for tag in seen):
        for i, tags in enumerate(tag_lists):
            check_tag_syntax(tags, place.row(i), file=file, line_based=line_based)
    total = sum(len(tags) for tags in tag_lists)
    letters = {tag[0] for tag in seen}
    if letters & set("SEUL"):
        return _from_bioes(tag_lists, letters, place, total)
    return _from_iob(tag_lists, place, total)


def _from_iob(tag_lists: Sequence[list[str]], place: _Place, total: int) -> TagConversion:
    # An entity opens where a tag's type differs from the previous tag's (O has none). IOB2 opens
    # every entity with B-, IOB1 with I- (its B- never opens after O or another type).
    i_opens: list[tuple[int, int]] = []
    b_opens = 0
    first_b: tuple[int, int] | None = None
    for i, tags in enumerate(tag_lists):
        previous = "O"
        for k, tag in enumerate(tags):
            if tag != "O" and previous[2:] != tag[2:]:
                if tag[0] == "I":
                    i_opens.append((i, k))
                else:
                    b_opens += 1
                    first_b = first_b or (i, k)
            previous = tag
    if not i_opens:
        return TagConversion(list(tag_lists), "IOB2", 0, total)
    if first_b is not None:
        raise _mixed_iob(tag_lists, place, i_opens, b_opens, first_b)
    out = [list(tags) for tags in tag_lists]
    for i, k in i_opens:
        out[i][k] = "B" + out[i][k][1:]
    return TagConversion(out, "IOB1", len(i_opens), total)


def _mixed_iob(
    tag_lists: Sequence[list[str]], place: _Place, i_opens: list[tuple[int, int]], b_opens: int, first_b: tuple[int, int]
) -> DataError:
    """Some entities open with B- (IOB2), others with I- (IOB1): blame the first of the rarer kind."""

    def at(i: int, k: int) -> tuple[str, str]:
        return tag_lists[i][k], tag_lists[i][k - 1] if k else "O"

    n_i = len(i_opens)
    if b_opens >= n_i:
        i, k = i_opens[0]
        tag, previous = at(i, k)
        kind = tag[2:]
        return place.error(
            i, k,
            f"{tag}{place.token(k)} follows {previous}; an I- tag must continue a B-{kind} or I-{kind}. "
            f"The file mixes schemes: {_entities(b_opens)} with B- (IOB2, e.g. {at(*first_b)[0]} at "
            f"{place.named(*first_b)}) and {_entities(n_i)} with I- (IOB1)",
            f"start the entity with B-{kind} (IOB2: every entity starts with B-), or write the whole file "
            "in IOB1 (entities start with I-; B- only between two adjacent entities of the same type)",
        )
    i, k = first_b
    tag, previous = at(i, k)
    kind = tag[2:]
    return place.error(
        i, k,
        f"{tag}{place.token(k)} follows {previous}, but the file is otherwise IOB1 ({_entities(n_i)} with I-, "
        f"e.g. {at(*i_opens[0])[0]} at {place.named(*i_opens[0])}), where B- only separates two adjacent "
        f"entities of the same type. The file mixes schemes: {_entities(b_opens)} with B- (IOB2)",
        f"write I-{kind} there (IOB1), or convert the whole file to IOB2 (every entity starts with B-, "
        "I- continues it)",
    )


def _entities(n: int) -> str:
    return f"{n:,} {'entity starts' if n == 1 else 'entities start'}"


def _from_bioes(tag_lists: Sequence[list[str]], letters: set[str], place: _Place, total: int) -> TagConversion:
    bioes, bilou = bool(letters & set("SE")), bool(letters & set("UL"))
    scheme = "BIOES/BILOU" if bioes and bilou else "BIOES" if bioes else "BILOU"
    single, end = ("U", "L") if scheme == "BILOU" else ("S", "E")
    rewritten = 0
    for i, tags in enumerate(tag_lists):
        for k, tag in enumerate(tags):
            prefix, kind = tag[0], tag[2:]
            if prefix in "IEL":  # continues an entity: after B-/I- of its type
                previous = tags[k - 1] if k else "O"
                if previous[0] not in "BI" or previous[2:] != kind:
                    raise place.error(
                        i, k,
                        f"{tag}{place.token(k)} follows {previous}; in {scheme} an {prefix}- tag must continue "
                        f"a B-{kind} or I-{kind}",
                        f"start the entity with B-{kind}, or write a one-token entity as {single}-{kind}",
                    )
            if prefix in "BI":  # opens or goes on: I-/E- of its type must follow
                following = tags[k + 1] if k + 1 < len(tags) else None
                if following is None or following[0] not in "IEL" or following[2:] != kind:
                    shown = following or "the end of the sentence"
                    raise place.error(
                        i, k,
                        f"{tag}{place.token(k)} is followed by {shown}; in {scheme} an entity goes on with "
                        f"I-{kind} and ends with {end}-{kind} (a one-token entity is {single}-{kind})",
                        f"end the entity with {end}-{kind} (or write a one-token entity as {single}-{kind}), "
                        "or write the whole file in IOB2 (B- starts an entity, I- continues it; no S-/E- tags)",
                    )
            elif prefix in "SEUL":
                rewritten += 1
    new = {tag: ("B" if tag[0] in "SU" else "I") + tag[1:] if tag[0] in "SEUL" else tag
           for tag in set(chain.from_iterable(tag_lists))}
    out = [[new[tag] for tag in tags] for tags in tag_lists]
    return TagConversion(out, scheme, rewritten, total)


def bio_spans(tokens: Sequence[str], tags: Sequence[str]) -> list[tuple[int, int, str]]:
    """Entity spans (start, end exclusive, type) of a BIO tag sequence; a stray I- starts a span."""
    spans: list[tuple[int, int, str]] = []
    start, kind = None, None
    for i, tag in enumerate([*tags, "O"]):
        prefix, _, ent = tag.partition("-")
        continues = prefix == "I" and ent == kind
        if start is not None and not continues:
            spans.append((start, i, kind or ""))
            start, kind = None, None
        if prefix in ("B", "I") and not continues:
            start, kind = i, ent
    return [s for s in spans if s[0] < len(tokens)]
