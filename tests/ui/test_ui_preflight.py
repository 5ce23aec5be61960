"""The Strategy page's every-strategy pre-flight table (ui.preflight.strategy_table)."""

from __future__ import annotations

from ui.preflight import strategy_table


def test_the_table_has_a_line_per_strategy_and_keeps_a_refusal_with_its_reason():
    rows = [
        {"kind": "full", "trainable_params": 22_713_218, "trainable_percent": 100.0, "learning_rate": 5e-5,
         "epoch_seconds": 95.0, "seconds_per_step": 0.2},
        {"kind": "freeze", "error": "freeze_layers=7 but the model has only 6 encoder layers"},
        {"kind": "lora", "trainable_params": 74_498, "trainable_percent": 0.3279, "learning_rate": 1e-3,
         "epoch_seconds": 3725.0, "seconds_per_step": 0.1},
    ]
    table = strategy_table(rows)
    assert table["strategy"].tolist() == ["full", "freeze", "lora"]
    assert table.loc[0, "trainable parameters"] == 22_713_218 and table.loc[2, "learning rate"] == 1e-3
    assert table.loc[0, "time per epoch"] == "1 min 35 s" and table.loc[2, "time per epoch"] == "1 h 02 min"
    refused = table.loc[1]
    assert "only 6 encoder layers" in refused["note"] and refused["time per epoch"] == "—"
    assert refused[["trainable parameters", "trainable share %", "learning rate"]].isna().all()
    assert table.loc[0, "note"] == table.loc[2, "note"] == ""
