"""ONNX export of a run's model (the ``onnx`` and ``onnx-int8`` compression methods) and running it back.

The export is ``torch.onnx.export(..., dynamo=True)`` with eager attention, dynamic batch and sequence
axes and the weights inside the one ``model.onnx`` file. (optimum's ONNX exporter would do this for us,
but it requires transformers < 4.58 and can't be installed beside our pins.) For sequence tasks the top
layer is exported computing its first token only (core.cls_top_layer: the same logits, less work), so
the file is as fast as our own Predictor's graph. Every export is checked before it is kept: the file,
run by onnxruntime, must give the torch model's logits on real texts.

``onnx-int8`` quantizes that file with ``onnxruntime.quantization.quantize_dynamic`` (int8 weights of the
matrix multiplications and of the embedding lookups, activations quantized per batch at run time).
Its input is the export without ``value_info``: the dynamo exporter records intermediate shapes that
onnx's shape inference, which the quantizer runs first, rejects ("Inferred shape and existing shape
differ").

The folder runs with onnxruntime and the tokenizer alone: :data:`PREDICT_PY` is written beside the
model as ``predict.py``. Inside Tuneboard, :class:`OnnxModel` stands where the torch model would (the
Predictor, evaluation, the HTTP API): called like a transformers model, it returns ``.logits``.
"""

from __future__ import annotations

import types
from pathlib import Path
from typing import Any

import numpy as np
import torch

ONNX_FILE = "model.onnx"
PREDICT_FILE = "predict.py"
EXPORT_TOLERANCE = 1e-3  # largest logit difference between the float export and the torch model


class OnnxModel(torch.nn.Module):
    """A folder's ``model.onnx`` in an onnxruntime session, called like a transformers model."""

    def __init__(self, model_dir: str | Path, config: Any, threads: int | None = None):
        super().__init__()
        ort = require_onnxruntime()
        self.onnx_path = Path(model_dir) / ONNX_FILE
        if not self.onnx_path.is_file():
            from core.models import ModelError

            raise ModelError(f"{model_dir} is an ONNX export but {ONNX_FILE} is missing; compress the parent run again.")
        self.config = config
        options = ort.SessionOptions()
        # the same threads as torch in this process: a fair comparison, and no oversubscription beside training
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        # onnxruntime's threads spin-wait between calls by default: they would take the cores from whatever runs
        # next (torch, in a speed comparison made call by call, or the dashboard beside the HTTP API)
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(self.onnx_path), options, providers=["CPUExecutionProvider"])
        self.input_names = [i.name for i in self.session.get_inputs()]

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, **_: Any) -> types.SimpleNamespace:
        given = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
        if given["token_type_ids"] is None:
            given["token_type_ids"] = torch.zeros_like(input_ids)
        if given["attention_mask"] is None:
            given["attention_mask"] = torch.ones_like(input_ids)
        feeds = {name: given[name].cpu().numpy().astype(np.int64) for name in self.input_names}
        (logits,) = self.session.run(["logits"], feeds)
        return types.SimpleNamespace(logits=torch.from_numpy(logits))


def require_onnxruntime() -> Any:
    from core.compress import CompressionError

    try:
        import onnxruntime
    except ImportError:
        raise CompressionError("onnxruntime is not installed, and ONNX models need it. Install it with "
                               "`pip install onnxruntime` (Tuneboard's requirements.txt pins the tested version).") from None
    return onnxruntime


def export(model: torch.nn.Module, tokenizer: Any, task: str, out_dir: Path, *, quantize: bool,
           check_texts: list[str]) -> dict[str, Any]:
    """Write ``out_dir/model.onnx`` (int8 when ``quantize``) from ``model``; return what the export found.

    Raises CompressionError when onnxruntime is missing or the float export disagrees with ``model``.
    """
    from core.cls_top_layer import restore_top_layer, use_cls_only_top_layer
    from core.compress import CompressionError

    ort = require_onnxruntime()
    model = model.eval()
    if hasattr(model, "set_attn_implementation"):
        model.set_attn_implementation("eager")
    sample = tokenizer(check_texts[:2] or ["a text", "another text"], padding=True, truncation=True,
                       max_length=64, return_tensors="pt")
    names = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in sample]
    first_token_only = task != "token" and use_cls_only_top_layer(model)
    batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence")
    float_path = out_dir / ("model.float.onnx" if quantize else ONNX_FILE)
    import logging
    import warnings

    logging.getLogger("torch.onnx").setLevel(logging.ERROR)  # "torchvision is not installed. Skipping ..." x4
    try:
        with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
            warnings.simplefilter("ignore")  # the exporter's notes on its own internals
            program = torch.onnx.export(model, (), kwargs={n: sample[n] for n in names}, input_names=names,
                                        output_names=["logits"], dynamic_shapes={n: {0: batch, 1: sequence} for n in names},
                                        dynamo=True, external_data=False, verbose=False)
            program.save(str(float_path), external_data=False)
    except Exception as exc:  # the exporter's own errors are many and deep: say what failed, keep the cause
        raise CompressionError(f"torch.onnx.export could not export this {type(model).__name__} "
                               f"({type(exc).__name__}: {str(exc)[:300]}); int8 works on every model.") from exc
    finally:
        if first_token_only:
            restore_top_layer(model)
    check = tokenizer(check_texts, padding=True, truncation=True, max_length=128, return_tensors="pt")
    with torch.no_grad():
        expected = model(**{n: check[n] for n in names}).logits.float().numpy()
    got = _run(ort, float_path, {n: check[n].numpy() for n in names})
    difference = float(np.abs(got - expected).max())
    if difference > EXPORT_TOLERANCE:
        float_path.unlink(missing_ok=True)
        raise CompressionError(f"the ONNX export gives other logits than the model (largest difference {difference:.2e} "
                               f"> {EXPORT_TOLERANCE}); it was not kept. Use int8 for this model.")
    facts: dict[str, Any] = {"inputs": names, "float_max_abs_diff": difference}
    if quantize:
        facts["int8_agreement"] = _quantize(ort, float_path, out_dir / ONNX_FILE, {n: check[n].numpy() for n in names},
                                            expected, task)
        float_path.unlink()
    (out_dir / PREDICT_FILE).write_text(PREDICT_PY, encoding="utf-8")
    return facts


def _run(ort: Any, path: Path, feeds: dict[str, np.ndarray]) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(["logits"], {k: v.astype(np.int64) for k, v in feeds.items()})[0]


def _quantize(ort: Any, float_path: Path, out_path: Path, feeds: dict[str, np.ndarray], expected: np.ndarray,
              task: str) -> float:
    """Quantize ``float_path`` to ``out_path``; the share of the check texts' predictions that stay the same."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    proto = onnx.load(str(float_path))
    del proto.graph.value_info[:]  # see the module docstring
    bare = float_path.with_name("model.bare.onnx")
    onnx.save(proto, str(bare))
    try:
        import logging

        logging.getLogger().setLevel(max(logging.getLogger().level, logging.ERROR))  # "consider pre-processing"
        quantize_dynamic(str(bare), str(out_path), weight_type=QuantType.QInt8)
    finally:
        bare.unlink(missing_ok=True)
    got = _run(ort, out_path, feeds)
    if task == "regression":
        return float(np.mean(np.abs(got - expected) <= 0.1 * (np.abs(expected) + 1e-6)))
    if task == "multi_label":
        return float(np.mean((got > 0) == (expected > 0)))
    return float(np.mean(got.argmax(-1) == expected.argmax(-1)))


PREDICT_PY = '''"""Predict with this exported model: onnxruntime and the tokenizer alone (no torch, no transformers).

    pip install onnxruntime tokenizers numpy
    python predict.py "a first text" "another text"      # or: python predict.py --file texts.txt (a text a line)

Prints one JSON object per text. For NER (tuneboard_task "token") each text is split into words at whitespace;
for a sentence pair (tuneboard_task "pair") each text is the two texts separated by a tab.
"""
import json
import sys
from pathlib import Path

import numpy as np
import onnxruntime
from tokenizers import Tokenizer

HERE = Path(__file__).resolve().parent
config = json.loads((HERE / "config.json").read_text(encoding="utf-8"))
labels = [config["id2label"][str(i)] for i in range(len(config["id2label"]))]
task, settings = config.get("tuneboard_task", "single_label"), config["tuneboard_compression"]["export"]
tokenizer = Tokenizer.from_file(str(HERE / "tokenizer.json"))
tokenizer.enable_truncation(settings["max_length"])
tokenizer.enable_padding(pad_id=config.get("pad_token_id") or 0)
session = onnxruntime.InferenceSession(str(HERE / "model.onnx"), providers=["CPUExecutionProvider"])


def predict(texts):
    words = [t.split() for t in texts] if task == "token" else None
    inputs = words or ([tuple(t.split("\\t", 1)) if "\\t" in t else t for t in texts] if task == "pair" else texts)
    encodings = tokenizer.encode_batch(inputs, is_pretokenized=bool(words))
    feeds = {"input_ids": [e.ids for e in encodings], "attention_mask": [e.attention_mask for e in encodings],
             "token_type_ids": [e.type_ids for e in encodings]}
    names = [i.name for i in session.get_inputs()]
    logits = session.run(["logits"], {n: np.array(feeds[n], dtype=np.int64) for n in names})[0]
    for i, row in enumerate(logits):
        if task == "token":  # the first sub-token of each word decides
            tags, seen = ["O"] * len(words[i]), set()
            for position, word in enumerate(encodings[i].word_ids):
                if word is not None and word not in seen:
                    seen.add(word)
                    tags[word] = labels[int(row[position].argmax())]
            yield {"text": texts[i], "tags": tags}
        elif task == "regression":
            yield {"text": texts[i], "predicted": float(row[0])}
        elif task == "multi_label":
            probs = 1 / (1 + np.exp(-row))
            yield {"text": texts[i], "predicted": [n for n, p in zip(labels, probs) if p > settings["threshold"]]}
        else:
            probs = np.exp(row - row.max()) / np.exp(row - row.max()).sum()
            yield {"text": texts[i], "predicted": labels[int(probs.argmax())], "confidence": float(probs.max())}


if __name__ == "__main__":
    args = sys.argv[1:]
    texts = Path(args[1]).read_text(encoding="utf-8").splitlines() if args[:1] == ["--file"] else args
    for result in predict([t for t in texts if t.strip()]):
        print(json.dumps(result, ensure_ascii=False))
'''
