"""Model resources: the policy that samples answers and the reward scorer that ranks them.

They only hold configuration; a model is loaded when a step opens it (``with policy.open() as gen``)
and released when the step is done, so no step keeps a GPU or a vLLM engine alive after it finishes.
"""

from __future__ import annotations

from typing import Literal, Optional

from dagster import ConfigurableResource

from croco_pipeline.core.generation import Generator, open_generator
from croco_pipeline.core.models import resolve_model
from croco_pipeline.core.rewards import RewardScorer, open_reward_scorer


class PolicyResource(ConfigurableResource):
    """The policy model, served by vLLM where installed, else by transformers ``generate``."""

    model: str
    backend: Literal["auto", "vllm", "transformers"] = "auto"
    max_model_len: int = 2048
    dtype: str = "auto"
    gpu_memory_utilization: float = 0.85
    tensor_parallel_size: int = 1
    max_lora_rank: int = 16

    def model_path(self) -> str:
        return resolve_model(self.model)

    def open(self, *, enable_lora: bool = False, seed: int = 0) -> Generator:
        return open_generator(
            self.model_path(),
            backend=self.backend,
            max_model_len=self.max_model_len,
            enable_lora=enable_lora,
            max_lora_rank=self.max_lora_rank,
            seed=seed,
            dtype=self.dtype,
            gpu_memory_utilization=self.gpu_memory_utilization,
            tensor_parallel_size=self.tensor_parallel_size,
        )


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
