"""The bundled model beside the field's published CROHME results, and the release gates.

The model's numbers are its package's `metrics.json`: what `inktex evaluate` measured on the
full test sets through the serving runtime (the pipeline's evaluate stage), not a re-run.
"""

from __future__ import annotations

# CROHME 2014 ExpRate (%) as the papers report it (single model). The field reports 2016 and
# 2019 beside 2014, not 2013, so the 2013 columns hold only our own numbers.
FIELD = (
    ("WAP (Zhang et al., 2017)", 46.55),
    ("DenseWAP (Zhang et al., 2018)", 50.1),
    ("BTTR (Zhao et al., 2021)", 53.96),
    ("CoMER (Zhao & Gao, 2022)", 59.33),
    ("TAMER (Zhu et al., 2024)", 61.23),
    ("PosFormer (Guan et al., 2024)", 62.68),
)

# Issue 17's release gates (issue 5 set 35 and 50): checked by `make verify`, not in CI.
MIN_EXPRATE_2014 = 40.0
MIN_LE1_2014 = 55.0
MAX_GAP_2013 = 5.0  # points between the 2013 and 2014 ExpRate


def release_gates(metrics: dict) -> dict:
    """{gate: {value, limit, passed}} from a package's metrics.json; missing sets fail."""
    t14, t13 = metrics.get("crohme2014", {}), metrics.get("crohme2013", {})
    gap = abs(t13["exprate"] - t14["exprate"]) if "exprate" in t13 and "exprate" in t14 else None
    checks = {
        "exprate_2014": (t14.get("exprate"), MIN_EXPRATE_2014, ">="),
        "le1_2014": (t14.get("le1"), MIN_LE1_2014, ">="),
        "exprate_gap_2013_2014": (gap, MAX_GAP_2013, "<="),
    }
    return {
        name: {
            "value": None if value is None else round(value, 2),
            "limit": limit,
            "passed": value is not None and (value >= limit if op == ">=" else value <= limit),
        }
        for name, (value, limit, op) in checks.items()
    }


def field_table(metrics: dict, version: str) -> str:
    """Markdown: the bundled model's ExpRate, <=1 and <=2 beside the field's ExpRate."""

    def cell(split: str, key: str) -> str:
        value = metrics.get(split, {}).get(key)
        return "not evaluated" if value is None else f"{value:.2f}"

    lines = [
        "| model | CROHME 2014 ExpRate | ≤1 | ≤2 | CROHME 2013 ExpRate | ≤1 | ≤2 |",
        "|---|---|---|---|---|---|---|",
        f"| **InkTeX {version}** (bundled) | {cell('crohme2014', 'exprate')} | "
        f"{cell('crohme2014', 'le1')} | {cell('crohme2014', 'le2')} | "
        f"{cell('crohme2013', 'exprate')} | {cell('crohme2013', 'le1')} | "
        f"{cell('crohme2013', 'le2')} |",
    ]
    lines += [f"| {name} | {exprate:.2f} | | | | | |" for name, exprate in FIELD]
    return "\n".join(lines) + "\n"
