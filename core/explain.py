"""Why the model said this: word attributions by Integrated Gradients, and how faithful they are.

Attributions come from Captum's ``LayerIntegratedGradients`` on the model's input (word) embeddings:
the path runs from a baseline of the same text with every word replaced by ``[PAD]`` (``[CLS]``,
``[SEP]`` and the real attention mask kept) to the text itself, and each sub-token's attribution is
summed over the embedding width and then over the sub-tokens of its word. The explained quantity is
the model's *probability* of the target class (softmax; sigmoid for multi-label; the value for
regression), so the attributions add up to ``p(text) - p(baseline)`` and read as shares of it.

Completeness is checked: Captum's convergence delta (the sum of attributions less that difference)
must be within ``tolerance`` of the difference (or ``ABSOLUTE_DELTA`` in probability); the step
count starts at ``steps`` and doubles until it is, up to ``max_steps``. The explanation says which
step count it took and whether the bound was met.

NER: one explanation per predicted entity; the quantity is the mean probability of the entity's
predicted tags (at each word's first sub-token), so its words and their context are scored for
"why is this a PERSON".

Models without gradients (dynamic int8, ONNX) are explained through their fp32 parent, and an
ensemble through its first member; ``Explanation.through`` says so, and every page shows it.

:func:`faithfulness` measures the attributions the way ERASER does (DeYoung et al., 2020):
comprehensiveness (deleting the top-k words lowers the probability more than deleting k random words)
and sufficiency (keeping only the top-k keeps more of it than keeping k random words).
"""

from __future__ import annotations

import bisect
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from core import runs
from core.data import load_unlabelled
from core.data.tags import bio_spans

if TYPE_CHECKING:  # torch, transformers and captum load when something is explained, not with the CLI
    import torch

    from core.inference import Predictor

INTERNAL_BATCH = 32  # interpolation steps per forward/backward pass
ABSOLUTE_DELTA = 0.005  # a delta this small in probability is converged however small p(text) - p(baseline) is
_WORD = re.compile(r"\S+")


class ExplainError(ValueError):
    """The text or the model can't be explained as asked (an unknown label, no words, no fast tokenizer)."""


@dataclass(frozen=True)
class Explanation:
    """Word attributions for one prediction (or, for NER, one predicted entity).

    ``scores[i]`` is word ``i``'s share of ``output - baseline_output`` (positive: it raised the
    target's probability). ``segments[i]`` is 0 for the text, 1 for the second text of a pair.
    ``span``: the entity's words ``[start, end)`` (NER only). ``through``: the run whose model was
    explained when it isn't this run's own (int8/ONNX variants, ensembles), else None.
    """

    words: tuple[str, ...]
    scores: tuple[float, ...]
    segments: tuple[int, ...]
    target: str
    predicted: str
    output: float
    baseline_output: float
    delta: float
    steps: int
    converged: bool
    truncated_words: int = 0
    span: tuple[int, int] | None = None
    through: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def top_words(self, k: int) -> list[int]:
        """The indices of the ``k`` words that raised the target's probability most."""
        return [int(i) for i in np.argsort(-np.asarray(self.scores), kind="stable")[:k]]


def has_gradients(model: Any) -> bool:
    """False for models integrated gradients can't run through: ONNX (no torch parameters), dynamic int8."""
    import torch

    if not isinstance(model, torch.nn.Module) or next(model.parameters(), None) is None:
        return False
    return not any(type(m).__module__.startswith("torch.ao.nn.quantized") for m in model.modules())


class Explainer:
    """Integrated-gradients explanations of one loaded model (a :class:`core.inference.Predictor`).

    ``steps``: the first step count tried; doubled until the convergence bound holds, up to ``max_steps``.
    ``tolerance``: the bound on ``|delta|`` as a share of ``|output - baseline_output|``.
    """

    def __init__(self, predictor: Predictor, *, through: str | None = None, steps: int = 16, max_steps: int = 256,
                 tolerance: float = 0.05):
        if not has_gradients(predictor.model):
            raise ExplainError("this model has no gradients (an int8 or ONNX variant): explain its fp32 parent run")
        if not getattr(predictor.tokenizer, "is_fast", False):
            raise ExplainError("word attributions need a fast tokenizer (its offsets map sub-tokens to words)")
        if steps < 2 or max_steps < steps:
            raise ExplainError(f"steps must be at least 2 and at most max_steps; got steps={steps}, max_steps={max_steps}")
        self.predictor, self.through = predictor, through
        self.steps, self.max_steps, self.tolerance = steps, max_steps, tolerance
        self.model = predictor.model
        for parameter in self.model.parameters():  # gradients are taken w.r.t. the embeddings only
            parameter.requires_grad_(False)
        self.pad_id = predictor.tokenizer.pad_token_id or 0
        self.special_ids = set(predictor.tokenizer.all_special_ids) - {self.pad_id}
        # one explainer serves every dashboard session: Captum hooks the embedding layer while it integrates, so
        # one explanation at a time
        import threading

        self._lock = threading.RLock()

    # --- sequence tasks ---------------------------------------------------------------------------------------
    def explain(self, text: str, pair: str | None = None, target: str | None = None) -> Explanation:
        """Attributions of ``text`` (and ``pair``) for ``target`` (a label name; the predicted one by default)."""
        with self._lock:  # Captum's hook on the embeddings would change another session's forward meanwhile
            return self._explain(text, pair, target)

    def _explain(self, text: str, pair: str | None, target: str | None) -> Explanation:
        import torch

        p = self.predictor
        if p.task == "token":
            raise ExplainError("an NER model explains its entities: use explain_entities(words)")
        segments_text = [text] if pair is None else [text, pair]
        words, spans, segments = [], [], []
        for segment, part in enumerate(segments_text):
            for match in _WORD.finditer(part):
                words.append(match.group())
                spans.append((segment, match.start(), match.end()))
                segments.append(segment)
        if not words:
            raise ExplainError("the text has no words to explain")
        enc = p.tokenizer(text, pair, truncation=True, max_length=p.max_length, return_offsets_mapping=True,
                          return_tensors="pt")
        offsets = enc.pop("offset_mapping")[0].tolist()
        sequence_ids = enc.sequence_ids(0)
        token_word = _token_words(offsets, sequence_ids, spans, segments_text)
        probabilities = self._probabilities(enc)
        if p.task == "regression":
            column, target_name, predicted = 0, "value", f"{probabilities[0]:.4g}"
        else:
            predicted = (p.names[int(np.argmax(probabilities))] if p.task != "multi_label"
                         else "|".join(n for n, q in zip(p.names, probabilities, strict=True) if q > p.threshold) or "(none)")
            if target is None:
                column = int(np.argmax(probabilities))
            elif target in p.names:
                column = p.names.index(target)
            else:
                raise ExplainError(f"{target!r} is not one of the model's labels {p.names}")
            target_name = p.names[column]

        def output(logits: torch.Tensor) -> torch.Tensor:
            if p.task == "regression":
                return logits[:, 0]
            if p.task == "multi_label":
                return torch.sigmoid(logits[:, column])
            return torch.softmax(logits, -1)[:, column]

        scores, result = self._integrate(enc, output)
        word_scores = np.zeros(len(words))
        for token, word in enumerate(token_word):
            if word is not None:
                word_scores[word] += scores[token]
        seen = {w for w in token_word if w is not None}
        return Explanation(words=tuple(words), scores=tuple(map(float, word_scores)), segments=tuple(segments),
                           target=target_name, predicted=predicted, truncated_words=len(words) - len(seen),
                           through=self.through, **result)

    def explain_many(self, texts: Sequence[str], pairs: Sequence[str] | None = None,
                     target: str | None = None) -> list[Explanation]:
        return [self.explain(t, None if pairs is None else pairs[i], target) for i, t in enumerate(texts)]

    # --- NER ---------------------------------------------------------------------------------------------------
    def explain_entities(self, words: Sequence[str]) -> list[Explanation]:
        """One explanation per entity the model predicts in ``words``: which words support its type."""
        with self._lock:
            return self._explain_entities(words)

    def _explain_entities(self, words: Sequence[str]) -> list[Explanation]:
        import torch

        p = self.predictor
        if p.task != "token":
            raise ExplainError("explain_entities is for NER runs; explain a text with explain(text)")
        words = [str(w) for w in words]
        if not words:
            raise ExplainError("the sentence has no words to explain")
        enc = p.tokenizer([words], is_split_into_words=True, truncation=True, max_length=p.max_length, return_tensors="pt")
        word_ids = enc.word_ids(0)
        first = {}
        for position, word in enumerate(word_ids):
            if word is not None and word not in first:
                first[word] = position
        tags = [p.names[int(i)] for i in p.word_probabilities([words])[0].argmax(-1)]
        out = []
        for start, end, kind in bio_spans(words, tags):
            positions = [first[w] for w in range(start, end) if w in first]
            if not positions:  # cut off by max_length
                continue
            tag_ids = [p.names.index(tags[w]) for w in range(start, end) if w in first]
            index = torch.tensor(positions)
            wanted = torch.tensor(tag_ids)

            def output(logits: torch.Tensor, index: torch.Tensor = index, wanted: torch.Tensor = wanted) -> torch.Tensor:
                return torch.softmax(logits[:, index, :], -1)[:, torch.arange(len(wanted)), wanted].mean(-1)

            scores, result = self._integrate(enc, output)
            word_scores = np.zeros(len(words))
            for position, word in enumerate(word_ids):
                if word is not None:
                    word_scores[word] += scores[position]
            out.append(Explanation(words=tuple(words), scores=tuple(map(float, word_scores)), segments=(0,) * len(words),
                                   target=kind, predicted=" ".join(words[start:end]), span=(start, end),
                                   truncated_words=len(words) - len(first), through=self.through, **result))
        return out

    # --- the integration ---------------------------------------------------------------------------------------
    def _probabilities(self, enc: Any) -> np.ndarray:
        import torch

        from core.metrics import sigmoid, softmax

        with torch.inference_mode():
            logits = self.model(**{k: v for k, v in enc.items()}).logits.float().numpy()[0]
        if self.predictor.task == "multi_label":
            return sigmoid(logits)
        return logits if self.predictor.task == "regression" else softmax(logits)

    def _integrate(self, enc: Any, output: Callable[[torch.Tensor], torch.Tensor]) -> tuple[np.ndarray, dict[str, Any]]:
        """Per-token attributions of ``output`` and the facts of their convergence (output, baseline, delta, steps)."""
        import torch
        from captum.attr import LayerIntegratedGradients

        inputs = {k: v for k, v in enc.items()}
        input_ids = inputs.pop("input_ids")
        keep = torch.tensor([[int(t) in self.special_ids for t in input_ids[0]]])
        baseline = torch.where(keep, input_ids, torch.full_like(input_ids, self.pad_id))

        def forward(ids: torch.Tensor, *rest: torch.Tensor) -> torch.Tensor:
            batch = dict(zip(inputs, rest, strict=True))
            return output(self.model(input_ids=ids, **batch).logits.float())

        extra = tuple(v.expand(1, -1) for v in inputs.values())
        with torch.no_grad():
            f_text = float(forward(input_ids, *extra)[0])
            f_base = float(forward(baseline, *extra)[0])
        gap = abs(f_text - f_base)
        lig = LayerIntegratedGradients(forward, self.model.get_input_embeddings())
        steps = self.steps
        while True:
            # at most INTERNAL_BATCH interpolated copies at once: 256 copies of a 512-token text through eager
            # attention would take tens of GB
            attributions, delta = lig.attribute(input_ids, baselines=baseline, additional_forward_args=extra,
                                                n_steps=steps, internal_batch_size=min(steps, INTERNAL_BATCH),
                                                return_convergence_delta=True)
            delta = float(delta[0])
            converged = abs(delta) <= max(self.tolerance * gap, ABSOLUTE_DELTA)
            if converged or steps * 2 > self.max_steps:
                break
            steps *= 2
        scores = attributions.sum(-1)[0].detach().float().numpy()
        return scores, {"output": f_text, "baseline_output": f_base, "delta": delta, "steps": steps, "converged": converged}


def _token_words(offsets: list[list[int]], sequence_ids: list[int | None], spans: list[tuple[int, int, int]],
                 texts: list[str]) -> list[int | None]:
    """For each token, the index of the whitespace word its first non-space character is in (None for special
    tokens). A SentencePiece "▁word" token's offsets start at the space before the word: that space is skipped."""
    starts: dict[int, list[int]] = {}
    index: dict[int, list[int]] = {}
    for i, (segment, start, _) in enumerate(spans):
        starts.setdefault(segment, []).append(start)
        index.setdefault(segment, []).append(i)
    out: list[int | None] = []
    for (start, end), segment in zip(offsets, sequence_ids, strict=True):
        if segment is None or end <= start or segment not in starts:
            out.append(None)
            continue
        while start < end - 1 and texts[segment][start].isspace():
            start += 1
        k = bisect.bisect_right(starts[segment], start) - 1
        out.append(index[segment][k] if k >= 0 else None)
    return out


# --- which model explains a run ------------------------------------------------------------------------------------

def explainer_for_run(run_dir: str | Path, **options: Any) -> Explainer:
    """An :class:`Explainer` of the run's model, or of the nearest model with gradients it was made from.

    An int8 or ONNX variant is explained through its parent (repeatedly, up its lineage); an ensemble through
    its first member. ``Explanation.through`` names that run.

    Raises:
        ExplainError: the run has no saved model, or none up its lineage has gradients.
    """
    from core.evaluate import run_predictor
    from core.inference import EnsemblePredictor
    from core.models import ModelError

    run_dir = Path(run_dir)
    through, seen = None, set()
    while True:
        if not (run_dir / runs.MODEL_DIR / "config.json").exists():
            raise ExplainError(f"run {run_dir.name} has no saved model (model/config.json is missing)")
        try:
            predictor = run_predictor(run_dir)
        except ModelError as exc:
            raise ExplainError(str(exc)) from None
        if isinstance(predictor, EnsemblePredictor):
            member = predictor.members[0]
            name = Path(getattr(member, "source", "")).name or "the first member"
            return Explainer(member, through=f"member run {name} (an ensemble's members are explained one at a time)",
                             **options)
        if has_gradients(predictor.model):
            return Explainer(predictor, through=through, **options)
        derived = (runs.read_json(run_dir / runs.REPORT) or {}).get("derived") or {}
        parents = derived.get("parents") or []
        parent = runs.find_run(run_dir.parent, parents[0]) if parents else None
        if parent is None or parent in seen:
            raise ExplainError(f"run {run_dir.name}'s model has no gradients (int8/ONNX) and its fp32 parent "
                               f"{parents[0] if parents else '(unknown)'} is not in {run_dir.parent}")
        seen.add(parent)
        through = through or (f"run {parent.name}, the fp32 parent of this {derived.get('method', 'compressed')} variant "
                              "(which has no gradients)")
        run_dir = parent


# --- faithfulness (ERASER) -----------------------------------------------------------------------------------------

def _k_values(n_words: int, fractions: Sequence[int | float]) -> list[int]:
    """Word counts to delete or keep: whole numbers as they are, fractions of the text's words rounded up."""
    ks = [int(f) if isinstance(f, int) else max(1, math.ceil(f * n_words)) for f in fractions]
    return [k for k in ks if 0 < k < n_words]


def faithfulness(predictor: Predictor, explanations: Sequence[Explanation], *, ks: Sequence[int | float] = (1, 3, 5, 0.1),
                 random_draws: int = 5, seed: int = 0) -> dict[str, Any]:
    """Comprehensiveness and sufficiency of word attributions, each against deleting or keeping random words.

    For every explanation (of a single text) and every k (an int: that many words; a float: that share of
    the text's words, rounded up) below its word count: the drop of the target's probability when the top-k
    words are deleted (comprehensiveness; higher is more faithful) and when only they are kept (sufficiency;
    lower is more faithful), and the same for ``random_draws`` random choices of k words.

    Returns ``{"k": {label: {"comprehensiveness", "random_comprehensiveness", "sufficiency",
    "random_sufficiency", "texts"}}, "mean": {the same four, averaged over every (text, k)}}``.
    """
    from core.metrics import sigmoid, softmax

    rng = np.random.default_rng(seed)
    label = {k: (f"{k:.0%}" if isinstance(k, float) else str(k)) for k in ks}
    rows: list[tuple[str, int, str, str, str]] = []  # (k label, explanation index, variant, deleted text, kept text)
    originals = []
    for e_index, e in enumerate(explanations):
        if any(e.segments) or e.span is not None:
            raise ExplainError("faithfulness is measured on explanations of single texts")
        words = list(e.words)
        originals.append(" ".join(words))
        ranked = e.top_words(len(words))
        for k in ks:
            for size in _k_values(len(words), [k]):
                choices = [("top", ranked[:size])] + [("random", list(rng.choice(len(words), size, replace=False)))
                                                       for _ in range(random_draws)]
                for variant, picked in choices:
                    chosen = set(map(int, picked))
                    deleted = " ".join(w for i, w in enumerate(words) if i not in chosen)
                    kept = " ".join(w for i, w in enumerate(words) if i in chosen)
                    rows.append((label[k], e_index, variant, deleted, kept))
    if not rows:
        raise ExplainError("no explanation has enough words to delete any of them")
    target_column = [predictor.names.index(e.target) if e.target in predictor.names else 0 for e in explanations]

    def probability(texts: list[str], which: list[int]) -> np.ndarray:
        logits = predictor.logits(texts)
        probs = sigmoid(logits) if predictor.task == "multi_label" else softmax(logits)
        return probs[np.arange(len(texts)), [target_column[i] for i in which]]

    full = probability(originals, list(range(len(explanations))))
    which = [r[1] for r in rows]
    after_delete = full[which] - probability([r[3] for r in rows], which)
    after_keep = full[which] - probability([r[4] for r in rows], which)
    table: dict[str, dict[str, list[float]]] = {}
    for (k, _, variant, _, _), comp, suff in zip(rows, after_delete, after_keep, strict=True):
        cell = table.setdefault(k, {"comprehensiveness": [], "random_comprehensiveness": [], "sufficiency": [],
                                    "random_sufficiency": []})
        prefix = "" if variant == "top" else "random_"
        cell[prefix + "comprehensiveness"].append(float(comp))
        cell[prefix + "sufficiency"].append(float(suff))
    out: dict[str, Any] = {"k": {}, "mean": {}}
    for k, cell in table.items():
        out["k"][k] = {name: float(np.mean(values)) for name, values in cell.items()} | {"texts": len(cell["comprehensiveness"])}
    for name in ("comprehensiveness", "random_comprehensiveness", "sufficiency", "random_sufficiency"):
        out["mean"][name] = float(np.mean([v for cell in table.values() for v in cell[name]]))
    return out


def explain_file(explainer: Explainer, run_dir: str | Path, data_file: str | Path, out: str | Path, *,
                 target: str | None = None) -> dict[str, Any]:
    """Explain every row of ``data_file`` and write one JSON line per row to ``out``.

    A line: ``row``, then for a text ``text`` (``text_pair``), ``target``, ``predicted``, ``output``,
    ``words``, ``scores``, ``delta``, ``steps``, ``converged``; for NER ``tokens`` and ``entities`` (each
    with ``span``, ``type``, ``words`` scored and the same convergence facts). ``through`` when the
    explained model isn't the run's own.

    Raises:
        DataError: the file can't be read or has no text column (file, row, column).
    """
    from core.evaluate import _columns_of
    from core.recipe import load_run_config

    config = load_run_config(Path(run_dir))
    frame, _ = load_unlabelled(data_file, config.task, _columns_of(config.data, data_file))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    try:
        written = _write_explanations(explainer, config.task, frame, tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    tmp.replace(out)
    return {"path": str(out), "rows": len(frame), "not_converged": written}


def _write_explanations(explainer: Explainer, task: str, frame: Any, tmp: Path, target: str | None) -> int:
    """One JSON line per row of ``frame`` into ``tmp``; returns how many explanations missed the convergence bound."""
    import json

    not_converged = 0
    with tmp.open("w", encoding="utf-8") as handle:
        for i in range(len(frame)):
            row = int(frame["row"].iloc[i])
            if task == "token":
                tokens = list(frame["tokens"].iloc[i])
                entities = explainer.explain_entities(tokens) if tokens else []
                not_converged += sum(not e.converged for e in entities)
                line: dict[str, Any] = {"row": row, "tokens": tokens, "entities": [
                    {"span": list(e.span or ()), "type": e.target, "text": e.predicted, "scores": list(e.scores),
                     "output": e.output, "delta": e.delta, "steps": e.steps, "converged": e.converged} for e in entities]}
            else:
                text = str(frame["text"].iloc[i])
                pair = str(frame["text_pair"].iloc[i]) if "text_pair" in frame.columns else None
                if not text.strip():
                    line = {"row": row, "text": text, "error": "empty text: nothing to explain"}
                else:
                    e = explainer.explain(text, pair, target)
                    not_converged += not e.converged
                    line = {"row": row, "text": text, **({"text_pair": pair} if pair is not None else {}),
                            **{k: v for k, v in e.as_dict().items() if k not in ("span", "through")}}
            if explainer.through:
                line["through"] = explainer.through
            handle.write(json.dumps(line, ensure_ascii=False) + "\n")
    return not_converged
