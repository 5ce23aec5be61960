"""BBC News with a known flaw: a file whose "forum" rows have a share of their labels swapped at random.

The rows whose labels were swapped are known, so error analysis can be checked against the truth: the
forum slice must be flagged worse, and the swapped rows must lead the label-issue ranking.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from core.data.samples import cached_sample


def noisy_news(folder: Path, rows: int = 600, forum_share: float = 0.3, flip_share: float = 0.5,
               seed: int = 0) -> tuple[Path, set[int]]:
    """A CSV (text, category, source, year, code) and the row numbers whose label was swapped for another."""
    frame = cached_sample("bbc_news")[0].drop(columns=["row"]).sample(rows, random_state=seed).reset_index(drop=True)
    rng = np.random.default_rng(seed)
    labels = sorted(frame["label"].unique())
    forum = rng.random(len(frame)) < forum_share
    flip = forum & (rng.random(len(frame)) < flip_share)
    swapped = [rng.choice([lab for lab in labels if lab != old]) for old in frame["label"]]
    frame["label"] = np.where(flip, swapped, frame["label"])
    frame["source"] = np.where(forum, "forum", "wire")
    frame["year"] = 2000 + rng.integers(0, 8, len(frame))
    frame["code"] = [f"{i:05d}" for i in rng.integers(0, 5000, len(frame))]  # leading zeros a copy must keep
    path = folder / "news_with_sources.csv"
    frame.rename(columns={"label": "category"}).to_csv(path, index=False)
    # a CSV's row numbers as Tuneboard names them (core.data.readers): the header is row 1, data from row 2
    return path, {int(i) + 2 for i in np.flatnonzero(flip)}
