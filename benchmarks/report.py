"""Markdown helpers shared by the benchmark sections."""
from __future__ import annotations

from typing import Sequence


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Format a Markdown table; numbers must already be strings or formatted values."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(str(cell) for cell in row) + " |")
    return "\n".join(lines)


def rate(samples_per_second: float) -> str:
    """Format a throughput as e.g. "41.2k"."""
    if samples_per_second >= 1e6:
        return f"{samples_per_second / 1e6:.2f}M"
    if samples_per_second >= 1e3:
        return f"{samples_per_second / 1e3:.1f}k"
    return f"{samples_per_second:.0f}"


def megabytes(num_bytes: float) -> str:
    """Format bytes as MiB with one decimal."""
    return f"{num_bytes / 2 ** 20:.1f}"


def code_block(text: str) -> str:
    return "```\n" + text.rstrip() + "\n```"
