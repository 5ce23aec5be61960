"""The saved ``model/`` folder of a run: how it is written, how it is read back, and what marks it.

``model/`` is what ``save_pretrained`` writes (safetensors weights, ``config.json`` with the label
maps ``id2label``/``label2id``), the tokenizer beside it, and these keys of our own in ``config.json``:

* ``tuneboard_task`` — the run's task, so :func:`load_saved` picks the right head class;
* ``tuneboard_adapter`` — ``{"kind", "reduction_factor"}`` of bottleneck adapters (core.adapters),
  whose weights are in the folder's safetensors and which :func:`load_saved` puts back in;
* ``tuneboard_peft: "prefix"`` — a prefix-tuned model: the folder is the base model with the trained
  head, ``adapter/`` holds the prefix (peft), and :func:`load_saved` wraps the model with it;
* ``tuneboard_base_model_type`` — the plain-transformers marker (:func:`guard_plain_loading`);
* ``tuneboard_compression`` — ``{"method", "options"}`` of a derived run's compressed model
  (core.compress): :func:`load_saved` loads the fp32 weights and compresses them again (int8), or
  runs the folder's ``model.onnx`` through onnxruntime (onnx, onnx-int8; core.onnx_export).

Per strategy (``StrategyPlan.save_format``):

* plain strategies: ``save_pretrained`` — loads with ``AutoModelFor…from_pretrained`` and ``pipeline()``.
* lora / adalora / ia3 (``peft_merge``): the merged full model (same as plain) plus ``adapter/``
  (the peft adapter and the head, as peft saves them).
* prefix (``peft_prefix``): the base model with the trained head plus ``adapter/``; needs peft to predict.
* adapter: full weights including the adapters.

Plain transformers would load the last two as the base model without the prefix or the adapters,
and predict something else without a word. So their ``config.json`` names a model type of our own
(``tuneboard-<kind>``, the original type kept under ``tuneboard_base_model_type``): plain loading
stops with "does not recognize this architecture", and the folder's README.md says how to load it.

Nothing here imports torch, transformers or peft at module level: the dashboard asks
:func:`plain_loadable` at page load.
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core import faults, runs
from core.models import ModelError, quiet_transformers

if TYPE_CHECKING:
    import torch

    from core.strategy_plan import StrategyPlan

TASK_KEY = "tuneboard_task"
ADAPTER_KEY = "tuneboard_adapter"
PEFT_KEY = "tuneboard_peft"
BASE_TYPE_KEY = "tuneboard_base_model_type"
COMPRESSION_KEY = "tuneboard_compression"  # core.compress.MARKER: how a derived run's model is rebuilt at load
GUARDED_TYPE = "tuneboard-{kind}"  # config.json's model_type for folders only Tuneboard can rebuild
ADAPTER_DIR = "adapter"
README = "README.md"


# --- writing ------------------------------------------------------------------------------------

def save(plan: StrategyPlan, model: torch.nn.Module, out_dir: str | Path, *, tokenizer: Any = None,
         task: str | None = None) -> None:
    """Write ``model/`` for inference: the model as ``plan.save_format`` says, its markers, the tokenizer.

    ``task`` is recorded as ``tuneboard_task`` (the model's config already holds the label maps). The
    folder is written beside ``out_dir`` and swapped in whole (core.runs.swap_in): a crash halfway
    leaves no half-written model where a reader would load it.
    """
    final = Path(out_dir)
    out_dir = final.with_name(final.name + ".tmp")
    shutil.rmtree(out_dir, ignore_errors=True)
    if task is not None:
        setattr(model.config, TASK_KEY, task)
    if plan.save_format == "adapter":
        setattr(model.config, ADAPTER_KEY, dict(plan.save_options))
    if plan.save_format in ("peft_merge", "peft_prefix"):
        _save_peft(plan, model, out_dir)
    else:  # "plain" and "adapter"
        model.save_pretrained(out_dir, safe_serialization=True)
    if plan.save_format in ("peft_prefix", "adapter"):
        guard_plain_loading(out_dir, plan.kind)
    faults.point("final_save")
    if tokenizer is not None:
        tokenizer.save_pretrained(out_dir)
    runs.swap_in(out_dir, final)


def _save_peft(plan: StrategyPlan, model: torch.nn.Module, out_dir: Path) -> None:
    """model/ = a plain transformers model (merged for LoRA/AdaLoRA/IA3), model/adapter/ = the peft adapter + head."""
    import copy

    if plan.save_format == "peft_merge":
        plain = copy.deepcopy(model).merge_and_unload()
    else:  # prefix: nothing to merge; the base model with the trained head, and a marker for load_saved
        plain = unwrap_heads(copy.deepcopy(model).get_base_model())
        setattr(plain.config, PEFT_KEY, "prefix")
    plain.save_pretrained(out_dir, safe_serialization=True)
    with warnings.catch_warnings():
        # AdaLoRA saves a module pruned to rank 0 as a zero-sized tensor, which peft mistakes for an
        # unsharded FSDP/ZeRO-3 save and warns about.
        warnings.filterwarnings("ignore", message=".*LoRA tensor.*invalid shape")
        model.save_pretrained(out_dir / ADAPTER_DIR, safe_serialization=True)


def unwrap_heads(model: torch.nn.Module) -> torch.nn.Module:
    """Replace peft's head wrappers (ModulesToSaveWrapper) in ``model`` by the trained copy they hold."""
    from peft.utils.other import AuxiliaryTrainingWrapper

    for name, module in list(model.named_modules()):
        if isinstance(module, AuxiliaryTrainingWrapper):
            parent = model.get_submodule(name.rpartition(".")[0]) if "." in name else model
            setattr(parent, name.rpartition(".")[2], module.unload_and_optionally_merge_module(False, False, None))
    return model


def plain_loadable(model_dir: str | Path) -> bool:
    """Whether plain transformers (``from_pretrained``, ``pipeline()``) loads ``model_dir`` as trained."""
    return BASE_TYPE_KEY not in json.loads((Path(model_dir) / "config.json").read_text())


def saved_format(model_config: dict[str, Any]) -> str:
    """How a saved ``config.json`` says its weights were written: ``prefix``, ``adapter`` or ``plain``."""
    if model_config.get(PEFT_KEY) == "prefix":
        return "prefix"
    return "adapter" if model_config.get(ADAPTER_KEY) else "plain"


def guard_plain_loading(model_dir: Path, kind: str) -> None:
    """Make plain transformers refuse ``model_dir`` instead of loading it without the strategy's extras."""
    path = model_dir / "config.json"
    config = json.loads(path.read_text())
    config[BASE_TYPE_KEY] = config["model_type"]
    config["model_type"] = GUARDED_TYPE.format(kind=kind)
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    (model_dir / README).write_text(
        f"# A Tuneboard model fine-tuned with the `{kind}` strategy\n\n"
        f"Its weights include {'bottleneck adapters' if kind == 'adapter' else 'a trained prefix (in adapter/)'}, "
        "which plain `transformers` can't express: loaded with `AutoModel…from_pretrained` or `pipeline()` it would be "
        f"the base `{config[BASE_TYPE_KEY]}` model without them and predict something else. That is why `config.json` "
        f"names the model type `{config['model_type']}`, which plain transformers refuses.\n\n"
        "Load it with Tuneboard:\n\n```python\nfrom core.inference import Predictor\n"
        "predictor = Predictor(\"path/to/this/folder\")\nprint(predictor.predict([\"a text\"]))\n```\n\n"
        "or `python -m core predict RUN_DIR --data texts.csv --out predictions.csv`.\n"
    )


# --- reading ------------------------------------------------------------------------------------

def load_saved(model_dir: str | Path) -> tuple[Any, Any, str]:
    """Load a Tuneboard run's ``model/`` folder: (model, tokenizer, task). ModelError if it can't."""
    from transformers import (
        AutoModelForSequenceClassification,
        AutoModelForTokenClassification,
        AutoTokenizer,
    )

    quiet_transformers()
    model_dir = Path(model_dir)
    if not (model_dir / "config.json").exists():
        raise ModelError(f"{model_dir} holds no saved model (no config.json); the run may have failed before saving.")
    config = json.loads((model_dir / "config.json").read_text())
    is_token = any("TokenClassification" in a for a in config.get("architectures", []))
    task = config.get(TASK_KEY) or ("token" if is_token else "single_label")
    if (config.get(COMPRESSION_KEY) or {}).get("method") == "ensemble":
        raise ModelError(f"{model_dir} is an ensemble of several runs' models: open it through its run "
                         "(core.evaluate.run_predictor(run_dir), python -m core predict RUN).")
    if config.get(COMPRESSION_KEY):
        from core.compress import CompressionError, folder_method

        try:
            exported = folder_method(config[COMPRESSION_KEY]).made == "export"
        except CompressionError as exc:
            raise ModelError(f"{model_dir}: {exc}") from None
        if exported:  # no torch weights: the folder's model.onnx, run by onnxruntime
            from core.onnx_export import OnnxModel

            return OnnxModel(model_dir, _real_config(config)), AutoTokenizer.from_pretrained(model_dir), task
    cls = AutoModelForTokenClassification if task == "token" else AutoModelForSequenceClassification
    model = cls.from_pretrained(model_dir, config=_real_config(config))
    # Strategies whose weights plain transformers can't express (see the module docstring).
    try:
        if config.get(ADAPTER_KEY):
            model = _restore_adapters(model, model_dir, config[ADAPTER_KEY])
        elif config.get(PEFT_KEY) == "prefix":
            model = _load_prefix(model, model_dir)
    except (OSError, ValueError) as exc:
        raise ModelError(f"{model_dir}: could not rebuild the fine-tuned model: {exc}") from None
    if config.get(COMPRESSION_KEY):  # a derived run's compressed model (core.compress)
        from core.compress import CompressionError, apply_at_load

        try:
            model = apply_at_load(model, config[COMPRESSION_KEY])
        except CompressionError as exc:
            raise ModelError(f"{model_dir}: {exc}") from None
    return model, AutoTokenizer.from_pretrained(model_dir), task


def _real_config(config: dict[str, Any]) -> Any:
    """The transformers config of a saved model, undoing :func:`guard_plain_loading` where it applied."""
    from transformers import CONFIG_MAPPING

    base_type = config.get(BASE_TYPE_KEY, config["model_type"])
    return CONFIG_MAPPING[base_type].from_dict({**config, "model_type": base_type})


def _restore_adapters(model: torch.nn.Module, model_dir: Path, marker: dict[str, Any]) -> torch.nn.Module:
    """Rebuild the adapters of a saved model (loaded without them) and load their weights from model_dir."""
    from safetensors.torch import load_file

    from core.adapters import insert_adapters

    insert_adapters(model, marker["kind"], int(marker["reduction_factor"]))
    weights: dict[str, Any] = {}
    for path in sorted(model_dir.glob("*.safetensors")):
        weights.update({k: v for k, v in load_file(str(path)).items() if ".adapter." in k})
    expected = {k for k in model.state_dict() if ".adapter." in k}
    missing = sorted(expected - set(weights))
    if missing:
        raise ValueError(f"{model_dir} is an adapter model but lacks adapter weights, e.g. {missing[0]}")
    model.load_state_dict(weights, strict=False)
    return model


def _load_prefix(model: torch.nn.Module, model_dir: Path) -> torch.nn.Module:
    """Rebuild a prefix-tuned model from model/ (base + head) and model/adapter/."""
    from peft import PeftModel

    adapter = model_dir / ADAPTER_DIR
    if not (adapter / "adapter_config.json").exists():
        raise FileNotFoundError(f"{model_dir} is a prefix-tuned model but {adapter} holds no adapter_config.json")
    return PeftModel.from_pretrained(model, adapter)
