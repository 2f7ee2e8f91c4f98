"""Model resources: the policy that samples answers and the reward scorer that ranks them.

They only hold configuration; a model is loaded when a step opens it (``with policy.open() as gen``)
and released when the step is done, so no step keeps a GPU or a vLLM engine alive after it finishes.

The one exception is ``keep_loaded``: when every step runs in one process (``croco demo``, in-process
test runs), starting a vLLM engine per step costs more than the work itself on a laptop CPU, so the
policy engine is started once — with LoRA enabled, so it serves base and tuned answers alike — shared
by all steps, and shut down by ``close_shared_generators()`` (also at interpreter exit).
"""

from __future__ import annotations

import atexit
from typing import Literal, Optional

from dagster import ConfigurableResource

from croco_pipeline.core.models.generators import Completion, Generator, open_generator

from croco_pipeline.core.sampling.config import SamplingConfig
from croco_pipeline.core.models.specs import resolve_model
from croco_pipeline.core.models.reward_scorers import RewardScorer, open_reward_scorer

_SHARED_GENERATORS: dict[tuple, Generator] = {}


class _SharedGenerator(Generator):
    """A generator shared by several steps of one process: closing it only ends this step's use."""

    def __init__(self, inner: Generator):
        self._inner = inner
        self.backend = inner.backend
        self.model = inner.model

    def generate(
        self, prompts: list[str], sampling: SamplingConfig, adapter_path: str | None = None
    ) -> list[list[Completion]]:
        return self._inner.generate(prompts, sampling, adapter_path=adapter_path)

    def close(self) -> None:
        pass


def close_shared_generators() -> None:
    """Shut down every engine kept loaded by ``PolicyResource(keep_loaded=True)``."""
    while _SHARED_GENERATORS:
        _, generator = _SHARED_GENERATORS.popitem()
        generator.close()


atexit.register(close_shared_generators)


class PolicyResource(ConfigurableResource):
    """The policy model, served by vLLM where installed, else by transformers ``generate``."""

    model: str
    backend: Literal["auto", "vllm", "transformers"] = "auto"
    max_model_len: int = 2048
    dtype: str = "auto"
    gpu_memory_utilization: float = 0.85
    tensor_parallel_size: int = 1
    max_lora_rank: int = 16
    keep_loaded: bool = False  # share one engine between the steps of a single process (see module doc)

    def model_path(self) -> str:
        return resolve_model(self.model)

    def open(self, *, enable_lora: bool = False, seed: int = 0) -> Generator:
        settings = dict(
            backend=self.backend,
            max_model_len=self.max_model_len,
            max_lora_rank=self.max_lora_rank,
            seed=seed,
            dtype=self.dtype,
            gpu_memory_utilization=self.gpu_memory_utilization,
            tensor_parallel_size=self.tensor_parallel_size,
        )
        if not self.keep_loaded:
            return open_generator(self.model_path(), enable_lora=enable_lora, **settings)
        key = (self.model_path(), *sorted(settings.items()))
        if key not in _SHARED_GENERATORS:
            _SHARED_GENERATORS[key] = open_generator(self.model_path(), enable_lora=True, **settings)
        return _SharedGenerator(_SHARED_GENERATORS[key])


class RewardResource(ConfigurableResource):
    """The reward scorer: a Hugging Face sequence-classification reward model (e.g.
    ``Skywork/Skywork-Reward-V2-Qwen3-8B``), or the embedded language-fidelity demo scorer."""

    backend: Literal["language_fidelity", "sequence_classifier"] = "language_fidelity"
    model: Optional[str] = None
    max_length: int = 4096
    overflow: Literal["truncate", "skip"] = "truncate"
    batch_size: int = 8

    def open(self) -> RewardScorer:
        model = resolve_model(self.model) if self.model else None
        return open_reward_scorer(
            self.backend, model, max_length=self.max_length, overflow=self.overflow, batch_size=self.batch_size
        )
