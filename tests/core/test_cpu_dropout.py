"""CPU dropout: the same distribution as torch's dropout, on every dropout of the model, and nothing else changed."""

from __future__ import annotations

import importlib
import inspect
import json

import pytest
import torch

import core.cpu_dropout
from core.config import ModelConfig
from core.cpu_dropout import EAGER, EAGER_MODEL_TYPES, LANES, CpuDropout, cpu_dropout, use_cpu_dropout
from core.models import load_model


@pytest.mark.parametrize("p", [0.1, 0.25, 0.5])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_keep_rate_scale_and_expectation(p, dtype):
    torch.manual_seed(0)
    x = torch.ones(1000, 1001, dtype=dtype)  # an odd element count: the last int64 draw is partly used
    y = cpu_dropout(x, p)
    kept = (y != 0).float()
    assert y.shape == x.shape and y.dtype == dtype
    # 1,001,000 Bernoulli draws: the keep rate's standard deviation is below 5e-4; 0.003 is 6 of them.
    assert kept.mean().item() == pytest.approx(1 - p, abs=0.003)
    expected_scale = torch.tensor(LANES / (LANES - round(p * LANES)), dtype=dtype).item()
    assert set(y.unique().tolist()) == {0.0, expected_scale}
    assert y.float().mean().item() == pytest.approx(1.0, abs=0.01)


def test_neighbouring_elements_are_independent():
    # Four mask elements share one 64-bit draw; each must still be its own coin: P(both dropped) = p^2.
    torch.manual_seed(1)
    dropped = cpu_dropout(torch.ones(400_000), 0.5) == 0
    pairs = dropped.view(-1, 4)
    for a, b in [(0, 1), (1, 2), (2, 3)]:
        assert (pairs[:, a] & pairs[:, b]).float().mean().item() == pytest.approx(0.25, abs=0.005)
    assert dropped.view(-1, 4).float().mean(0).sub(0.5).abs().max().item() < 0.005  # no lane is biased


def test_seeded_reproducible_and_fresh_per_call():
    x = torch.ones(64, 64)
    torch.manual_seed(7)
    a, b = cpu_dropout(x, 0.1), cpu_dropout(x, 0.1)
    torch.manual_seed(7)
    assert torch.equal(cpu_dropout(x, 0.1), a)
    assert not torch.equal(a, b)


def test_gradient_is_the_mask_times_the_scale():
    x = torch.randn(32, 48, requires_grad=True)
    y = cpu_dropout(x, 0.2)
    y.sum().backward()
    scale = LANES / (LANES - round(0.2 * LANES))
    assert torch.allclose(x.grad, (y != 0).float() * scale)


def test_eval_mode_and_zero_rate_return_the_input():
    x = torch.randn(4, 8)
    assert cpu_dropout(x, 0.1, training=False) is x and cpu_dropout(x, 0.0) is x
    module = CpuDropout(0.1).eval()
    assert module(x) is x


def test_model_every_dropout_goes_through_it_and_eval_outputs_are_unchanged(monkeypatch, tmp_path):
    torch.manual_seed(0)
    model = load_model(ModelConfig(num_layers=2), "single_label", ["neg", "pos"])
    before = sum(type(m) is torch.nn.Dropout for m in model.modules())
    batch = {"input_ids": torch.tensor([[101, 2023, 2003, 1037, 3231, 102], [101, 2742, 102, 0, 0, 0]]),
             "attention_mask": torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0]])}
    model.eval()
    with torch.no_grad():
        reference = model(**batch).logits

    assert use_cpu_dropout(model) == before
    assert model.config._attn_implementation == EAGER
    assert not any(type(m) is torch.nn.Dropout for m in model.modules())
    with torch.no_grad():  # eval mode, padded rows: the same logits as SDPA attention
        assert torch.allclose(model(**batch).logits, reference, atol=1e-5)

    # Training: every dropout draws its mask here, the attention probabilities' too
    # (embeddings 1 + per layer attention, attention output, FFN output 3 x 2 + classifier 1).
    calls = []
    original = core.cpu_dropout.keep_multiplier
    monkeypatch.setattr(core.cpu_dropout, "keep_multiplier", lambda *a: calls.append(a[0]) or original(*a))
    model.train()
    with torch.no_grad():
        model(**batch)
    assert len(calls) == 1 + 3 * 2 + 1
    assert sum(len(shape) == 4 for shape in calls) == 2  # batch x heads x query x key, once per layer

    # Nothing of it is saved: the folder loads in plain transformers with its usual attention.
    model.save_pretrained(tmp_path)
    assert EAGER not in (tmp_path / "config.json").read_text()
    assert "attn_implementation" not in json.loads((tmp_path / "config.json").read_text())


def test_the_attention_it_replaces_is_bert_s_eager_attention_in_every_listed_model_type():
    # A transformers upgrade that changes any of these functions must be looked at before eager_attention copies it.
    reference = inspect.getsource(importlib.import_module("transformers.models.bert.modeling_bert").eager_attention_forward)
    for module_name in EAGER_MODEL_TYPES.values():
        module = importlib.import_module(f"transformers.models.{module_name}.modeling_{module_name}")
        assert inspect.getsource(module.eager_attention_forward) == reference, module_name
    body = inspect.getsource(core.cpu_dropout.eager_attention)
    assert "cpu_dropout(attn_weights, dropout, module.training)" in body
