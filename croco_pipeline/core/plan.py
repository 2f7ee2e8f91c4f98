"""A run's plan before it starts: per language and stage, how many prompts, samples and tokens, how many
pairs, and for every checkpoint the schedule that training will follow (``croco plan``).

Nothing is loaded but the prompt source (and the translator's tokenizer where the authors' length filter
applies): counts of machine translations and pairs are upper bounds (a translation can be refused, a
prompt can yield no pair). For GPU profiles the plan also estimates GPU-hours per stage from throughput
rates: model FLOPs utilisation measured by ``benchmarks/gpu_throughput.py`` for training and scoring, and a
decoding rate for generation that the caller gives (or the stated assumption).

The settings object is the pipeline's (``PipelineSettings``); only its fields are read.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import polars as pl

from croco_pipeline.core.prompts.sources import PromptSourceSettings, language_prompts, load_prompt_source
from croco_pipeline.core.rounds import round_asset
from croco_pipeline.core.training.config import TrainingSettings
from croco_pipeline.core.training.schedule import TrainingSchedule, plan_training

# Parameters of the paper's models (for FLOPs); other models: give --policy-parameters / --reward-parameters.
KNOWN_PARAMETERS = {
    "utter-project/EuroLLM-9B-Instruct-2512": 9.15e9,
    "CohereLabs/tiny-aya-global": 3.35e9,
    "Skywork/Skywork-Reward-V2-Qwen3-8B": 8.2e9,
    "Skywork/Skywork-Reward-V2-Qwen3-0.6B": 0.6e9,
}


@dataclass(frozen=True)
class Rates:
    """Throughput on one GPU, for the GPU-hours estimate.

    ``training_mfu`` and ``scoring_mfu`` are what ``benchmarks/gpu_throughput.py`` measured on one H100 for a
    0.37B model (LoRA-DPO with gradient checkpointing 8.9 %, reward scoring through the pipeline's scorer
    14.7 %): a 9B model fills the GPU better, so hours from them are upper bounds. ``decode_tokens_per_second``
    (generation, one GPU, vLLM, large batches) was not measured: the default is an assumption."""

    peak_tflops: float = 989.0  # dense bf16, H100 SXM / H200
    training_mfu: float = 0.089
    scoring_mfu: float = 0.147
    decode_tokens_per_second: float = 2500.0
    decode_measured: bool = False

    def describe(self) -> str:
        decode = "given" if self.decode_measured else "assumed, not measured: pass --decode-tokens-per-second"
        return (
            f"one GPU at {self.peak_tflops:g} TFLOPS dense bf16; training at {self.training_mfu:.1%} MFU and scoring "
            f"at {self.scoring_mfu:.1%} MFU (benchmarks/gpu_throughput.py, a 0.37B model on an H100: upper bounds "
            f"for a 9B model); generation at {self.decode_tokens_per_second:,.0f} tokens/s ({decode})"
        )


@dataclass
class CheckpointPlan:
    name: str
    language: str | None
    schedule: TrainingSchedule
    problems: list[str]
    tokens: int  # upper bound of tokens processed per epoch-step sum (for the estimate)


@dataclass
class LanguagePlan:
    language: str
    own_prompts: dict[str, int]
    translated_prompts: dict[str, int]  # upper bound: every translation accepted
    dropped_too_long: int
    train_prompts: int
    samples: int
    max_new_tokens: int
    heldout: str
    checkpoints: list[CheckpointPlan] = field(default_factory=list)

    @property
    def generated_tokens(self) -> int:
        return self.samples * self.max_new_tokens


@dataclass
class RunPlan:
    profile: str
    source: str
    languages: list[LanguagePlan]
    pooled: list[CheckpointPlan]
    min_optimizer_steps: int
    group: list[str] = field(default_factory=list)  # the cross-language group the pooled checkpoints train on
    gpu_hours: dict[str, float] | None = None
    rates: Rates | None = None
    rounds: int = 1
    round_settings: str = ""  # round_init / round_reference, as the plan prints them
    round_policies: tuple[str, ...] = ("language",)  # the later rounds' chains (CROCO_ROUND_POLICY)

    @property
    def checkpoints(self) -> list[CheckpointPlan]:
        return [c for plan in self.languages for c in plan.checkpoints] + self.pooled

    @property
    def would_not_learn(self) -> list[CheckpointPlan]:
        return [c for c in self.checkpoints if c.problems]


def plan_run(
    settings,
    languages: list[str],
    storage_base: str,
    storage_options: dict | None = None,
    *,
    devices: int = 1,
    tokenizer=None,
    rates: Rates | None = None,
    policy_parameters: float | None = None,
    reward_parameters: float | None = None,
    rounds: int = 1,
    round_policies: tuple[str, ...] = ("language",),
) -> RunPlan:
    """The plan of ``settings`` for ``languages``; ``tokenizer`` (the translator's) applies the authors'
    length filter when ``settings.translation_max_input_tokens`` is set. With ``rates`` and known model
    sizes, GPU-hours per stage are estimated. ``rounds`` > 1 adds the later rounds (``core.rounds``): each
    samples, scores and trains again per language, bounded like round 0, in the chains ``round_policies``
    names (the multilingual one trains a pooled checkpoint per round)."""
    from croco_pipeline.core.prompts.translation import conversations_over_limit

    source_settings = PromptSourceSettings.of(settings)
    source = load_prompt_source(source_settings, storage_base, storage_options)
    too_long: set[str] = set()
    if source is not None and settings.translation_max_input_tokens and tokenizer is not None:
        too_long = conversations_over_limit(
            source.filter(pl.col("language") == "en"),
            tokenizer,
            settings.translation_style,
            settings.translation_max_input_tokens,
        )
    dpo, sft = settings.dpo_settings(), settings.sft_settings()
    plans = []
    for language in languages:
        chosen = language_prompts(language, source, too_long)
        own = _split_counts(chosen.own)
        translated = _split_counts(chosen.to_translate)
        train = own.get("train", 0) + translated.get("train", 0)
        if settings.max_train_prompts is not None:
            train = min(train, settings.max_train_prompts)
        plan = LanguagePlan(
            language=language,
            own_prompts=own,
            translated_prompts=translated,
            dropped_too_long=chosen.dropped_too_long,
            train_prompts=train,
            samples=train * settings.samples_for(language),
            max_new_tokens=settings.max_new_tokens,
            heldout=_heldout(settings, own.get("heldout", 0) + translated.get("heldout", 0)),
        )
        # Upper bounds: every prompt yields a pair (DPO) and a best-of-N record (SFT).
        plan.checkpoints = [
            _checkpoint("dpo_checkpoint", language, dpo, train, devices, settings.min_optimizer_steps, 2),
            _checkpoint("sft_checkpoint", language, sft, train, devices, settings.min_optimizer_steps, 1),
        ]
        plan.checkpoints += [
            _checkpoint(
                round_asset("dpo_checkpoint", k), language, dpo, train, devices, settings.min_optimizer_steps, 2
            )
            for k in range(1, rounds)
            if "language" in round_policies
        ]
        plans.append(plan)
    # The multilingual checkpoints train on one pair per conceptual prompt of the language group.
    group = settings.cross_language_languages or languages
    pooled_examples = len(
        set().union(
            *(_train_ids(language_prompts(code, source, too_long), settings.max_train_prompts) for code in group)
        )
    )
    pooled = [
        _checkpoint(
            "multilingual_dpo_checkpoint", None, dpo, pooled_examples, devices, settings.min_optimizer_steps, 2
        ),
        _checkpoint(
            "multilingual_sft_checkpoint", None, sft, pooled_examples, devices, settings.min_optimizer_steps, 1
        ),
    ]
    if "multilingual" in round_policies:
        pooled += [
            _checkpoint(
                round_asset("multilingual_dpo_checkpoint", k),
                None,
                dpo,
                pooled_examples,
                devices,
                settings.min_optimizer_steps,
                2,
            )
            for k in range(1, rounds)
        ]
    run = RunPlan(
        settings.profile, source_settings.describe(), plans, pooled, settings.min_optimizer_steps, list(group)
    )
    run.rounds = rounds
    run.round_policies = tuple(round_policies)
    run.round_settings = f"round_init={settings.round_init}, round_reference={settings.round_reference}"
    if rates is not None and policy_parameters and reward_parameters:
        run.gpu_hours = estimate_gpu_hours(run, settings, rates, policy_parameters, reward_parameters)
        run.rates = rates
    return run


def estimate_gpu_hours(
    run: RunPlan, settings, rates: Rates, policy_parameters: float, reward_parameters: float
) -> dict[str, float]:
    """GPU-hours per stage, upper bounds (every answer at its token limit, every sequence at max length)."""
    peak = rates.peak_tflops * 1e12
    samples = sum(plan.samples for plan in run.languages)
    generated = sum(plan.generated_tokens for plan in run.languages)
    translated = sum(sum(plan.translated_prompts.values()) for plan in run.languages)
    # scoring reads prompt + answer; prompts are short next to 4096-token answers, counted as 512 tokens
    scored_tokens = samples * (settings.max_new_tokens + 512)
    training_flops = sum(6 * policy_parameters * c.tokens for c in run.checkpoints)
    # every round samples and scores again (the later rounds' checkpoints are in run.checkpoints already)
    return {
        "translation": translated * settings.translation_max_new_tokens / rates.decode_tokens_per_second / 3600,
        "generation": run.rounds * generated / rates.decode_tokens_per_second / 3600,
        "scoring": run.rounds * 2 * reward_parameters * scored_tokens / (peak * rates.scoring_mfu) / 3600,
        "training": training_flops / (peak * rates.training_mfu) / 3600,
    }


# The steps of croco_job (round 0) and of round<k>_job that open models, per language, and how many each
# opens: (step, models, loads). Generation and scoring can serve several languages in one step.
ROUND_0_MODEL_STEPS = (
    ("generations", "policy", 1),
    ("reward_scores", "reward model", 1),
    ("dpo_checkpoint", "policy, training", 1),
    ("base_answers", "policy + reward model", 2),
    ("evaluation", "tuned policy + reward model (+ judge)", 2),
    ("reward_model_transfer", "reward model", 1),
)
LATER_ROUND_MODEL_STEPS = (
    ("policy", "merge the previous adapter", 1),
    ("generations", "the round's policy", 1),
    ("reward_scores", "reward model", 1),
    ("dpo_checkpoint", "policy, training", 1),
    ("evaluation", "tuned policy + reward model (+ judge)", 2),
)
# The multilingual chain (CROCO_ROUND_POLICY=multilingual) opens the same models in the same stages of a later
# round (``round<k>_multilingual_<stage>``), but merges and trains once for all languages.
POOLED_STAGES = ("policy", "dpo_checkpoint")
ONE_RUN_STAGES = ("generations", "reward_scores")


@dataclass(frozen=True)
class ModelLoads:
    per_language_runs: int  # every step its own run per language
    one_run_per_stage: int  # generations and reward scores in one run over every language (single-run backfill)
    by_step: dict[str, int]  # step -> loads, per-language runs


def model_loads(
    languages: int, rounds: int, judge: bool = False, round_policies: tuple[str, ...] = ("language",)
) -> ModelLoads:
    """How many times models are loaded for ``languages`` languages and ``rounds`` rounds of croco_job and
    of the later rounds' chains ``round_policies`` (the judge adds one load per evaluation step when it is an
    LLM)."""
    by_step: dict[str, int] = {}
    one_run = 0

    def count(name: str, loads: int, shared: bool, pooled: bool = False) -> None:
        nonlocal one_run
        loads += 1 if judge and name.endswith("evaluation") else 0
        by_step[name] = loads if pooled else loads * languages
        one_run += loads if shared or pooled else loads * languages

    for step, _, loads in ROUND_0_MODEL_STEPS:
        count(step, loads, step in ONE_RUN_STAGES)
    for k in range(1, rounds):
        if "language" in round_policies:
            for step, _, loads in LATER_ROUND_MODEL_STEPS:
                # each language samples from its own merged policy; the reward model is everyone's
                count(round_asset(step, k), loads, step == "reward_scores")
    if rounds > 1 and "multilingual" in round_policies:
        count("multilingual_dpo_checkpoint", 1, False, pooled=True)
        count("multilingual_evaluation", 2, False)
        for k in range(1, rounds):
            for step, _, loads in LATER_ROUND_MODEL_STEPS:
                name = round_asset(f"multilingual_{step}", k)
                count(name, loads, step in ONE_RUN_STAGES, pooled=step in POOLED_STAGES)
    return ModelLoads(sum(by_step.values()), one_run, by_step)


def _checkpoint(
    name: str,
    language: str | None,
    settings: TrainingSettings,
    examples: int,
    devices: int,
    min_steps: int,
    sequences_per_example: int,
) -> CheckpointPlan:
    schedule = plan_training(settings, examples, devices)
    if settings.max_steps > 0:
        processed = schedule.optimizer_steps * schedule.effective_batch
    else:
        processed = math.ceil(schedule.epochs * schedule.train_examples)
    tokens = processed * sequences_per_example * settings.max_length
    return CheckpointPlan(name, language, schedule, schedule.problems(min_steps), tokens)


def _split_counts(frame: pl.DataFrame | None) -> dict[str, int]:
    if frame is None or frame.is_empty():
        return {}
    return dict(frame.group_by("split").len().sort("split").iter_rows())


def _train_ids(chosen, limit: int | None) -> set[str]:
    frames = [f for f in (chosen.own, chosen.to_translate) if f is not None and not f.is_empty()]
    if not frames:
        return set()
    train = pl.concat([f.select("prompt_id", "split") for f in frames]).filter(pl.col("split") == "train")
    ids = sorted(set(train["prompt_id"]))
    return set(ids if limit is None else ids[:limit])


def _heldout(settings, heldout_prompts: int) -> str:
    source = settings.heldout_source
    if source in ("arena", "auto"):
        fallback = ", else the prompts' held-out split" if source == "auto" else " (an error if it cannot be loaded)"
        return f"m-ArenaHard v2.1, loaded when evaluating{fallback}"
    if source != "shipped":
        return f"file {source}"
    if not heldout_prompts:
        return "none: the prompts have no held-out split (the evaluation would fail)"
    limit = settings.max_eval_prompts
    count = min(heldout_prompts, limit) if limit else heldout_prompts
    return f"the prompts' held-out split, {count} prompts × {settings.eval_samples_per_prompt} answers"


def format_plan(run: RunPlan) -> str:
    """The plan as text a person reads before starting the run."""
    lines = [f"Plan for profile {run.profile!r}; prompts from {run.source}.", ""]
    for plan in run.languages:
        own = ", ".join(f"{n} {split}" for split, n in plan.own_prompts.items()) or "none"
        translated = ", ".join(f"≤ {n} {split}" for split, n in plan.translated_prompts.items())
        prompts = f"own {own}" + (f"; machine-translated {translated}" if translated else "")
        if plan.dropped_too_long:
            prompts += f"; {plan.dropped_too_long} conversations too long to translate, dropped"
        per_prompt = plan.samples // max(plan.train_prompts, 1)
        lines += [
            f"{plan.language}  prompts      {prompts}",
            f"    generations  {plan.train_prompts} training prompts × {per_prompt} samples = "
            f"{plan.samples:,} answers, ≤ {plan.generated_tokens:,} new tokens",
            f"    pairs        ≤ {plan.train_prompts} (one per prompt that has a sample below its best)",
            f"    held-out     {plan.heldout}",
        ]
    if run.rounds > 1:
        later = "round 1" if run.rounds == 2 else f"rounds 1–{run.rounds - 1}"
        sources = {
            "language": "its language's own",
            "multilingual": "the one multilingual checkpoint, trained again each round on cross-language pairs",
        }
        lines += [
            "",
            f"Rounds: {run.rounds} (round 0, then {later}, each sampling from the previous round's checkpoint: "
            f"{'; in a second chain, '.join(sources[policy] for policy in run.round_policies)}; "
            f"{run.round_settings}): every round generates, scores, pairs and trains again "
            "per language, with the bounds above (CROCO_ROUNDS, CROCO_ROUND_POLICY, croco demo --rounds).",
        ]
    loads = model_loads(len(run.languages), run.rounds, round_policies=run.round_policies)
    lines += [
        "",
        f"Model loads for croco_job{' and the rounds' if run.rounds > 1 else ''} in {len(run.languages)} languages: "
        f"{loads.per_language_runs} with one run per language; {loads.one_run_per_stage} when generations and "
        "reward scores run once over every language (a backfill of sampling_job or of a later round's sampling: "
        "one load per stage; a later round's own-language policy differs per language); the LLM judge adds one "
        "per evaluation step.",
    ]
    lines += ["", f"Checkpoints (the multilingual ones pool {', '.join(run.group)}):", *_checkpoint_table(run)]
    if run.gpu_hours:
        lines += ["", f"GPU-hours, upper bounds ({run.rates.describe()}):"]
        lines += [f"  {stage:<12} {hours:>10,.1f}" for stage, hours in run.gpu_hours.items()]
        lines.append(f"  {'total':<12} {sum(run.gpu_hours.values()):>10,.1f}")
    bad = run.would_not_learn
    lines.append("")
    if not bad:
        lines.append(
            f"Every checkpoint takes at least {run.min_optimizer_steps} optimizer steps at a learning rate above 0."
        )
        return "\n".join(lines)
    lines.append(
        f"{len(bad)} of {len(run.checkpoints)} checkpoints would not learn (the minimum is "
        f"{run.min_optimizer_steps} optimizer steps, at a learning rate above 0):"
    )
    for checkpoint in bad:
        lines.append(f"  {checkpoint.name} ({checkpoint.language or 'all'}): {'; '.join(checkpoint.problems)}.")
    lines.append(
        "  Change: more prompts (settings.prompt_dataset or prompt_file, max_train_prompts), more epochs "
        "(training_epochs), a fixed step count (training_max_steps) or a smaller effective batch "
        "(training_effective_batch_size); --set KEY=VALUE tries a value here."
    )
    return "\n".join(lines)


_COLUMNS = ("checkpoint", "lang", "examples", "eval", "batch", "accum", "steps", "warmup", "lr first", "lr last", "")


def _checkpoint_table(run: RunPlan) -> list[str]:
    """One row per checkpoint: examples, eval split, effective batch, accumulation, steps, warmup, rates."""
    rows = [_COLUMNS]
    for c in run.checkpoints:
        s = c.schedule
        rows.append(
            (
                c.name,
                c.language or "all",
                str(s.examples),
                str(s.eval_examples),
                str(s.effective_batch),
                str(s.accumulation),
                str(s.optimizer_steps),
                str(s.warmup_steps),
                f"{s.first_learning_rate:.3g}",
                f"{s.last_learning_rate:.3g}",
                "✗ would not learn" if c.problems else "✓",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(_COLUMNS))]
    return ["  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
