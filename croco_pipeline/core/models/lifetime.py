"""Model lifetime inside a stage: open a model only when work really needs it, close it when the stage ends."""

from __future__ import annotations

from typing import Callable


class OpenOnFirstUse:
    """Open a model only when a chunk really needs computing: a resumed stage whose chunks are all
    staged never loads it. Use as a context manager; ``get()`` opens on first call, exit closes."""

    def __init__(self, opener: Callable[[], object]):
        self._opener = opener
        self._opened = None

    def get(self):
        if self._opened is None:
            self._opened = self._opener()
        return self._opened

    def __enter__(self) -> "OpenOnFirstUse":
        return self

    def __exit__(self, *exc_info) -> None:
        if self._opened is not None:
            self._opened.close()
            self._opened = None
