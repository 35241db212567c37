"""Markdown table helpers."""

from __future__ import annotations

import math
from collections.abc import Sequence


def number(value: float | None, digits: int = 2) -> str:
    """``value`` with ``digits`` decimals; "-" for a missing or non-finite value."""
    return "-" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)
