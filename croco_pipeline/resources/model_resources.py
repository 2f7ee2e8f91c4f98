"""Model resources: the policy that samples answers and the reward scorer that ranks them.

They only hold configuration; a model is loaded when a step opens it (``with policy.open() as gen``)
and released when the step is done, so no step keeps a GPU or a vLLM engine alive after it finishes.

The one exception is ``keep_loaded``: every step of one process then shares one policy engine (see
``croco_pipeline.core.models.lifetime``).
"""

from __future__ import annotations

from typing import Literal, Optional

from dagster import ConfigurableResource

from croco_pipeline.core.models.generators import Generator
from croco_pipeline.core.models.lifetime import open_policy_generator
from croco_pipeline.core.models.reward_scorers import RewardScorer, open_scorer
from croco_pipeline.core.models.specs import resolve_model


class PolicyResource(ConfigurableResource):
    """The policy model, served by vLLM where installed, else by transformers ``generate``."""

    model: str
    backend: Literal["auto", "vllm", "transformers"] = "auto"
    max_model_len: Optional[int] = 2048  # prompt + answer tokens; None: the model's own context length
    dtype: str = "auto"  # on CPU: bfloat16 only with native bf16 instructions, else float32 (core.models.hardware)
    cpu_threads: Optional[int] = None  # on CPU: None = every core this process may use
    gpu_memory_utilization: float = 0.85
    tensor_parallel_size: int = 1
    max_lora_rank: int = 16
    # How tuned models are evaluated: auto = LoRA on a GPU, the adapter merged into the weights on a CPU
    adapter_serving: Literal["auto", "lora", "merged"] = "auto"
    keep_loaded: bool = False  # share one engine between the steps of a single process (see module doc)

    def model_path(self) -> str:
        return resolve_model(self.model)

    def generator_options(self, *, seed: int, enable_lora: bool = False) -> dict:
        """``open_policy_generator`` keyword arguments as plain values (a Ray worker can receive them).
        The model spec stays unresolved: whoever opens it resolves it, on its own node."""
        return dict(
            model=self.model,
            backend=self.backend,
            max_model_len=self.max_model_len,
            enable_lora=enable_lora,
            max_lora_rank=self.max_lora_rank,
            seed=seed,
            dtype=self.dtype,
            gpu_memory_utilization=self.gpu_memory_utilization,
            tensor_parallel_size=self.tensor_parallel_size,
            cpu_threads=self.cpu_threads,
            keep_loaded=self.keep_loaded,
        )

    def open(self, *, enable_lora: bool = False, seed: int = 0) -> Generator:
        return open_policy_generator(**self.generator_options(seed=seed, enable_lora=enable_lora))


class RewardResource(ConfigurableResource):
    """The reward scorer: a Hugging Face sequence-classification reward model (e.g.
    ``Skywork/Skywork-Reward-V2-Qwen3-8B``), or the embedded language-fidelity demo scorer."""

    backend: Literal["language_fidelity", "sequence_classifier"] = "language_fidelity"
    model: Optional[str] = None
    max_length: int = 4096
    overflow: Literal["truncate", "skip"] = "truncate"
    batch_size: int = 8

    def scorer_options(self) -> dict:
        """``open_scorer`` keyword arguments as plain values (a Ray worker can receive them)."""
        return dict(
            backend=self.backend,
            model=self.model,
            max_length=self.max_length,
            overflow=self.overflow,
            batch_size=self.batch_size,
        )

    def open(self) -> RewardScorer:
        return open_scorer(**self.scorer_options())
