"""Names shared by assets, jobs, sensors and commands, written once."""

MODEL_POOL = "croco_accelerator"
"""Pool of the assets that load a model on the accelerator (generations, reward_scores, checkpoints,
evaluation): ``@asset(..., pool=MODEL_POOL)``. Limit it to one slot per GPU with
``dagster instance concurrency set croco_accelerator 1`` (or ``concurrency: pools: default_limit: 1`` in
``$DAGSTER_HOME/dagster.yaml``); without a limit Dagster does not restrict the pool."""

# Asset groups. Each job runs exactly the assets of its groups.
CROCO_GROUP = "croco"  # per language: prompts → generations → reward_scores → pairs → dpo_checkpoint
EVALUATION_GROUP = "evaluation"  # per language: base answers, the DPO checkpoint's evaluation, RM transfer
BASELINES_GROUP = "baselines"  # per language: SFT on best-of-N and its evaluation
CROSS_LANGUAGE_GROUP = "cross_language"  # all languages pooled: pairs, multilingual DPO and SFT checkpoints
MULTILINGUAL_EVALUATION_GROUP = "multilingual_evaluation"  # the multilingual checkpoints, per language
REPORT_GROUP = "report"  # the comparison over every language and system

# Jobs.
CROCO_JOB = "croco_job"  # one language end to end (what the language-registry sensor and `croco demo` run)
BASELINES_JOB = "baselines_job"
CROSS_LANGUAGE_JOB = "cross_language_job"
MULTILINGUAL_EVALUATION_JOB = "multilingual_evaluation_job"
REPORT_JOB = "report_job"
# generations and reward_scores only: launched over a range of languages (a single-run backfill, or
# `croco demo --one-run-per-stage`), each model loads once for all of them.
SAMPLING_JOB = "sampling_job"
# EuroEval (the euroeval_scores asset of the evaluation group): hours on a GPU, so croco_job leaves it out.
EUROEVAL_ASSET = "euroeval_scores"
EUROEVAL_JOB = "euroeval_job"
