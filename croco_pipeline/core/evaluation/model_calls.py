"""The calls that load models for the evaluation steps, one per step, as plain functions of plain values
(model options, not Dagster resources), so that ``ComputeResource.call`` can run each in this process,
on Ray or inside a SLURM job. Each takes one small request object, which pickles with it.

The Dagster assets (``croco_pipeline.assets.evaluation``) only gather inputs and write outputs; what a
system is compared on, and how, is :mod:`croco_pipeline.core.evaluation.versus_base`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import polars as pl

from croco_pipeline.core.evaluation.forgetting import correct_choice_probability
from croco_pipeline.core.evaluation.multiple_choice import load_mc_tasks, mc_languages, mc_summary, score_choices
from croco_pipeline.core.evaluation.reward_transfer import load_transfer_pairs, pairwise_accuracy
from croco_pipeline.core.evaluation.versus_base import (
    Judging,
    SystemEvaluation,
    evaluate_system,
    mc_columns,
    target_language_share,
)
from croco_pipeline.core.io import storage
from croco_pipeline.core.models.lifetime import open_adapter_generator, open_policy_generator
from croco_pipeline.core.models.reward_scorers import open_scorer
from croco_pipeline.core.models.specs import resolve_model
from croco_pipeline.core.sampling.config import SamplingConfig
from croco_pipeline.core.sampling.samples import sample_answers
from croco_pipeline.core.sampling.scoring import add_rewards


@dataclass(frozen=True)
class Answering:
    """How the models answer the held-out prompts of one language: the policy's and the reward scorer's
    options (``open_policy_generator`` / ``open_scorer`` keywords), the sampling settings, and whether the
    multiple-choice set is scored too. The same for the base model and every tuned one."""

    language: str
    policy_options: dict
    scorer_options: dict
    sampling: SamplingConfig
    respond_in_language: bool
    model_label: str  # the policy as the tables name it
    multiple_choice: bool


@dataclass(frozen=True)
class CheckpointEvaluation:
    """One trained system against the base answers: its adapter (``checkpoint_path``, local or under an
    ``s3://`` base), the judge (``judge_options`` for an LLM judge, None to judge by reward) and how the
    adapter is served (``auto``: merged into the weights on a CPU, LoRA on a GPU)."""

    system: str
    checkpoint_path: str
    storage_options: dict | None
    base_answers: pl.DataFrame
    judge_options: dict | None
    judging: Judging
    adapter_serving: str = "auto"
    # The base model's p(correct) per multiple-choice question (its evaluation row's mc_p_correct), so the
    # forgetting measure pairs the same questions; None without a multiple-choice set.
    base_mc_p_correct: dict[str, float] | None = None


def multiple_choice(enabled: bool, model: str, language: str, adapter: str | None) -> dict | None:
    """Multiple-choice accuracy on the shipped task set, and the probability put on each question's correct
    choice (``p_correct``, for the paired forgetting measure); None when off or no set for the language."""
    if not enabled or language not in mc_languages():
        return None
    scored = score_choices(resolve_model(model), load_mc_tasks(language), adapter_path=adapter)
    return {**mc_summary(scored), "p_correct": correct_choice_probability(scored)}


def answer_as_base(answering: Answering, heldout: pl.DataFrame) -> tuple[pl.DataFrame, dict]:
    """The base model's scored answers to the held-out prompts, and its evaluation row."""
    language = answering.language
    with open_policy_generator(**answering.policy_options) as generator:
        answers = sample_answers(
            generator,
            heldout,
            language,
            answering.sampling,
            respond_in_language=answering.respond_in_language,
            model_label=answering.model_label,
        )
    with open_scorer(**answering.scorer_options) as scorer:
        answers = add_rewards(answers, scorer, respond_in_language=answering.respond_in_language)
    responses = answers["response"].to_list()
    row = {
        "language": language,
        "system": "base",
        "mean_reward": float(answers["reward"].mean()),
        "language_share": target_language_share(responses, language),
        "language_share_independent": target_language_share(responses, language, independent=True),
        **mc_columns(multiple_choice(answering.multiple_choice, answering.model_label, language, None)),
    }
    return answers, row


def evaluate_checkpoint(answering: Answering, request: CheckpointEvaluation) -> SystemEvaluation:
    """``evaluate_system`` on the adapter at ``request.checkpoint_path`` (downloaded first when it is remote)."""
    adapter = str(storage.local_copy(request.checkpoint_path, request.storage_options))
    options = answering.policy_options
    return evaluate_system(
        language=answering.language,
        system=request.system,
        base_answers=request.base_answers,
        adapter_path=adapter,
        open_policy=functools.partial(
            open_adapter_generator, adapter_path=adapter, serving=request.adapter_serving, **options
        ),
        open_scorer=functools.partial(open_scorer, **answering.scorer_options),
        open_judge=(
            functools.partial(open_policy_generator, **request.judge_options) if request.judge_options else None
        ),
        sampling=answering.sampling,
        respond_in_language=answering.respond_in_language,
        model_label=answering.model_label,
        judging=request.judging,
        multiple_choice=functools.partial(
            multiple_choice, answering.multiple_choice, options["model"], answering.language, adapter
        ),
        base_mc_p_correct=request.base_mc_p_correct,
    )


def transfer_accuracy(scorer_options: dict, language: str) -> tuple[pl.DataFrame, str]:
    """Pairwise accuracy of the reward scorer on the shipped reward-transfer pairs of ``language``."""
    with open_scorer(**scorer_options) as scorer:
        return pairwise_accuracy(scorer, load_transfer_pairs(language)), scorer.name
