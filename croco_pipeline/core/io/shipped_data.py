"""Data files that ship with the package (``croco_pipeline/data/<kind>/<language>.jsonl``) and the
JSON-lines parsing every loader shares, so a broken line is reported the same way everywhere."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path


def shipped_languages(kind: str) -> list[str]:
    """Languages with a shipped ``data/<kind>/<language>.jsonl`` file."""
    folder = resources.files("croco_pipeline") / "data" / kind
    return sorted(entry.name.removesuffix(".jsonl") for entry in folder.iterdir() if entry.name.endswith(".jsonl"))


def shipped_text(kind: str, language: str) -> str | None:
    """The text of ``data/<kind>/<language>.jsonl``, or None when the package ships none."""
    resource = resources.files("croco_pipeline") / "data" / kind / f"{language}.jsonl"
    return resource.read_text(encoding="utf-8") if resource.is_file() else None


def shipped_or_file_text(
    kind: str,
    language: str,
    path: str | Path | None,
    error: type[Exception],
    *,
    what: str,
    file_label: str,
    hint: str = "",
) -> tuple[str, str]:
    """``(text, source name)`` of the shipped ``data/<kind>/<language>.jsonl``, or of ``path`` when given;
    a missing one raises ``error`` saying which (``what`` names the data, ``file_label`` the user's file)."""
    if path is None:
        text = shipped_text(kind, language)
        if text is None:
            raise error(f"No shipped {what} for {language!r} (shipped: {', '.join(shipped_languages(kind))}).{hint}")
        return text, f"shipped {kind}/{language}.jsonl"
    try:
        return Path(path).read_text(encoding="utf-8"), str(path)
    except FileNotFoundError as missing:
        raise error(f"{file_label} file not found: {path}") from missing


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
