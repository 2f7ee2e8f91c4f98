"""The settings of a run, one schema per kind: every field, its default, its allowed values and its help.

- :class:`RunSettings`: what the stages do (prompts, sampling, pairing, training, evaluation, tracking);
- :class:`PolicySettings`: a generating model (the policy, and also the judge and the translator);
- :class:`RewardSettings`: the reward scorer.

Defaults are the embedded laptop configuration; a profile (``croco_pipeline.profiles``) states only where
it differs. The Dagster resources (``croco_pipeline.resources``) are these classes with Dagster's
``ConfigurableResource`` mixed in, so the launchpad shows the same fields and help; ``croco generate`` and
``croco plan`` read them here without importing Dagster. Allowed values are the ``Literal`` types that
sit next to the code acting on them. Training hyperparameters are named presets
(``core.training.config``), chosen by ``RunSettings.training``.
"""

from __future__ import annotations

import dataclasses
from typing import Literal, Optional

from pydantic import BaseModel, Field, PositiveInt, TypeAdapter, ValidationError

from croco_pipeline.core.evaluation.judge import Judge, JudgePrompt
from croco_pipeline.core.evaluation.win_rates import TieHandling
from croco_pipeline.core.models.generators import Backend
from croco_pipeline.core.models.lifetime import ServingMode
from croco_pipeline.core.models.reward_scorers import Overflow, RewardBackend
from croco_pipeline.core.models.specs import EMBEDDED_POLICY
from croco_pipeline.core.pairs.rule import NonFinitePolicy, PromptSource, Target
from croco_pipeline.core.prompts.translation import PromptStyle
from croco_pipeline.core.rounds import RoundInit, RoundReference
from croco_pipeline.core.sampling.config import SamplingConfig
from croco_pipeline.core.training.config import DPOSettings, SFTSettings, TrainingPreset, dpo_preset, sft_preset
from croco_pipeline.core.training.schedule import DEFAULT_MIN_OPTIMIZER_STEPS
from croco_pipeline.core.training.tracking import DEFAULT_PROJECT, Tracker, Tracking

SftLoss = Literal["preset", "full_sequence", "completion_only"]


class RunSettings(BaseModel):
    """What the stages do. Every field can be changed per run (Dagster: ``resources.settings.config``)."""

    profile: str = Field("embedded", description="the profile these settings came from")
    # --- prompts
    prompt_file: Optional[str] = Field(
        None, description="your prompts: JSONL/CSV/Parquet with prompt_id, language, prompt (or messages); or s3://"
    )
    prompt_dataset: Optional[str] = Field(
        None,
        description="your prompts as a Hugging Face dataset id, a save_to_disk folder or a conversations JSONL file; "
        "staged once as Parquet (core.prompts.datasets)",
    )
    prompt_dataset_config: Optional[str] = Field(None, description="the dataset's configuration (subset) name")
    prompt_dataset_split: str = Field("train", description="the dataset's split to read")
    prompt_dataset_columns: Optional[dict[str, str]] = Field(
        None, description="croco column -> the dataset's, for any of prompt_id, language, prompt, messages, split"
    )
    prompt_dataset_language: str = Field("en", description="the language of rows without a language column")
    allow_demo_prompts: bool = Field(
        True, description="whether the shipped demo prompts (48 training prompts per language) may be trained on"
    )
    # --- machine translation of the languages the prompts lack
    translation_style: PromptStyle = Field(
        "instruction", description="request style (core.prompts.translation); the paper's is translategemma_vllm"
    )
    translation_max_new_tokens: int = Field(512, description="longest translation, in tokens")
    translation_max_input_tokens: Optional[int] = Field(
        None, description="conversations with a message whose request is longer are dropped in every language"
    )
    translation_language_filter: bool = Field(
        True, description="refuse translations the language identifier does not find in the target language"
    )
    # --- self-generation
    # 16 on the laptop: with 8, the best answer to a Maltese prompt was rarely Maltese (benchmarks/README.md)
    samples_per_prompt: int = Field(16, description="answers sampled per training prompt (the paper: 64)")
    samples_per_prompt_by_language: Optional[dict[str, PositiveInt]] = Field(
        None, description='answers per training prompt for these languages instead, e.g. {"mt": 32}'
    )
    temperature: float = Field(1.0, description="sampling temperature")
    top_p: float = Field(1.0, description="nucleus sampling")
    max_new_tokens: int = Field(64, description="longest sampled answer, in tokens (the paper: 4096)")
    seed: int = Field(0, description="the run's seed: sampling (per prompt), judging order, training")
    respond_in_language: bool = Field(
        True, description='append " Please respond in {Language} and nothing else." to each prompt'
    )
    max_train_prompts: Optional[int] = Field(16, description="training prompts per language (None: all)")
    chunk_prompts: int = Field(16, description="generation and scoring stage their output every this many prompts")
    # --- evaluation
    max_eval_prompts: Optional[int] = Field(16, description="held-out prompts per language (None: all)")
    eval_samples_per_prompt: int = Field(4, description="answers per held-out prompt")
    eval_temperature: Optional[float] = Field(
        None, description="decoding of judged answers (None: as the training samples; the paper: 0)"
    )
    eval_max_new_tokens: Optional[int] = Field(
        64, description="longest judged answer (None: as the training samples; the paper: 8192)"
    )
    heldout_source: str = Field(
        "shipped",
        description="shipped (the prompts' held-out split) | arena (m-ArenaHard) | auto | an m-ArenaHard-format file",
    )
    judge: Judge = Field("reward", description="who compares tuned and base answers: the reward scorer or an LLM")
    judge_prompt: JudgePrompt = Field(
        "croco", description="croco (also asks for the target language) | paper | paper_no_ties (the authors')"
    )
    judge_temperature: float = Field(0.7, description="the LLM judge's temperature")
    judge_max_new_tokens: int = Field(512, description="the LLM judge's longest verdict")
    tie_handling: TieHandling = Field("half", description="what a tie counts in the win rate")
    multiple_choice: bool = Field(True, description="run the shipped multiple-choice set (forgetting)")
    euroeval_datasets: Optional[list[str]] = Field(None, description="EuroEval datasets (None: the reference's)")
    euroeval_iterations: int = Field(3, description="EuroEval iterations")
    euroeval_python: Optional[str] = Field(
        None, description="the Python of EuroEval's own environment (scripts/euroeval_env.sh)"
    )
    # --- pairing
    pair_target: Target = Field("mean_minus_2sigma", description="what the rejected answer is nearest to")
    non_finite_rewards: NonFinitePolicy = Field("drop", description="drop and count non-finite rewards, or fail")
    cross_language_languages: Optional[list[str]] = Field(
        None, description="the cross-language group, in tie-break order (None: every materialised language)"
    )
    prompt_source: PromptSource = Field("chosen", description="cross-language pairs: whose language the prompt is in")
    min_chosen_language_share: float = Field(0.5, description="below it, the pair check warns")
    # --- training
    training: TrainingPreset = Field("embedded", description="the training preset (core.training.config)")
    training_max_steps: Optional[int] = Field(None, description="a fixed number of optimizer steps instead of epochs")
    training_epochs: Optional[float] = Field(None, description="epochs (None: the preset's)")
    training_effective_batch_size: Optional[int] = Field(
        None, description="examples per optimizer step over all devices (None: the preset's)"
    )
    sft_loss: SftLoss = Field("preset", description="SFT loss: the preset's, full_sequence or completion_only")
    min_optimizer_steps: int = Field(
        DEFAULT_MIN_OPTIMIZER_STEPS,
        description="a checkpoint with fewer optimizer steps, or none at a learning rate above 0, is refused",
    )
    # --- rounds (iterative CroCo: core.rounds)
    round_init: RoundInit = Field(
        "base", description="rounds after the first: train a new adapter on the base, or on the previous round's model"
    )
    round_reference: RoundReference = Field(
        "initial", description="rounds after the first: DPO reference = the initial model, or the previous round's"
    )
    # --- experiment tracking
    tracker: Tracker = Field("trackio", description="where training and evaluation report")
    tracking_project: str = Field(DEFAULT_PROJECT, description="the tracker's project")
    tracking_dir: str = Field("tracking", description="the tracker's local folder (CROCO_TRACKING_DIR)")

    def samples_for(self, language: str) -> int:
        """Answers sampled per training prompt in ``language``."""
        return (self.samples_per_prompt_by_language or {}).get(language, self.samples_per_prompt)

    def sampling(self, language: str | None = None) -> SamplingConfig:
        """Training-sample settings (``language`` None: ``samples_per_prompt``, for a language:
        :meth:`samples_for`). Generators seed every prompt from ``seed`` and the prompt itself,
        so a resumed or sharded run samples each prompt exactly as one clean run would."""
        return SamplingConfig(
            n=self.samples_per_prompt if language is None else self.samples_for(language),
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


class PolicySettings(BaseModel):
    """A generating model: the policy (and, with their own profile values, the judge and the translator).
    Served by vLLM where installed, else by transformers ``generate``."""

    model: str = Field(EMBEDDED_POLICY, description="a local folder, a Hugging Face id or an embedded: spec")
    backend: Backend = Field("auto", description="auto (vLLM when installed) | vllm | transformers")
    max_model_len: Optional[int] = Field(
        1024, description="prompt + answer tokens; None: the model's own context length"
    )
    dtype: str = Field(
        "auto", description="auto: on a CPU bfloat16 only with native bf16 instructions, else float32; GPUs bf16"
    )
    cpu_threads: Optional[int] = Field(None, description="on a CPU: None = every core this process may use")
    gpu_memory_utilization: float = Field(0.85, description="vLLM's share of GPU memory")
    tensor_parallel_size: int = Field(1, description="GPUs per engine")
    max_lora_rank: int = Field(16, description="largest LoRA rank vLLM serves")
    adapter_serving: ServingMode = Field(
        "auto", description="tuned models: auto = LoRA on a GPU, merged into the weights on a CPU"
    )
    keep_loaded: bool = Field(False, description="share one engine between the steps of one process")
    trust_remote_code: bool = Field(
        False,
        description="run the Python code a model repository ships (custom architectures, tokenizers); off unless you "
        "trust that repository: its code runs as your user, wherever the step runs",
    )

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
            trust_remote_code=self.trust_remote_code,
        )


class RewardSettings(BaseModel):
    """The reward scorer: a Hugging Face sequence-classification reward model (e.g.
    ``Skywork/Skywork-Reward-V2-Qwen3-8B``), or the embedded language-fidelity demo scorer."""

    backend: RewardBackend = Field("language_fidelity", description="language_fidelity | sequence_classifier")
    model: Optional[str] = Field(None, description="the reward model (sequence_classifier)")
    max_length: int = Field(4096, description="longest scored conversation, in tokens")
    overflow: Overflow = Field("truncate", description="longer conversations: truncate, or skip and count them")
    batch_size: int = Field(8, description="conversations per forward pass")
    trust_remote_code: bool = Field(
        False,
        description="run the Python code a model repository ships (custom architectures, tokenizers); off unless you "
        "trust that repository: its code runs as your user, wherever the step runs",
    )

    def scorer_options(self) -> dict:
        """``open_scorer`` keyword arguments as plain values (a Ray worker can receive them)."""
        return dict(
            backend=self.backend,
            model=self.model,
            max_length=self.max_length,
            overflow=self.overflow,
            batch_size=self.batch_size,
            trust_remote_code=self.trust_remote_code,
        )


def parse_assignments(schema: type[BaseModel], assignments: list[str], option: str = "--set") -> dict:
    """``KEY=VALUE`` texts (a command line's ``--set``) as field values of ``schema``, each validated as
    its field's type; ``none``/``null`` is None, ``[...]``/``{...}``/``true``/``false`` are read as JSON."""
    values = {}
    for assignment in assignments:
        key, sep, text = assignment.partition("=")
        key, text = key.strip(), text.strip()
        if not sep or key not in schema.model_fields:
            raise ValueError(
                f"{option} {assignment!r}: use KEY=VALUE with KEY one of the settings of resources.settings.config "
                "(croco generate --help lists them with their defaults)"
            )
        adapter = TypeAdapter(schema.model_fields[key].annotation)
        try:
            if text.lower() in ("none", "null"):
                values[key] = None
            elif text[:1] in "[{" or text in ("true", "false"):
                values[key] = adapter.validate_json(text)
            else:
                values[key] = adapter.validate_python(text)
        except ValidationError as error:
            reason = error.errors()[0]["msg"]
            raise ValueError(f"{option} {assignment!r}: {reason}") from None
    return values
