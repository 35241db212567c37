"""tools/compare_runs.py: the side-by-side table and plot of several evaluations."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from s2vnet.errors import InputError

REPO = Path(__file__).resolve().parents[1]


def _tool():
    spec = importlib.util.spec_from_file_location("compare_runs", REPO / "tools" / "compare_runs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _metrics(auto: float, curve: list[float], auc: float) -> dict:
    per_click = {str(k + 1): {"mean": {"dice": d}, "per_class": {"liver": {"dice": d}}} for k, d in enumerate(curve)}
    return {
        "automatic": {"mean": {"dice": auto}, "per_class": {"liver": {"dice": auto}}},
        "interactive": {
            "cvpr25": {
                "clicks": list(range(1, len(curve) + 1)),
                "dice_vs_clicks": curve,
                "per_click": per_click,
                "dsc_auc": auc,
                "nsd_auc": 1.0,
                "final_dsc": curve[-1],
                "final_nsd": 0.5,
            }
        },
    }


def test_compare_runs_writes_one_row_per_run_and_a_plot(tmp_path):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(_metrics(0.2, [0.3, 0.4, 0.5, 0.6, 0.7], 2.0)))
    b.write_text(json.dumps(_metrics(0.25, [0.26, 0.27, 0.28, 0.29, 0.3], 1.1)))
    tool = _tool()
    assert tool.main([f"improved={a}", f"paper={b}", "--save", str(tmp_path / "cmp"), "--per-class"]) == 0
    text = (tmp_path / "cmp.md").read_text()
    assert "| improved | 0.200 | 0.300 | 0.400 | 0.500 | 0.600 | 0.700 | 2.000 |" in text
    assert "| paper | 0.250 | 0.260 |" in text
    assert "| liver | 0.200 | 0.300 | 0.700 | 0.250 | 0.260 | 0.300 |" in text
    assert (tmp_path / "cmp.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(InputError, match="NAME=path"):
        tool.load(str(a))
