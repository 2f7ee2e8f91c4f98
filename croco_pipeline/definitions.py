"""The Dagster code location: assets, resources and jobs of the CroCo pipeline.

``dg dev`` (``[tool.dg]`` in pyproject.toml) and ``dagster dev -w workspace.yaml`` load ``defs`` from here.
Resources come from the profile named by ``CROCO_PROFILE`` (see ``croco_pipeline.profiles``).
"""

from __future__ import annotations

from dagster import AssetSelection, Definitions, define_asset_job
from pydantic import TypeAdapter, create_model

from croco_pipeline import envs
from croco_pipeline.assets import evaluation, generations, pairs, prompts, rewards, training
from croco_pipeline.constants import (
    BASELINES_GROUP,
    BASELINES_JOB,
    CROCO_GROUP,
    CROCO_JOB,
    CROSS_LANGUAGE_GROUP,
    CROSS_LANGUAGE_JOB,
    EUROEVAL_ASSET,
    EUROEVAL_JOB,
    EVALUATION_GROUP,
    MULTILINGUAL_EVALUATION_GROUP,
    MULTILINGUAL_EVALUATION_JOB,
    REPORT_GROUP,
    REPORT_JOB,
    SAMPLING_JOB,
)
from croco_pipeline.profiles import resource_config
from croco_pipeline.resources.compute import compute_from_env
from croco_pipeline.resources.model_resources import PolicyResource, RewardResource
from croco_pipeline.resources.settings import PipelineSettings
from croco_pipeline.resources.storage import ParquetIOManager, StorageResource, s3_env_fields
from croco_pipeline.sensors import automation_condition, croco_schedules, croco_sensors

# Per-language stages, in pipeline order; each partition of `language` runs them all.
LANGUAGE_ASSETS = [
    prompts.prompts,
    generations.generations,
    rewards.reward_scores,
    pairs.preference_pairs,
    training.dpo_checkpoint,
    evaluation.base_answers,
    evaluation.evaluation,
    evaluation.reward_model_transfer,
]
# The paper's baseline, per language: SFT on the best-of-N samples, and its evaluation.
BASELINE_ASSETS = [training.sft_checkpoint, evaluation.sft_evaluation]
# Stages that pool every language: not partitioned, read all language partitions.
CROSS_LANGUAGE_ASSETS = [
    pairs.cross_language_pairs,
    training.multilingual_dpo_checkpoint,
    training.multilingual_sft_checkpoint,
]
# The multilingual checkpoints (DPO and the SFT baseline) evaluated in each language.
MULTILINGUAL_EVALUATION_ASSETS = [evaluation.multilingual_evaluation, evaluation.multilingual_sft_evaluation]
REPORT_ASSETS = [evaluation.croco_report]
# Per-language assets refresh nightly when stale (new partition, changed code or upstream data).
# EuroEval (evaluation group) runs only when asked: euroeval_job or the UI.
ALL_ASSETS = (
    [asset.with_attributes(automation_condition=automation_condition()) for asset in LANGUAGE_ASSETS + BASELINE_ASSETS]
    + CROSS_LANGUAGE_ASSETS
    + MULTILINGUAL_EVALUATION_ASSETS
    + REPORT_ASSETS
    + [evaluation.euroeval_scores]
)


def _group_job(name: str, groups: list[str], description: str, leave_out: tuple[str, ...] = ()):
    selection = AssetSelection.groups(*groups) - AssetSelection.assets(*leave_out)
    return define_asset_job(name, selection=selection, description=description)


croco_job = _group_job(
    CROCO_JOB,
    [CROCO_GROUP, EVALUATION_GROUP],
    "The whole chain for one language: prompts → … → evaluation.",
    leave_out=(EUROEVAL_ASSET,),
)
euroeval_job = define_asset_job(
    EUROEVAL_JOB,
    selection=AssetSelection.assets(EUROEVAL_ASSET),
    description="EuroEval for the base model and every checkpoint trained so far, in one language (GPU, hours).",
)
baselines_job = _group_job(
    BASELINES_JOB, [BASELINES_GROUP], "The SFT-on-best-of-N baseline for one language (after its pairs exist)."
)
cross_language_job = _group_job(
    CROSS_LANGUAGE_JOB,
    [CROSS_LANGUAGE_GROUP],
    "Pairs pooled over all languages, the multilingual DPO checkpoint and the multilingual SFT baseline "
    "(run after the languages' reward scores exist).",
)
multilingual_evaluation_job = _group_job(
    MULTILINGUAL_EVALUATION_JOB,
    [MULTILINGUAL_EVALUATION_GROUP],
    "The multilingual checkpoints (DPO and SFT) against the base model in one language.",
)
report_job = _group_job(
    REPORT_JOB, [REPORT_GROUP], "The comparison table and chart over every language and system evaluated so far."
)
sampling_job = define_asset_job(
    SAMPLING_JOB,
    selection=AssetSelection.assets("generations", "reward_scores"),
    description="Samples and reward scores. Over a range of languages (a backfill; both assets take a single "
    "run) each model loads once and serves every language's prompts in one batch.",
)
JOBS = [
    croco_job,
    sampling_job,
    baselines_job,
    cross_language_job,
    multilingual_evaluation_job,
    report_job,
    euroeval_job,
]


def with_profile_defaults(resource_class: type, values: dict, **fixed):
    """An instance of ``resource_class`` whose field *defaults* are the profile's values.

    Passing the values to the constructor would make them the default of the whole ``config`` block:
    run config that names one field would then reset every other field to the class default (a
    ``paper`` run asking for another seed would silently drop to the laptop's sample count).
    ``fixed`` values (e.g. ``EnvVar`` credentials, resolved only at run time) go to the constructor.
    """
    fields = {}
    for name, value in values.items():
        annotation = resource_class.model_fields[name].annotation
        # Environment overrides arrive as text ("1", "0.5"): store them as the field's type.
        fields[name] = (annotation, TypeAdapter(annotation).validate_python(value))
    profiled = create_model(resource_class.__name__, __base__=resource_class, **fields)
    profiled.__doc__ = resource_class.__doc__
    return profiled(**fixed)


def build_resources(profile: str | None = None, environ: dict | None = None) -> dict:
    config = resource_config(profile, environ)
    s3 = s3_env_fields()  # EnvVar for each S3 variable that is set; read at run time, never logged
    return {
        "io_manager": with_profile_defaults(ParquetIOManager, config["storage"], **s3),
        "storage_base": with_profile_defaults(StorageResource, config["storage"], **s3),
        "policy": with_profile_defaults(PolicyResource, config["policy"]),
        "judge_model": with_profile_defaults(PolicyResource, config["judge_model"]),
        "translator": with_profile_defaults(PolicyResource, config["translator"]),
        "reward": with_profile_defaults(RewardResource, config["reward"]),
        "settings": with_profile_defaults(PipelineSettings, config["settings"]),
        "compute": compute_from_env(environ, config.get("slurm")),
    }


def round_definitions(rounds: int, round_policies: tuple[str, ...] = ("language",)) -> tuple[list, list]:
    """The assets and jobs of rounds 1 … ``rounds``−1 (``core.rounds``) for each chain of ``round_policies``,
    and the report across rounds; nothing for one round. Each ``round<k>_job`` runs round k of the
    per-language chain for one language; the multilingual chain's round k has three jobs (sampling per
    language or as one backfill over all, training once, evaluation per language). Nothing of earlier
    rounds runs again."""
    if rounds <= 1:
        return [], []
    from croco_pipeline.assets.rounds import round_assets, rounds_report
    from croco_pipeline.core.rounds import multilingual_round_jobs, round_asset, round_group, round_job

    assets, jobs = [], []
    for k in range(1, rounds):
        if "language" in round_policies:
            assets += round_assets(k)
            jobs.append(
                _group_job(
                    round_job(k),
                    [round_group(k)],
                    f"Round {k} for one language: round {k - 1}'s checkpoint merged, sampled, scored, paired, "
                    "trained and evaluated.",
                )
            )
        if "multilingual" in round_policies:
            assets += round_assets(k, "multilingual")
            names = multilingual_round_jobs(k)
            stages = {
                "sampling": ["multilingual_policy", "multilingual_generations", "multilingual_reward_scores"],
                "training": ["cross_language_pairs", "multilingual_dpo_checkpoint"],
                "evaluation": ["multilingual_evaluation"],
            }
            descriptions = {
                "sampling": f"Round {k} of the multilingual chain: round {k - 1}'s multilingual checkpoint merged "
                "once, then sampled and scored in one language (as a backfill over every language: one run, "
                "each model loaded once).",
                "training": f"Round {k}'s cross-language pairs of every language and its multilingual checkpoint "
                "(after the sampling job has run for every language).",
                "evaluation": f"Round {k}'s multilingual checkpoint against the base model in one language.",
            }
            for phase, stage_names in stages.items():
                selection = AssetSelection.assets(*(round_asset(name, k) for name in stage_names))
                if phase != "sampling":  # multi-assets: take their other outputs too
                    selection = selection.required_multi_asset_neighbors()
                jobs.append(define_asset_job(names[phase], selection=selection, description=descriptions[phase]))
    return assets + [rounds_report(rounds, tuple(round_policies))], jobs


def build_definitions(
    profile: str | None = None,
    environ: dict | None = None,
    rounds: int | None = None,
    round_policies: tuple[str, ...] | None = None,
) -> Definitions:
    """The code location; ``rounds`` (default ``CROCO_ROUNDS``, else 1) rounds of CroCo in the graph, in
    the chains ``round_policies`` names (default ``CROCO_ROUND_POLICY``, else the per-language one)."""
    round_assets, round_jobs = round_definitions(
        rounds or envs.rounds(environ), round_policies or envs.round_policies(environ)
    )
    executor = None  # Dagster's default: every step of a run in a process of the run's pod
    if envs.executor_name(environ) == "k8s":  # every step in a pod of its own (docs/gpu_cluster.md)
        from dagster_k8s import k8s_job_executor

        executor = k8s_job_executor
    return Definitions(
        assets=ALL_ASSETS + round_assets,
        jobs=JOBS + round_jobs,
        sensors=croco_sensors,
        schedules=croco_schedules,
        resources=build_resources(profile, environ),
        executor=executor,
    )


defs = build_definitions()
