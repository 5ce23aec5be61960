"""Students: a parent run's model with fewer encoder layers (``prune-layers``), and distillation (``distill``).

Both make a student folder inside the derived run (``student/``: ``save_pretrained`` of the parent's
fine-tuned model with some encoder layers removed, its head and label maps kept) and then train it as
a normal run of the loop, whose config names that folder as its model. Dropping whole layers is what
speeds up dense CPU inference; masking weights does not.

Distillation (Hinton et al. 2015) trains on ``alpha·CE(student, gold) + (1−alpha)·T²·KL(teacher/T ‖
student/T)``. The teacher's logits on the training split are computed once, before the first step
(:func:`teacher_logits`), and looked up by row in every batch (:class:`DistillLoss`): the teacher never
runs inside the loop. By default the student is the parent with every other layer kept, the top one
included (it feeds the head the parent trained), as DistilBERT initialised its student from every
other layer of BERT (arXiv 1910.01108).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from core import anatomy
from core.compress import CompressionError

STUDENT_DIR = "student"


def every_other_layer(depth: int) -> list[int]:
    """The layers a default distillation student keeps: the top one, and every other one below it."""
    return sorted(range(depth - 1, -1, -2))


def layers_to_keep(drop: str, depth: int) -> list[int]:
    """Parse ``prune-layers``' ``drop`` (``top:half``, ``top:N`` or ``1,3,5``) into the layers kept, bottom first."""
    spec = drop.replace(" ", "")
    try:
        if spec.startswith("top:"):
            n = depth // 2 if spec == "top:half" else int(spec[4:])
            dropped = set(range(depth - n, depth))
        else:
            dropped = {int(part) for part in spec.split(",") if part}
    except ValueError:
        raise CompressionError(f"options.drop={drop!r}: write top:half, top:N (drop the N highest layers) or layer numbers "
                               f"from 0 to {depth - 1}, e.g. 1,3") from None
    if not dropped or any(i < 0 or i >= depth for i in dropped):
        raise CompressionError(f"options.drop={drop!r}: the model has layers 0 to {depth - 1}; drop at least one of "
                               "them, e.g. top:1")
    kept = [i for i in range(depth) if i not in dropped]
    if not kept:
        raise CompressionError(f"options.drop={drop!r} drops all {depth} layers; keep at least one.")
    return kept


def drop_layers(model: torch.nn.Module, keep: list[int]) -> torch.nn.Module:
    """``model`` (changed in place) with only the encoder layers ``keep``; its config says the new depth."""
    parts = anatomy.of(model)
    if parts.layer_list is None:
        raise CompressionError("ALBERT shares one layer across its depth: there is no layer to drop.")
    anatomy._set_path(parts.backbone, parts.layer_list, torch.nn.ModuleList([parts.layers[i] for i in keep]))
    config = parts.model.config
    for name in ("num_hidden_layers", "n_layers"):  # BERT family, DistilBERT
        if hasattr(config, name):
            setattr(config, name, len(keep))
    for index, layer in enumerate(parts.layers[i] for i in keep):  # attention modules that know their depth
        for module in layer.modules():
            if hasattr(module, "layer_idx"):
                module.layer_idx = index
    return model


def write_student(parent_model_dir: Path, out_dir: Path, choose: Callable[[int], list[int]]) -> dict[str, Any]:
    """Save the parent's model with only the layers ``choose(depth)`` to ``out_dir``; return what was kept."""
    from core.model_format import load_saved

    model, tokenizer, _ = load_saved(parent_model_dir)
    depth = len(anatomy.of(model).layers)
    keep = choose(depth)
    drop_layers(model, keep)
    for key in [k for k in vars(model.config) if k.startswith("tuneboard_")]:  # a plain folder: the run saves its own
        delattr(model.config, key)
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    return {"parent_layers": depth, "kept_layers": keep}


def check_same_tokenizer(student: Any, teacher: Any, student_name: str) -> None:
    """Distillation looks teacher logits up by token position: the two tokenizers must split text alike."""
    if student.get_vocab() != teacher.get_vocab() or type(student).__name__ != type(teacher).__name__:
        raise CompressionError(f"the student {student_name!r} uses another tokenizer than the parent (its vocabulary "
                               "differs), so the teacher's per-token predictions can't be matched to it. Pick a student "
                               "of the parent's family (same vocabulary), or leave options.student empty.")


def distill_loss(config: Any, parent_dir: Path, train_set: Any, collator: Any, hard_loss: Any, options: Any) -> DistillLoss:
    """The student's training loss: the parent's logits on the training split, computed once, softened."""
    from core import runs
    from core.model_format import load_saved

    teacher, _, _ = load_saved(parent_dir / runs.MODEL_DIR)
    logits = teacher_logits(teacher, train_set, collator, config.train.batch_size * 2)
    return DistillLoss(hard_loss, logits, config.task, options.alpha, options.temperature)


@torch.inference_mode()
def teacher_logits(model: torch.nn.Module, dataset: Any, collator: Any, batch_size: int) -> list[torch.Tensor]:
    """The teacher's logits for every row of ``dataset`` (an EncodedSplit), in row order, fp32 on the CPU.

    A sequence task gives one (labels,) vector per row; a token task one (row length, labels) matrix.
    """
    from core.tokenize import eval_batches

    model.eval()
    out: list[Any] = [None] * len(dataset)
    for indices in eval_batches(dataset.lengths, batch_size):
        batch = collator([dataset[i] for i in indices])
        batch.pop("labels")
        logits = model(**batch).logits.float()
        for j, row in enumerate(indices):
            out[row] = logits[j, : int(dataset.lengths[row])].clone() if logits.dim() == 3 else logits[j].clone()
    return out


class DistillLoss:
    """The training loss of a distillation student: ``alpha·hard + (1−alpha)·T²·KL`` on cached teacher logits."""

    def __init__(self, hard_loss: Any, teacher: list[torch.Tensor], task: str, alpha: float, temperature: float):
        self.hard_loss, self.teacher, self.task = hard_loss, teacher, task
        self.alpha, self.temperature = alpha, temperature

    def targets(self, indices: list[int], like: torch.Tensor) -> torch.Tensor:
        """The batch's teacher logits, padded (token tasks) to the student's sequence length."""
        rows = [self.teacher[i] for i in indices]
        if self.task != "token":
            return torch.stack(rows).to(like.device)
        padded = like.new_zeros(like.shape, dtype=torch.float32)
        for j, row in enumerate(rows):
            padded[j, : row.shape[0]] = row[: like.shape[1]]
        return padded

    def __call__(self, logits: torch.Tensor, labels: torch.Tensor, indices: list[int]) -> torch.Tensor:
        hard = self.hard_loss(logits, labels)
        teacher, t = self.targets(indices, logits), self.temperature
        student = logits.float() / t
        if self.task == "multi_label":  # independent labels: a binary KL per label
            soft = F.binary_cross_entropy_with_logits(student, torch.sigmoid(teacher / t)) - F.binary_cross_entropy_with_logits(
                teacher / t, torch.sigmoid(teacher / t))
        elif self.task == "token":  # per real token: padding and ignored sub-tokens don't count
            keep = labels.flatten() != -100
            soft = F.kl_div(F.log_softmax(student.flatten(0, 1)[keep], -1), F.log_softmax(teacher.flatten(0, 1)[keep] / t, -1),
                            log_target=True, reduction="batchmean")
        else:
            soft = F.kl_div(F.log_softmax(student, -1), F.log_softmax(teacher / t, -1), log_target=True, reduction="batchmean")
        return self.alpha * hard + (1 - self.alpha) * t * t * soft
