"""Model lifetime: open a model only when work really needs it, close it when the stage ends, and
(where every step runs in one process) share one engine between steps.

Sharing (``keep_loaded``): when every step runs in one process (``croco demo``, in-process test runs),
starting a vLLM engine per step costs more than the work itself on a laptop CPU, so an engine is
started once per set of engine options, shared by all steps, and shut down by
``close_shared_generators()`` (also at interpreter exit). Closing a shared generator only ends one
step's use of it. A tuned model served merged borrows the shared engine too: the merged weights are
loaded into it in place and the base weights put back when the step ends.

Merging rounds the adapter's change to the engine's dtype; where too little of it would survive
(``core.models.adapters.MergeFidelity``), the tuned model is merged and served in float32 by an engine
of its own instead. Every tuned-model generator says how it serves the adapter (``adapter_serving``).
"""

from __future__ import annotations

import atexit
import functools
import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal

from croco_pipeline.core.models.adapters import MIN_KEPT_FRACTION, MergedModel, merge_for_serving
from croco_pipeline.core.models.generators import Completion, Generator, open_generator, serving_dtype
from croco_pipeline.core.models.specs import resolve_model
from croco_pipeline.core.sampling.config import SamplingConfig

log = logging.getLogger(__name__)


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


class _WrappedGenerator(Generator):
    """A generator that serves through ``inner`` (another's engine) and, closed, runs ``release`` instead of
    closing it: the base of the shared, borrowed and merged-adapter generators below."""

    def __init__(self, inner: Generator, release: Callable[[], None]):
        self._inner, self._release = inner, release
        self.backend = inner.backend
        self.model = inner.model
        self.max_model_len = getattr(inner, "max_model_len", None)

    def prompt_lengths(self, prompts: list[str], chat_template: bool = True) -> list[int]:
        return self._inner.prompt_lengths(prompts, chat_template)

    def close(self) -> None:
        self._release()


class _SharedGenerator(_WrappedGenerator):
    """A generator shared by several steps of one process: closing it only ends this step's use."""

    def __init__(self, inner: Generator):
        super().__init__(inner, release=lambda: None)

    def generate(
        self,
        prompts: list[str],
        sampling: SamplingConfig,
        adapter_path: str | None = None,
        chat_template: bool = True,
    ) -> list[list[Completion]]:
        borrowed = getattr(self._inner, "loaded_weights", None)
        if borrowed is not None:  # a merged tuned model is being served by this engine right now
            raise RuntimeError(f"the shared {self.model} engine serves the weights in {borrowed}, not its own")
        return self._inner.generate(prompts, sampling, adapter_path=adapter_path, chat_template=chat_template)


def close_shared_generators() -> None:
    """Shut down every engine kept loaded by :func:`open_policy_generator` (``keep_loaded=True``)."""
    while _SHARED_GENERATORS:
        _, generator = _SHARED_GENERATORS.popitem()
        generator.close()


atexit.register(close_shared_generators)


def open_policy_generator(model: str, *, keep_loaded: bool = False, enable_lora: bool = False, **options) -> Generator:
    """Open ``model`` (a spec for ``resolve_model``) with ``open_generator(**options)``.

    With ``keep_loaded`` the engine is shared by every caller of this process with the same options.
    LoRA support costs speed on a CPU, so the shared engine has it only once a caller asks for it: the
    engine without LoRA is then closed and one with LoRA takes its place (one engine per model, so a
    GPU never holds two).
    """
    path = resolve_model(model)
    if not keep_loaded:
        return open_generator(path, enable_lora=enable_lora, **options)
    return _SharedGenerator(_shared_engine(path, enable_lora, options))


def _shared_engine(path: str, enable_lora: bool, options: dict) -> Generator:
    """The engine this process shares for ``path`` and ``options``, started on first use."""
    key = (path, *sorted(options.items()))
    shared = _SHARED_GENERATORS.get(key)
    if shared is not None and getattr(shared, "_llm", True) is None:  # its engine died (EngineDiedError)
        _SHARED_GENERATORS.pop(key)
        shared = None
    if shared is not None and enable_lora and not getattr(shared, "enable_lora", True):
        _SHARED_GENERATORS.pop(key).close()
        shared = None
    if shared is None:
        shared = _SHARED_GENERATORS[key] = open_generator(path, enable_lora=enable_lora, **options)
    return shared


def _drop_shared_engine(engine: Generator) -> None:
    """Close a shared engine and forget it (its state can no longer be trusted)."""
    for key, shared in list(_SHARED_GENERATORS.items()):
        if shared is engine:
            del _SHARED_GENERATORS[key]
    engine.close()


# How a tuned model is served for evaluation: auto = LoRA on a GPU, the adapter merged into the weights on a CPU.
ServingMode = Literal["auto", "lora", "merged"]


def adapter_serving_for_device(serving: str = "auto") -> str:
    """How a tuned model is served: ``lora`` (the base engine applies the adapter per request) or
    ``merged`` (the adapter merged into the weights, served by an engine without LoRA).

    ``auto`` decides by the device. On a GPU, vLLM's LoRA kernels cost little and one engine serves
    the base and every adapter, while each merged model needs an engine start of its own. On a CPU,
    LoRA decoding is several times slower than plain decoding, and merging a small model plus an
    engine start costs less than that (``benchmarks/adapter_serving.py`` measures both).
    """
    if serving not in ("auto", "lora", "merged"):
        raise ValueError(f"adapter_serving must be 'auto', 'lora' or 'merged', got {serving!r}")
    if serving != "auto":
        return serving
    import torch

    return "lora" if torch.cuda.is_available() else "merged"


@dataclass(frozen=True)
class AdapterServing:
    """How a tuned model is served, for the record of its evaluation.

    ``method``: ``lora`` (the engine applies the adapter per request), ``merged`` (merged into the weights,
    served in the engine's dtype) or ``merged_float32`` (merged and served in float32, because the engine's
    dtype would have rounded the adapter away). ``kept_fraction`` and ``changed_share``: how much of the
    adapter's change the served weights keep (``core.models.adapters.MergeFidelity``), and ``measured_in``
    the dtype they were measured in; None under LoRA, where no merged weights exist.
    """

    method: str
    dtype: str  # the dtype the tuned model is computed in
    kept_fraction: float | None = None
    changed_share: float | None = None
    measured_in: str | None = None
    min_kept_fraction: float = MIN_KEPT_FRACTION

    @classmethod
    def of_merge(cls, merged: MergedModel, min_kept_fraction: float) -> "AdapterServing":
        fidelity = merged.fidelity
        return cls(
            method="merged" if merged.dtype == fidelity.dtype else "merged_float32",
            dtype=merged.dtype,
            kept_fraction=fidelity.kept_fraction,
            changed_share=fidelity.changed_share,
            measured_in=fidelity.dtype,
            min_kept_fraction=min_kept_fraction,
        )

    def describe(self) -> str:
        """One line for logs and the UI."""
        if self.method == "lora":
            return f"LoRA applied by the engine at run time ({self.dtype})"
        kept = f"{self.measured_in} keeps {100 * self.kept_fraction:.1f} % of the adapter's change"
        if self.method == "merged":
            return f"merged into the weights, served in {self.dtype} ({kept})"
        return (
            f"merged and served in {self.dtype}: {kept}, under the {100 * self.min_kept_fraction:.0f} % a merge "
            "served in that dtype must keep"
        )

    def as_dict(self) -> dict:
        return {
            "adapter_serving": self.method,
            "adapter_dtype": self.dtype,
            "adapter_kept_fraction": self.kept_fraction,
            "adapter_changed_share": self.changed_share,
            "adapter_kept_measured_in": self.measured_in,
        }


class _MergedAdapterGenerator(_WrappedGenerator):
    """A generator over a model with one adapter merged in; asked for that adapter, it serves it.

    ``release`` ends the use of ``inner`` when this generator closes: closing an engine of its own, or
    putting the base weights back into a shared engine it borrowed.
    """

    def __init__(
        self,
        inner: Generator,
        adapter_path: str,
        scratch: tempfile.TemporaryDirectory,
        release: Callable[[], None],
        adapter_serving: AdapterServing,
    ):
        super().__init__(inner, release)
        self._adapter, self._scratch = adapter_path, scratch
        self.adapter_serving = adapter_serving

    def generate(
        self, prompts: list[str], sampling: SamplingConfig, adapter_path: str | None = None
    ) -> list[list[Completion]]:
        if adapter_path not in (None, self._adapter):
            raise ValueError(f"this generator serves the merged adapter {self._adapter}, not {adapter_path}")
        return self._inner.generate(prompts, sampling)

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._scratch.cleanup()


def open_adapter_generator(
    model: str,
    adapter_path: str,
    *,
    serving: str = "auto",
    keep_loaded: bool = False,
    enable_lora: bool = True,
    min_kept_fraction: float = MIN_KEPT_FRACTION,
    **options,
) -> Generator:
    """A generator for the tuned model ``model`` + ``adapter_path``, served as
    :func:`adapter_serving_for_device` decides; its ``adapter_serving`` (:class:`AdapterServing`) says how.
    Pass ``adapter_path`` to ``generate`` as usual.

    Merged, the adapter is folded into the weights in float32 and the share of its change that survives
    the engine's dtype is measured: when it keeps at least ``min_kept_fraction``, a shared vLLM engine of
    the base model (``keep_loaded``) serves the merged weights, loaded in place (a fraction of a second
    instead of tens of seconds for a new engine on a CPU), and gets the base weights back when the
    generator closes; else an engine of its own serves the merged model in float32.
    """
    del enable_lora  # decided here: LoRA on for "lora", off for "merged"
    requested_dtype = serving_dtype(model, options.get("backend", "auto"), options.get("dtype", "auto"))
    if adapter_serving_for_device(serving) == "lora":
        generator = open_policy_generator(model, keep_loaded=keep_loaded, enable_lora=True, **options)
        generator.adapter_serving = AdapterServing(method="lora", dtype=requested_dtype)
        return generator
    scratch = tempfile.TemporaryDirectory(prefix="croco-merged-")
    try:
        started = time.perf_counter()
        merged = merge_for_serving(
            adapter_path,
            Path(scratch.name) / "model",
            requested_dtype,
            min_kept_fraction,
            trust_remote_code=options.get("trust_remote_code", False),
        )
        adapter_serving = AdapterServing.of_merge(merged, min_kept_fraction)
        log.info(
            "merged %s into its base in %.1f s: %s",
            adapter_path,
            time.perf_counter() - started,
            adapter_serving.describe(),
        )
        if adapter_serving.method == "merged_float32":
            log.warning("%s: %s", adapter_path, adapter_serving.describe())
            inner = open_generator(str(merged.path), enable_lora=False, **{**options, "dtype": merged.dtype})
            return _MergedAdapterGenerator(inner, adapter_path, scratch, inner.close, adapter_serving)
        shared = _shared_engine(resolve_model(model), False, options) if keep_loaded else None
        if shared is not None and hasattr(shared, "load_weights"):
            shared.load_weights(str(merged.path))
            release = functools.partial(_put_base_back, shared)
            return _MergedAdapterGenerator(shared, adapter_path, scratch, release, adapter_serving)
        inner = open_generator(str(merged.path), enable_lora=False, **options)
    except BaseException:
        scratch.cleanup()
        raise
    return _MergedAdapterGenerator(inner, adapter_path, scratch, inner.close, adapter_serving)


class _BorrowedWeightsGenerator(_WrappedGenerator):
    """A shared engine serving other weights of its architecture until closed; then ``release`` runs."""

    def generate(
        self,
        prompts: list[str],
        sampling: SamplingConfig,
        adapter_path: str | None = None,
        chat_template: bool = True,
    ) -> list[list[Completion]]:
        if adapter_path is not None:
            raise ValueError(f"this generator serves a plain model folder, not the adapter {adapter_path}")
        return self._inner.generate(prompts, sampling, chat_template=chat_template)


def open_weights_generator(model: str, weights_path: str, *, keep_loaded: bool = False, **options) -> Generator:
    """A generator over ``weights_path``, a plain model folder of ``model``'s architecture (a merged
    checkpoint, e.g. the policy of a later round).

    With ``keep_loaded``, the shared engine of ``model`` serves those weights (loaded in place, a fraction
    of a second) and gets its own back when the generator closes; otherwise an engine of its own opens.
    """
    options.pop("enable_lora", None)  # a merged folder needs none
    if keep_loaded:
        shared = _shared_engine(resolve_model(model), False, options)
        if hasattr(shared, "load_weights"):
            shared.load_weights(weights_path)
            return _BorrowedWeightsGenerator(shared, functools.partial(_put_base_back, shared))
    return open_generator(weights_path, enable_lora=False, **options)


def _put_base_back(engine: Generator) -> None:
    """Load the base weights back into a shared engine; an engine that cannot is closed, not reused."""
    try:
        engine.load_weights(None)
    except BaseException:
        _drop_shared_engine(engine)
        raise
