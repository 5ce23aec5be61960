"""Predictions from a saved run: load ``model/`` once, then predict texts or token sequences fast.

Used by ``python -m core predict`` / ``eval``, the dashboard's try-it box and the benchmarks.
Texts are tokenized in one call, batches are sorted by length so each is padded only to its own
longest text. ``precision="auto"`` (or ``"bf16"``) runs the forward under bf16 autocast where the
CPU/GPU has native bf16, as training does by default; the default, fp32, gives exact scores.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from core.cls_top_layer import use_cls_only_top_layer
from core.cpu_dropout import use_eager_attention
from core.device import autocast
from core.metrics import sigmoid, softmax
from core.model_format import load_saved
from core.tokenize import IGNORE_INDEX, PaddingCollator, eval_batches
from core.unpadded import pays_off as unpadded_pays_off
from core.unpadded import use_unpadded_encoder

MEMBERS_DIR = "members"  # an ensemble's model/: one folder per member run (core.fuse), hard links to its model/


class Predictor:
    """A saved model ready to predict; ``threshold`` applies to multi-label tasks; ``precision`` is fp32, bf16 or auto."""

    def __init__(self, model_dir: str | Path, threshold: float = 0.5, batch_size: int = 64, max_length: int = 256,
                 precision: str = "fp32", temperature: float = 1.0):
        self.source = str(model_dir)
        self.model, self.tokenizer, self.task = load_saved(model_dir)
        self.model.eval()
        problem = getattr(self.model.config, "problem_type", None)
        if problem == "multi_label_classification":
            self.task = "multi_label"
        elif problem == "regression":
            self.task = "regression"
        self.names = [self.model.config.id2label[i] for i in range(self.model.config.num_labels)]
        self.threshold = threshold
        # core.calibration's fitted temperature: divides single-label logits (the same arg-max, honest confidence)
        self.temperature = temperature if self.task in ("single_label", "pair") else 1.0
        self.batch_size = batch_size
        self.precision = precision
        # an ONNX model (core.onnx_export.OnnxModel) has no torch parameters: it takes CPU tensors
        self.device = next(self.model.parameters(), torch.empty(0)).device
        if self.device.type == "cpu":
            use_eager_attention(self.model)  # 2% (fp32) to 7% (bf16) more texts/s than SDPA on the CPU
        use_cls_only_top_layer(self.model)  # sequence tasks: the same logits, ~1/7 less work (core/cls_top_layer.py)
        if unpadded_pays_off(self.device):
            use_unpadded_encoder(self.model)  # the same logits, 7% (fp32) to 10% (bf16) more texts/s (core/unpadded.py)
        self.max_length = min(max_length, getattr(self.model.config, "max_position_embeddings", 512))
        self.collator = PaddingCollator(self.tokenizer.pad_token_id or 0, "token" if self.task == "token" else "single_label")

    @torch.inference_mode()
    def logits(self, texts: Sequence[str], pairs: Sequence[str] | None = None) -> np.ndarray:
        enc = self.tokenizer(list(texts), list(pairs) if pairs is not None else None, truncation=True,
                             max_length=self.max_length)
        rows = [{k: enc[k][i] for k in enc} | {"labels": 0} for i in range(len(texts))]
        out = np.zeros((len(rows), self.model.config.num_labels), dtype=np.float32)
        lengths = np.array([len(r["input_ids"]) for r in rows])
        for idx in eval_batches(lengths, self.batch_size):
            batch = self.collator([rows[i] for i in idx])
            batch.pop("labels")
            with autocast(self.precision, self.device, self.task):
                out[idx] = self.model(**batch).logits.float().numpy()
        return out / self.temperature if self.temperature != 1.0 else out

    def predict_texts(self, texts: Sequence[str], pairs: Sequence[str] | None = None) -> pd.DataFrame:
        """One row per text: predicted label(s) or value, confidence, and per-label probabilities."""
        logits = self.logits(texts, pairs)
        frame = pd.DataFrame({"text": list(texts)})
        if pairs is not None:
            frame["text_pair"] = list(pairs)
        if self.task == "regression":
            frame["predicted"] = logits[:, 0]
            return frame
        probs = sigmoid(logits) if self.task == "multi_label" else softmax(logits)
        if self.task == "multi_label":
            frame["predicted"] = ["|".join(n for n, p in zip(self.names, row, strict=True) if p > self.threshold) for row in probs]
        else:
            frame["predicted"] = [self.names[i] for i in probs.argmax(1)]
            frame["confidence"] = probs.max(1)
        for j, name in enumerate(self.names):
            frame[f"p_{name}"] = probs[:, j]
        return frame

    def predict_tokens(self, sentences: Sequence[Sequence[str]]) -> list[list[str]]:
        """Tags per word (the first sub-token of each word decides)."""
        return [[self.names[i] for i in probs.argmax(-1)] for probs in self.word_probabilities(sentences)]

    @torch.inference_mode()
    def word_probabilities(self, sentences: Sequence[Sequence[str]]) -> list[np.ndarray]:
        """Per sentence, a (words, labels) array of tag probabilities from each word's first sub-token.

        Words cut off by ``max_length`` get certainty of ``O`` (as an untagged word reads).
        """
        enc = self.tokenizer([list(s) for s in sentences], is_split_into_words=True, truncation=True,
                             max_length=self.max_length)
        rows = []
        for i in range(len(sentences)):
            word_ids = enc.word_ids(i)
            first = [IGNORE_INDEX if w is None or w == p else w for w, p in zip(word_ids, [None, *word_ids[:-1]], strict=True)]
            rows.append({k: enc[k][i] for k in enc} | {"labels": first})
        outside = np.zeros(len(self.names), dtype=np.float32)
        outside[self.names.index("O") if "O" in self.names else 0] = 1.0
        probs: list[np.ndarray] = [np.tile(outside, (len(s), 1)) for s in sentences]
        lengths = np.array([len(r["input_ids"]) for r in rows])
        for idx in eval_batches(lengths, self.batch_size):
            batch = self.collator([rows[i] for i in idx])
            word_index = batch.pop("labels")
            with autocast(self.precision, self.device, self.task):
                p = torch.softmax(self.model(**batch).logits.float(), -1)
            for j, row in enumerate(idx):
                keep = word_index[j] != IGNORE_INDEX
                probs[row][word_index[j][keep].numpy()] = p[j][keep].numpy()
        return probs

    def describe(self) -> dict[str, Any]:
        return {"task": self.task, "labels": self.names}


class EnsemblePredictor(Predictor):
    """A fused ensemble (core.fuse): its members' Predictors, their probabilities averaged with weights.

    Members may differ in base model, tokenizer and strategy: each tokenizes the texts itself, and for NER
    the members' probabilities are averaged per word (words are what every tokenizer shares).
    ``combine="vote"``: each member's predicted label counts its weight (probabilities break ties).
    """

    def __init__(self, members: list[Predictor], weights: Sequence[float], combine: str = "average"):
        first = members[0]
        self.members, self.combine = members, combine
        self.weights = np.asarray(weights, dtype=np.float64) / float(np.sum(weights))
        self.task, self.names, self.threshold = first.task, first.names, first.threshold
        self.temperature, self.source = 1.0, first.source
        self.tokenizer, self.max_length = first.tokenizer, first.max_length
        self.batch_size, self.precision = first.batch_size, first.precision
        self.model = torch.nn.ModuleList([m.model for m in members])  # what the ensemble holds (its size)
        self.device = first.device

    def logits(self, texts: Sequence[str], pairs: Sequence[str] | None = None) -> np.ndarray:
        outputs = [m.logits(texts, pairs) for m in self.members]
        if self.task == "regression":
            return np.tensordot(self.weights, np.stack(outputs), axes=1).astype(np.float32)
        if self.task == "multi_label":
            p = np.clip(np.tensordot(self.weights, np.stack([sigmoid(o) for o in outputs]), axes=1), 1e-7, 1 - 1e-7)
            return np.log(p / (1 - p)).astype(np.float32)  # sigmoid() of it gives the averaged probabilities back
        probs = np.stack([softmax(o) for o in outputs])
        averaged = np.tensordot(self.weights, probs, axes=1)
        if self.combine == "vote":
            votes = np.tensordot(self.weights, np.eye(len(self.names))[probs.argmax(-1)], axes=1)
            averaged = (votes + 1e-3 * averaged) / (1 + 1e-3)  # the most votes wins; averaged probabilities break ties
        log_probs = np.log(np.clip(averaged, 1e-12, 1)).astype(np.float32)  # softmax() of it: the averaged probabilities
        return log_probs / self.temperature if self.temperature != 1.0 else log_probs  # core.calibration's, fitted on them

    def word_probabilities(self, sentences: Sequence[Sequence[str]]) -> list[np.ndarray]:
        per_member = [m.word_probabilities(sentences) for m in self.members]
        return [sum(w * member[i] for w, member in zip(self.weights, per_member, strict=True)) for i in range(len(sentences))]

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "members": len(self.members)}
