"""Run settings shared by the assets: how many samples, how long, which pairing target, how to train.

The defaults are the embedded laptop configuration; ``croco_pipeline.profiles`` holds the others
(the paper's GPU settings, and a tiny one for tests). Every field can be changed per run in the
Dagster launchpad under ``resources.settings.config``.
"""

from __future__ import annotations

import dataclasses
from typing import Literal, Optional

from dagster import ConfigurableResource

from croco_pipeline.core.sampling.config import SamplingConfig
from croco_pipeline.core.training.config import DPOSettings, SFTSettings, dpo_preset, sft_preset
from croco_pipeline.core.training.tracking import DEFAULT_PROJECT, Tracking


class PipelineSettings(ConfigurableResource):
    profile: str = "embedded"
    prompt_file: Optional[str] = None  # JSONL/CSV/Parquet with prompt_id, language, prompt[, split]; local or s3://
    # A Hugging Face dataset id or a local dataset folder (core.prompts.datasets): rows with a prompt, or
    # conversations (`messages`, the prompt is the first user turn). Loaded once and staged as Parquet.
    prompt_dataset: Optional[str] = None
    prompt_dataset_config: Optional[str] = None  # the dataset's configuration (subset) name, if it has several
    prompt_dataset_split: str = "train"
    # croco column -> the dataset's column, for any of prompt_id, language, prompt, messages, split
    prompt_dataset_columns: Optional[dict[str, str]] = None
    prompt_dataset_language: str = "en"  # the language of rows without a language column
    # Whether the shipped demo prompts (48 training prompts per language) may be trained on. The paper
    # profile says no: its runs need thousands of prompts (settings.prompt_dataset or settings.prompt_file).
    allow_demo_prompts: bool = True
    # Languages without prompts of their own get the English set machine-translated by `translator`
    # (request styles: core.prompts.translation; the paper's is translategemma_vllm, or completion).
    translation_style: Literal["translategemma_vllm", "completion", "translategemma", "instruction"] = "instruction"
    translation_max_new_tokens: int = 512
    translation_max_input_tokens: Optional[int] = None  # longer requests are dropped and counted (paper: 8192)
    translation_language_filter: bool = True  # refuse translations not detected as the target language
    samples_per_prompt: int = 8
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 128
    seed: int = 0
    respond_in_language: bool = True  # append " Please respond in {Language} and nothing else."
    max_train_prompts: Optional[int] = None  # None: every train prompt
    max_eval_prompts: Optional[int] = None  # None: every held-out prompt
    eval_samples_per_prompt: int = 1
    # Decoding of the held-out answers that are judged (None: as the training samples). The paper answers
    # greedily (0; 0.1 for aya models) with up to 8192 new tokens.
    eval_temperature: Optional[float] = None
    eval_max_new_tokens: Optional[int] = None
    heldout_source: str = "shipped"  # shipped | arena (m-ArenaHard) | auto | path of an m-ArenaHard-format file
    judge: Literal["reward", "llm"] = "reward"  # who compares tuned and base answers
    # croco: MT-Bench-style prompt that also asks for the target language; paper / paper_no_ties: the
    # authors' prompt (core.evaluation.judge)
    judge_prompt: Literal["croco", "paper", "paper_no_ties"] = "croco"
    judge_temperature: float = 0.7
    judge_max_new_tokens: int = 512
    tie_handling: Literal["win", "half", "loss"] = "half"  # what a tie counts in the win rate
    multiple_choice: bool = True  # run the shipped multiple-choice set (catastrophic forgetting)
    # EuroEval (euroeval_scores asset): the datasets (None: the reference's for the language) and iterations.
    euroeval_datasets: Optional[list[str]] = None
    euroeval_iterations: int = 3
    # The Python of an environment of EuroEval's own (scripts/euroeval_env.sh: EuroEval 17.0.0, the paper's,
    # needs transformers < 5, croco runs 5); None: EuroEval imported here, if installed.
    euroeval_python: Optional[str] = None
    chunk_prompts: int = 8  # generation and scoring stage their output every this many prompts (resumable)
    pair_target: Literal["mean_minus_2sigma", "q1", "min"] = "mean_minus_2sigma"
    non_finite_rewards: Literal["drop", "fail"] = "drop"  # drop and count them, or fail the partition
    # Cross-language pooling: the language group in tie-break order (None: every materialised language).
    cross_language_languages: Optional[list[str]] = None
    prompt_source: Literal["chosen", "rejected", "random"] = "chosen"
    min_chosen_language_share: float = 0.5  # below it, the pair check warns (it does not block)
    training: Literal["embedded", "paper", "tiny"] = "embedded"
    # Overrides of the preset (None: the preset's own value).
    training_max_steps: Optional[int] = None  # a fixed number of optimizer steps instead of epochs
    training_epochs: Optional[float] = None
    training_effective_batch_size: Optional[int] = None  # examples per optimizer step over all devices
    # SFT loss: the preset's (paper: full_sequence, as the authors; embedded: completion_only), or either one
    sft_loss: Literal["preset", "full_sequence", "completion_only"] = "preset"
    # A checkpoint whose schedule has fewer optimizer steps, or none at a learning rate above 0, is refused
    # before its model loads (core.training.schedule).
    min_optimizer_steps: int = 10
    # Experiment tracking of training and evaluation (core.training.tracking): trackio | mlflow | wandb | none.
    tracker: Literal["trackio", "mlflow", "wandb", "none"] = "trackio"
    tracking_project: str = DEFAULT_PROJECT
    tracking_dir: str = "tracking"  # the profile sets an absolute folder (CROCO_TRACKING_DIR)

    def sampling(self) -> SamplingConfig:
        """Training-sample settings. Generators seed every prompt from ``seed`` and the prompt itself,
        so a resumed or sharded run samples each prompt exactly as one clean run would."""
        return SamplingConfig(
            n=self.samples_per_prompt,
            temperature=self.temperature,
            top_p=self.top_p,
            max_new_tokens=self.max_new_tokens,
            seed=self.seed,
        )

    def eval_sampling(self) -> SamplingConfig:
        """Decoding of the held-out answers of the base and every tuned system (the same for all)."""
        return SamplingConfig(
            n=self.eval_samples_per_prompt,
            temperature=self.temperature if self.eval_temperature is None else self.eval_temperature,
            top_p=self.top_p,
            max_new_tokens=self.max_new_tokens if self.eval_max_new_tokens is None else self.eval_max_new_tokens,
            seed=self.seed + 1,
        )

    def dpo_settings(self) -> DPOSettings:
        """The DPO preset named by ``training`` (see ``core.training.config``), with this run's overrides."""
        return self._with_overrides(dpo_preset(self.training, seed=self.seed, max_steps=self.training_max_steps))

    def sft_settings(self) -> SFTSettings:
        preset = self._with_overrides(sft_preset(self.training, seed=self.seed, max_steps=self.training_max_steps))
        return preset if self.sft_loss == "preset" else dataclasses.replace(preset, loss=self.sft_loss)

    def _with_overrides(self, preset):
        changes = {}
        if self.training_epochs is not None:
            changes["num_train_epochs"] = self.training_epochs
        if self.training_effective_batch_size is not None:
            changes["effective_batch_size"] = self.training_effective_batch_size
        return dataclasses.replace(preset, **changes) if changes else preset

    def tracking(self, run_name: str) -> Tracking:
        """The tracker run ``run_name`` of this run's project, stored in ``tracking_dir``."""
        return Tracking(self.tracker, self.tracking_project, self.tracking_dir, run_name)
