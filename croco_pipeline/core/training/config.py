"""Training hyperparameters: one shared base, a DPO and an SFT config beside it (as TRL pairs
``DPOConfig``/``SFTConfig`` with ``TrainingArguments``), and one preset per profile.

The class defaults are the paper's GPU run (docs/design.md §1.5). The assets never scale these
values themselves: they ask :func:`dpo_preset` / :func:`sft_preset` for the profile's preset.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

# The laptop runs adapt the top layers only (SmolLM2-135M has 30): see LoraSettings.top_layers. DPO takes
# 16: on the same Danish pairs and steps it moved the held-out share of Danish answers 0.30 -> 0.58, where
# 8 layers moved it to 0.34 (benchmarks/README.md); the frozen rest keeps the CPU step cheap.
EMBEDDED_TOP_LAYERS = 8
EMBEDDED_DPO_TOP_LAYERS = 16
# The tiny (test) profile trains this many optimizer steps.
TINY_MAX_STEPS = 2


@dataclass(frozen=True)
class LoraSettings:
    """LoRA on every attention and MLP projection, as in the paper."""

    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
    # Adapt only the top N transformer layers (None: all, as in the paper). Back-propagation then
    # stops at the lowest adapted layer, which makes a CPU training step several times cheaper.
    top_layers: int | None = None


@dataclass(frozen=True)
class TrainingSettings:
    """What DPO and SFT share: optimiser schedule, batch shape, precision, LoRA (the paper's values)."""

    learning_rate: float = 5e-6
    lr_scheduler_type: str = "cosine"
    warmup_ratio: float = 0.05
    weight_decay: float = 0.01
    num_train_epochs: float = 1.0
    max_steps: int = -1  # > 0 overrides num_train_epochs
    max_length: int = 4096  # prompt + answer tokens; longer sequences are truncated at the end
    per_device_train_batch_size: int = 1
    gradient_accumulation_steps: int = 8
    # Examples per optimizer step over all devices. When set, gradient accumulation is derived from it at
    # launch (effective / (micro-batch × devices)): the paper's 1 × 8 on 8 GPUs is 64, and one GPU gets
    # there with 64 accumulation steps. None: gradient_accumulation_steps as given.
    effective_batch_size: int | None = 64
    eval_fraction: float = 0.01  # share of the examples held out as the eval split (0: none)
    # When the eval split is evaluated: the authors' DPO never did ("no"), their SFT at each epoch's end.
    eval_strategy: Literal["no", "epoch"] = "epoch"
    bf16: bool = True  # switched off automatically when there is no CUDA GPU
    gradient_checkpointing: bool = True
    seed: int = 42
    logging_steps: int = 1
    lora: LoraSettings = field(default_factory=LoraSettings)

    def as_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["lora"]["target_modules"] = list(data["lora"]["target_modules"])
        return data

    def accumulation_steps(self, world_size: int) -> int:
        """Gradient accumulation steps on ``world_size`` devices (see ``effective_batch_size``)."""
        if self.effective_batch_size is None:
            return self.gradient_accumulation_steps
        per_step = self.per_device_train_batch_size * world_size
        if self.effective_batch_size % per_step:
            raise ValueError(
                f"effective_batch_size {self.effective_batch_size} is not a multiple of micro-batch "
                f"{self.per_device_train_batch_size} × {world_size} device(s)"
            )
        return self.effective_batch_size // per_step


@dataclass(frozen=True)
class DPOSettings(TrainingSettings):
    """DPO on preference pairs; the defaults are the paper's GPU run (docs/design.md §1.5)."""

    beta: float = 0.1
    loss_type: str = "sigmoid"
    precompute_ref_log_probs: bool = False
    eval_strategy: Literal["no", "epoch"] = "no"  # the authors' DPO held 1 % out and never evaluated it

    @classmethod
    def embedded(cls) -> "DPOSettings":
        """Small CPU run for the laptop demo: 2 epochs over its 16 pairs, 16 steps of 2, LoRA on the top 16
        layers. The rate is high because a LoRA adapter on a 135M model gets a handful of steps, not the
        paper's 9B runs (5e-6); the recipe was chosen with ``benchmarks/training_recipe.py`` (figures in
        benchmarks/README.md). Reference log-probabilities are computed once up front (docs/design.md §3);
        gradient checkpointing only costs time on small models.
        """
        return cls(
            learning_rate=1e-3,
            num_train_epochs=2.0,
            max_length=384,
            per_device_train_batch_size=2,
            gradient_accumulation_steps=1,
            effective_batch_size=None,
            eval_fraction=0.0,
            bf16=False,
            gradient_checkpointing=False,
            precompute_ref_log_probs=True,
            lora=LoraSettings(top_layers=EMBEDDED_DPO_TOP_LAYERS),
        )


@dataclass(frozen=True)
class SFTSettings(TrainingSettings):
    """SFT on best-of-N samples (the paper's baseline): same LoRA and schedule as DPO, lr 2e-4."""

    learning_rate: float = 2e-4
    # "full_sequence": the authors' script, TRL's default loss over the whole conversation (`messages`);
    # "completion_only": prompt/completion, the loss on the answer tokens only.
    loss: Literal["full_sequence", "completion_only"] = "full_sequence"

    @classmethod
    def embedded(cls) -> "SFTSettings":
        """Small CPU run for the laptop demo: 4 epochs over its 16 best-of-N records, 32 steps of 2, at 2e-3.

        Chosen by measurement (``benchmarks/training_recipe.py --kind sft`` on the demo's Welsh records, 64
        held-out answers judged by the demo scorer, benchmarks/README.md): at the paper's 2e-4 for 2 epochs
        the loss barely moved (first epoch 5.19, last 5.14) and the merged adapter was nearly the base; at
        2e-3 for 4 epochs it fell from 5.25 (first step; first-epoch mean 5.15) to 2.42 (last step; last-
        epoch mean 3.29), every answer differed from the base's, and the win rate over the base was 78.1 ±
        5.2 %. Like the DPO preset's, a rate this high suits a LoRA on the top layers of a 135M model and a
        handful of steps, not the paper's runs.
        """
        return cls(
            learning_rate=2e-3,
            num_train_epochs=4.0,
            loss="completion_only",
            max_length=384,
            per_device_train_batch_size=2,
            gradient_accumulation_steps=1,
            effective_batch_size=None,
            eval_fraction=0.0,
            bf16=False,
            gradient_checkpointing=False,
            lora=LoraSettings(top_layers=EMBEDDED_TOP_LAYERS),
        )


TrainingPreset = Literal["embedded", "paper", "tiny"]
TRAINING_PRESETS: tuple[str, ...] = get_args(TrainingPreset)


def _preset(cls, preset: str, seed: int | None, max_steps: int | None):
    if preset not in TRAINING_PRESETS:
        raise ValueError(f"unknown training preset {preset!r}; choose one of {', '.join(TRAINING_PRESETS)}")
    chosen = cls() if preset == "paper" else cls.embedded()
    if seed is not None:
        chosen = dataclasses.replace(chosen, seed=seed)
    max_steps = max_steps or (TINY_MAX_STEPS if preset == "tiny" else None)
    return dataclasses.replace(chosen, max_steps=max_steps) if max_steps else chosen


def dpo_preset(preset: str, *, seed: int | None = None, max_steps: int | None = None) -> DPOSettings:
    """The DPO settings of a profile: ``paper`` (GPU), ``embedded`` (laptop) or ``tiny`` (two steps);
    ``seed`` replaces the preset's (the paper's is 42)."""
    return _preset(DPOSettings, preset, seed, max_steps)


def sft_preset(preset: str, *, seed: int | None = None, max_steps: int | None = None) -> SFTSettings:
    """The SFT settings of a profile (see :func:`dpo_preset`)."""
    return _preset(SFTSettings, preset, seed, max_steps)
