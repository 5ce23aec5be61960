"""core.anatomy on tiny random models of each layout: the parts are found, and every parameter is in exactly one."""

from __future__ import annotations

import pytest
import torch
from transformers import (
    AlbertConfig,
    AlbertForSequenceClassification,
    BertConfig,
    BertForSequenceClassification,
    DistilBertConfig,
    DistilBertForSequenceClassification,
    ElectraConfig,
    ElectraForSequenceClassification,
    RobertaConfig,
    RobertaForSequenceClassification,
)

from core import anatomy
from core.config import RunConfig, StrategyConfig, TrainConfig
from core.frozen_cache import FrozenPrefixCache, frozen_prefix_modules, supports
from core.strategies import build_strategy
from core.tokenize import PaddingCollator
from tests.support.synthetic import synthetic

SIZE = {"vocab_size": 64, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64,
        "max_position_embeddings": 64, "num_labels": 2}
# ELECTRA and ALBERT with an embedding size below the hidden size: their projection belongs to the embeddings.
MODELS = {
    "bert": lambda: BertForSequenceClassification(BertConfig(**SIZE)),
    "roberta": lambda: RobertaForSequenceClassification(RobertaConfig(**SIZE, pad_token_id=1)),
    "distilbert": lambda: DistilBertForSequenceClassification(DistilBertConfig(
        vocab_size=64, dim=32, n_layers=2, n_heads=2, hidden_dim=64, max_position_embeddings=64, num_labels=2)),
    "albert": lambda: AlbertForSequenceClassification(AlbertConfig(**SIZE, embedding_size=16)),
    "electra": lambda: ElectraForSequenceClassification(ElectraConfig(**SIZE, embedding_size=16)),
}
# (number of distinct layers, embedding modules' prefixes, head prefixes, top-of-backbone prefixes)
EXPECTED = {
    "bert": (2, ["bert.embeddings."], ["classifier."], ["bert.pooler."]),
    "roberta": (2, ["roberta.embeddings."], ["classifier."], []),
    "distilbert": (2, ["distilbert.embeddings."], ["pre_classifier.", "classifier."], []),
    # ALBERT's two depths run one shared layer.
    "albert": (1, ["albert.embeddings.", "albert.encoder.embedding_hidden_mapping_in."], ["classifier."], ["albert.pooler."]),
    "electra": (2, ["electra.embeddings.", "electra.embeddings_project."], ["classifier."], []),
}


def make(arch: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return MODELS[arch]()


def names_of(named) -> list[str]:
    return [n for n, _ in named]


def assert_partition(model: torch.nn.Module, parts: anatomy.Parts) -> None:
    placed = names_of(parts.all())
    assert len(placed) == len(set(placed)), "a parameter is in two parts"
    assert sorted(placed) == sorted(n for n, _ in model.named_parameters()), "a parameter is in no part"


@pytest.mark.parametrize("arch", list(MODELS))
def test_parts_of_each_layout_cover_every_parameter_once(arch):
    model = make(arch)
    body = anatomy.of(model)
    n_layers, embedding_prefixes, head_prefixes, top_prefixes = EXPECTED[arch]
    assert len(body.layers) == len(anatomy.encoder_layers(model)) == n_layers
    assert body.shared_layers == (arch == "albert") and (body.layer_list is None) == (arch == "albert")
    assert [body.prefix(m) for m in anatomy.embeddings(model)] == embedding_prefixes
    assert [body.prefix(m) for m in anatomy.head(model)] == head_prefixes
    assert [body.prefix(m) for m in body.top] == top_prefixes

    parts = anatomy.split_parts(model)
    assert_partition(model, parts)
    assert len(parts.layers) == n_layers and all(parts.layers) and not parts.other
    # Each part is exactly the parameters of its modules.
    by_module = {
        "embeddings": [n for m in body.embeddings for n, _ in m.named_parameters(prefix=body.prefix(m)[:-1])],
        "head": [n for m in body.head for n, _ in m.named_parameters(prefix=body.prefix(m)[:-1])],
        "top": [n for m in body.top for n, _ in m.named_parameters(prefix=body.prefix(m)[:-1])],
    }
    assert sorted(names_of(parts.embeddings)) == sorted(by_module["embeddings"])
    assert sorted(names_of(parts.head)) == sorted(by_module["head"])
    assert sorted(names_of(parts.top)) == sorted(by_module["top"])
    for layer, named in zip(body.layers, parts.layers, strict=True):
        assert sorted(names_of(named)) == sorted(n for n, _ in layer.named_parameters(prefix=body.prefix(layer)[:-1]))


def test_peft_wrapped_models_keep_their_parts():
    from peft import LoraConfig, PrefixTuningConfig, TaskType, get_peft_model

    lora = get_peft_model(make("bert"), LoraConfig(task_type=TaskType.SEQ_CLS, r=2, target_modules=["query", "value"]))
    body = anatomy.of(lora)
    assert len(body.layers) == 2 and body.prefix(body.layers[0]) == "base_model.model.bert.encoder.layer.0."
    parts = anatomy.split_parts(lora)
    assert_partition(lora, parts)
    assert any("lora_A" in n for n in names_of(parts.layers[1]))
    assert any("modules_to_save" in n for n in names_of(parts.head)) and not parts.other

    prefix = get_peft_model(make("bert"), PrefixTuningConfig(task_type=TaskType.SEQ_CLS, num_virtual_tokens=3))
    parts = anatomy.split_parts(prefix)
    assert_partition(prefix, parts)
    assert names_of(parts.other) and all(n.startswith("prompt_encoder.") for n in names_of(parts.other))


def test_other_layouts_are_refused_by_name():
    from transformers import GPT2Config, GPT2ForSequenceClassification

    with pytest.raises(anatomy.AnatomyError, match="GPT2ForSequenceClassification is not laid out like a BERT-family"):
        anatomy.of(GPT2ForSequenceClassification(GPT2Config(vocab_size=64, n_embd=32, n_layer=1, n_head=2)))


def test_module_names_relative_to_their_layer():
    bert = anatomy.layer_relative_names(make("bert"))
    assert {"attention.self.query", "attention.output.dense", "intermediate.dense", "output.dense", "pooler.dense"} <= set(bert)
    assert not any(".layer." in n or n[0].isdigit() for n in bert)
    assert "attention.q_lin" in anatomy.layer_relative_names(make("distilbert"))
    albert = anatomy.layer_relative_names(make("albert"))
    assert "attention.query" in albert and "encoder.embedding_hidden_mapping_in" in albert


@pytest.mark.parametrize("arch", ["distilbert", "electra", "roberta"])
def test_frozen_layer_cache_computes_what_the_model_does(arch):
    # As tests/test_speedups.py does for BERT: the other layouts' embeddings (ELECTRA's projection) and layer lists.
    model = make(arch)
    plan = build_strategy(model, RunConfig(strategy=StrategyConfig(kind="freeze", freeze_layers=1)))
    assert supports(model, 1) and len(frozen_prefix_modules(model, 1)) == len(anatomy.embeddings(model)) + 1
    model.eval()
    data = synthetic(10, 3)
    batch = {k: v for k, v in PaddingCollator(0, "single_label", pad_to_multiple_of=8)([data[i] for i in range(10)]).items()
             if k != "labels"}
    expected = model(**batch).logits
    cache = FrozenPrefixCache(plan.model, 1)
    assert torch.allclose(cache.forward(list(range(10)), batch), expected, atol=1e-5)
    assert torch.allclose(cache.forward(list(range(10)), batch), expected, atol=1e-5) and cache.computed == 10
    assert len(anatomy.encoder_layers(model)) == 2  # the model is whole again afterwards


def test_layer_wise_strategies_on_distilbert_and_electra():
    config = RunConfig(strategy=StrategyConfig(kind="llrd", layer_decay=0.5), train=TrainConfig(learning_rate=1e-3))
    groups = {g["name"]: g["lr"] for g in build_strategy(make("distilbert"), config).describe()["groups"]}
    assert groups["head"] == 1e-3 and groups["layer 1"] == 5e-4 and groups["layer 0"] == 2.5e-4 and groups["embeddings"] == 1.25e-4
    # ELECTRA's embedding projection sits below layer 0: freeze freezes it with the embeddings.
    electra = make("electra")
    build_strategy(electra, RunConfig(strategy=StrategyConfig(kind="freeze", freeze_layers=1)))
    trainable = {n for n, p in electra.named_parameters() if p.requires_grad}
    assert not any(n.startswith(("electra.embeddings", "electra.encoder.layer.0.")) for n in trainable)
    assert any(n.startswith("electra.encoder.layer.1.") for n in trainable)


def test_torch_wrappers_are_looked_through():
    # The loop hands the frozen-layer helpers the accelerate-prepared model: DistributedDataParallel across processes.
    wrapped = torch.nn.DataParallel(make("bert"))
    body = anatomy.of(wrapped)
    assert len(body.layers) == 2 and body.prefix(body.layers[1]) == "module.bert.encoder.layer.1."
    assert_partition(wrapped, anatomy.split_parts(wrapped))
    assert len(frozen_prefix_modules(wrapped, 1)) == 2
