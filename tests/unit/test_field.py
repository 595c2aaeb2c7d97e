"""The release gates and the field table read a package's metrics.json as evaluate writes it."""

from __future__ import annotations

from model_export.field import FIELD, field_table, release_gates


def scores(exprate: float, le1: float, le2: float = 0.0) -> dict:
    return {"exprate": exprate, "le1": le1, "le2": le2, "count": 1}


def test_a_model_at_the_gates_passes_and_one_below_fails():
    at = {"crohme2014": scores(40.0, 55.0), "crohme2013": scores(45.0, 60.0)}
    assert all(g["passed"] for g in release_gates(at).values())
    below = {"crohme2014": scores(39.9, 60.0), "crohme2013": scores(45.0, 60.0)}
    gates = release_gates(below)
    assert not gates["exprate_2014"]["passed"]
    assert gates["le1_2014"]["passed"] and not gates["exprate_gap_2013_2014"]["passed"]


def test_missing_metrics_fail_every_gate():
    assert not any(g["passed"] for g in release_gates({}).values())
    assert not release_gates({"crohme2014": scores(60, 70)})["exprate_gap_2013_2014"]["passed"]


def test_the_table_puts_the_model_beside_the_field():
    table = field_table({"crohme2014": scores(12.345, 20.0, 30.0)}, "abc123")
    rows = table.splitlines()
    assert "InkTeX abc123" in rows[2] and "| 12.35 | 20.00 | 30.00 | not evaluated |" in rows[2]
    assert len(rows) == 3 + len(FIELD) and "| 53.96 |" in table  # BTTR
