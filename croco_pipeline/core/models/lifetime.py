"""Model lifetime: open a model only when work really needs it, close it when the stage ends, and
(where every step runs in one process) share one engine between steps.

Sharing (``keep_loaded``): when every step runs in one process (``croco demo``, in-process test runs),
starting a vLLM engine per step costs more than the work itself on a laptop CPU, so an engine is
started once per set of engine options, shared by all steps, and shut down by
``close_shared_generators()`` (also at interpreter exit). Closing a shared generator only ends one
step's use of it.
"""

from __future__ import annotations

import atexit
from typing import Callable

from croco_pipeline.core.models.generators import Completion, Generator, open_generator
from croco_pipeline.core.models.specs import resolve_model
from croco_pipeline.core.sampling.config import SamplingConfig


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


_SHARED_GENERATORS: dict[tuple, Generator] = {}


class _SharedGenerator(Generator):
    """A generator shared by several steps of one process: closing it only ends this step's use."""

    def __init__(self, inner: Generator):
        self._inner = inner
        self.backend = inner.backend
        self.model = inner.model

    def generate(
        self, prompts: list[str], sampling: SamplingConfig, adapter_path: str | None = None,
        chat_template: bool = True,
    ) -> list[list[Completion]]:
        return self._inner.generate(prompts, sampling, adapter_path=adapter_path, chat_template=chat_template)

    def prompt_lengths(self, prompts: list[str], chat_template: bool = True) -> list[int]:
        return self._inner.prompt_lengths(prompts, chat_template)

    def close(self) -> None:
        pass


def close_shared_generators() -> None:
    """Shut down every engine kept loaded by :func:`open_policy_generator` (``keep_loaded=True``)."""
    while _SHARED_GENERATORS:
        _, generator = _SHARED_GENERATORS.popitem()
        generator.close()


atexit.register(close_shared_generators)


def open_policy_generator(model: str, *, keep_loaded: bool = False, enable_lora: bool = False, **options) -> Generator:
    """Open ``model`` (a spec for ``resolve_model``) with ``open_generator(**options)``.

    With ``keep_loaded`` the engine is shared by every caller of this process with the same options,
    started with LoRA enabled so that it serves base and tuned answers alike.
    """
    path = resolve_model(model)
    if not keep_loaded:
        return open_generator(path, enable_lora=enable_lora, **options)
    key = (path, *sorted(options.items()))
    if key not in _SHARED_GENERATORS:
        _SHARED_GENERATORS[key] = open_generator(path, enable_lora=True, **options)
    return _SharedGenerator(_SHARED_GENERATORS[key])
