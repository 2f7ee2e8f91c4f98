"""The model-loading work of the evaluation steps, as plain functions of plain values (model options, not
Dagster resources), so that ``ComputeResource.call`` can run each in this process, on Ray or inside a
SLURM job. The Dagster assets (``croco_pipeline.assets.evaluation``) only gather inputs and write outputs.
"""

from __future__ import annotations

import functools

import polars as pl

from croco_pipeline.core.evaluation.multiple_choice import load_mc_tasks, mc_languages, mc_summary, score_choices
from croco_pipeline.core.evaluation.reward_transfer import load_transfer_pairs, pairwise_accuracy
from croco_pipeline.core.evaluation.systems import evaluate_system, mc_columns, target_language_share
from croco_pipeline.core.io import storage
from croco_pipeline.core.models.lifetime import open_adapter_generator, open_policy_generator
from croco_pipeline.core.models.reward_scorers import open_scorer
from croco_pipeline.core.models.specs import resolve_model
from croco_pipeline.core.sampling.samples import sample_answers
from croco_pipeline.core.sampling.scoring import add_rewards


def multiple_choice(enabled: bool, model: str, language: str, adapter: str | None) -> dict | None:
    """Multiple-choice accuracy on the shipped task set (None when off or no set for the language)."""
    if not enabled or language not in mc_languages():
        return None
    scored = score_choices(resolve_model(model), load_mc_tasks(language), adapter_path=adapter)
    return mc_summary(scored)


def answer_as_base(
    language: str,
    heldout: pl.DataFrame,
    policy_options: dict,
    scorer_options: dict,
    sampling,
    respond_in_language: bool,
    model_label: str,
    multiple_choice_enabled: bool,
):
    """The base model's scored answers to the held-out prompts, and its evaluation row."""
    with open_policy_generator(**policy_options) as generator:
        answers = sample_answers(
            generator,
            heldout,
            language,
            sampling,
            respond_in_language=respond_in_language,
            model_label=model_label,
        )
    with open_scorer(**scorer_options) as scorer:
        answers = add_rewards(answers, scorer, respond_in_language=respond_in_language)
    row = {
        "language": language,
        "system": "base",
        "mean_reward": float(answers["reward"].mean()),
        "language_share": target_language_share(answers["response"].to_list(), language),
        **mc_columns(multiple_choice(multiple_choice_enabled, model_label, language, None)),
    }
    return answers, row


def evaluate_checkpoint(
    checkpoint_path: str,
    storage_options: dict,
    language: str,
    policy_options: dict,
    scorer_options: dict,
    judge_options: dict | None,
    multiple_choice_enabled: bool,
    adapter_serving: str = "auto",
    **kwargs,
):
    """``evaluate_system`` on the adapter at ``checkpoint_path`` (downloaded first when it is remote), served
    as ``adapter_serving`` says (merged into the weights on a CPU, LoRA on a GPU by default)."""
    adapter = str(storage.local_copy(checkpoint_path, storage_options))
    return evaluate_system(
        language=language,
        adapter_path=adapter,
        open_policy=functools.partial(
            open_adapter_generator, adapter_path=adapter, serving=adapter_serving, **policy_options
        ),
        open_scorer=functools.partial(open_scorer, **scorer_options),
        open_judge=functools.partial(open_policy_generator, **judge_options) if judge_options else None,
        multiple_choice=functools.partial(
            multiple_choice, multiple_choice_enabled, policy_options["model"], language, adapter
        ),
        **kwargs,
    )


def transfer_accuracy(scorer_options: dict, language: str) -> tuple[pl.DataFrame, str]:
    with open_scorer(**scorer_options) as scorer:
        return pairwise_accuracy(scorer, load_transfer_pairs(language)), scorer.name
