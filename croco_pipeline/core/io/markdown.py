"""Small helpers to show tables to people (Dagster metadata, the command line)."""

from __future__ import annotations

import base64
from pathlib import Path

import polars as pl


def _cell(value, max_chars: int) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    text = str(value).replace("\n", " ").replace("|", "\\|")
    return text if len(text) <= max_chars else text[: max_chars - 1] + "…"


def markdown_table(frame: pl.DataFrame, max_rows: int = 10, max_chars: int = 80) -> str:
    """A Markdown table of the first rows, long texts cut, for the Dagster UI and the README."""
    shown = frame.head(max_rows)
    header = "| " + " | ".join(shown.columns) + " |"
    rule = "|" + "|".join("---" for _ in shown.columns) + "|"
    body = ["| " + " | ".join(_cell(value, max_chars) for value in row) + " |" for row in shown.iter_rows()]
    more = [f"\n_{frame.height - max_rows} more rows_"] if frame.height > max_rows else []
    return "\n".join([header, rule, *body, *more])


def png_markdown(path: Path, title: str) -> str:
    """A PNG inlined in Markdown, so a plot shows in the Dagster UI wherever the data lives."""
    encoded = base64.b64encode(Path(path).read_bytes()).decode()
    return f"![{title}](data:image/png;base64,{encoded})"
