"""Data files that ship with the package (``croco_pipeline/data/<kind>/<language>.jsonl``) and the
JSON-lines parsing every loader shares, so a broken line is reported the same way everywhere."""

from __future__ import annotations

import json
from importlib import resources


def shipped_languages(kind: str) -> list[str]:
    """Languages with a shipped ``data/<kind>/<language>.jsonl`` file."""
    folder = resources.files("croco_pipeline") / "data" / kind
    return sorted(entry.name.removesuffix(".jsonl") for entry in folder.iterdir() if entry.name.endswith(".jsonl"))


def shipped_text(kind: str, language: str) -> str | None:
    """The text of ``data/<kind>/<language>.jsonl``, or None when the package ships none."""
    resource = resources.files("croco_pipeline") / "data" / kind / f"{language}.jsonl"
    return resource.read_text(encoding="utf-8") if resource.is_file() else None


def parse_jsonl(text: str, source: str, error: type[Exception]) -> list[tuple[int, dict]]:
    """``(line number, object)`` for every non-blank line; a line that is not a JSON object raises
    ``error`` naming ``source`` and the line."""
    rows = []
    for line_number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as decode_error:
            raise error(f"{source}, line {line_number}: not valid JSON ({decode_error.msg}).") from decode_error
        if not isinstance(row, dict):
            raise error(f"{source}, line {line_number}: expected a JSON object, got {type(row).__name__}.")
        rows.append((line_number, row))
    return rows
