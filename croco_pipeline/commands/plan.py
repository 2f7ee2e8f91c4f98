"""`croco plan`: what a run will do before it starts, and whether every checkpoint would learn.

Per language and stage: prompts per split (own and machine-translated), samples and the upper bound of
generated tokens, expected pairs, and for every checkpoint the examples, effective batch, optimizer steps,
warmup and the learning rate of its first and last step; for GPU profiles an estimate of GPU-hours. Exit
status 0 when every checkpoint would learn, 1 when one would not (with the reason), 2 on a setting error.

    CROCO_PROFILE=paper CROCO_PROMPT_DATASET=my/conversations croco plan --languages da,ga
"""

from __future__ import annotations

import argparse
import sys

from croco_pipeline import envs

EXAMPLES = """examples:
  croco plan                                   # the embedded (laptop) profile on the demo's languages
  CROCO_PROFILE=paper croco plan --languages da,ga
  croco plan --profile paper --set prompt_dataset=./my-data --set training_effective_batch_size=32"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EXAMPLES
    parser.add_argument("--profile", default=None, help="configuration profile (default: $CROCO_PROFILE or embedded)")
    parser.add_argument(
        "--languages",
        default=None,
        help="comma-separated ISO 639-1 codes (default: the registered languages, else the profile's own: the "
        "paper's eleven training languages, or the demo's)",
    )
    parser.add_argument("--storage", default=None, help="storage base (default: $CROCO_STORAGE or ./croco_data)")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a pipeline setting for this plan, as in resources.settings.config (repeatable), e.g. "
        "prompt_dataset=./data or training_epochs=2",
    )
    parser.add_argument(
        "--rounds", type=int, default=None, help="rounds of CroCo (default: $CROCO_ROUNDS, else 1: round 0 only)"
    )
    parser.add_argument(
        "--round-policy",
        default=None,
        help="which checkpoint later rounds sample from: language | multilingual | language,multilingual "
        "(default: $CROCO_ROUND_POLICY, else language)",
    )
    parser.add_argument("--devices", type=int, default=1, help="GPUs training together (default 1)")
    parser.add_argument(
        "--decode-tokens-per-second",
        type=float,
        default=None,
        help="generation throughput of one GPU for the GPU-hours estimate (default: an assumption, said so)",
    )
    parser.add_argument("--policy-parameters", type=float, default=None, help="policy size, e.g. 9.15e9")
    parser.add_argument("--reward-parameters", type=float, default=None, help="reward model size, e.g. 8.2e9")


def run(args: argparse.Namespace) -> int:
    from croco_pipeline.core.plan import KNOWN_PARAMETERS, Rates, format_plan, plan_run
    from croco_pipeline.core.prompts.sets import PromptFileError
    from croco_pipeline.core.prompts.sources import DemoPromptsRefused
    from croco_pipeline.core.rounds import parse_round_policies
    from croco_pipeline.definitions import build_resources

    try:
        resources = build_resources(args.profile, None)
        settings = _with_overrides(resources["settings"], args.set)
        languages = _languages(args, settings.profile)
        storage = resources["storage_base"]
        base = args.storage or storage.base_path
        gpu = settings.profile == "paper" or args.decode_tokens_per_second is not None
        rates = None
        if gpu:
            rates = Rates()
            if args.decode_tokens_per_second:
                rates = Rates(decode_tokens_per_second=args.decode_tokens_per_second, decode_measured=True)
        plan = plan_run(
            settings,
            languages,
            base,
            storage.storage_options,
            devices=args.devices,
            tokenizer=_translator_tokenizer(resources["translator"].model, settings),
            rates=rates,
            policy_parameters=args.policy_parameters or _parameters(resources["policy"].model, KNOWN_PARAMETERS),
            reward_parameters=args.reward_parameters or _parameters(resources["reward"].model, KNOWN_PARAMETERS),
            rounds=args.rounds or envs.rounds(),
            round_policies=parse_round_policies(args.round_policy) if args.round_policy else envs.round_policies(),
        )
    except DemoPromptsRefused as error:
        print(f"croco plan: {error}", file=sys.stderr)
        print(f"croco plan: {_on_demo_prompts(settings, languages, base, args.devices)}", file=sys.stderr)
        return 2
    except (PromptFileError, ValueError) as error:
        print(f"croco plan: {error}", file=sys.stderr)
        return 2
    print(format_plan(plan))
    if rates is not None and plan.gpu_hours is None:
        print(
            "No GPU-hours estimate: the model sizes are unknown here; give --policy-parameters and "
            "--reward-parameters."
        )
    return 1 if plan.would_not_learn else 0


def _on_demo_prompts(settings, languages: list[str], base: str, devices: int) -> str:
    """What the refused run would have trained on the shipped demo prompts (why the profile refuses them)."""
    from croco_pipeline.core.plan import plan_run

    demo = plan_run(settings.model_copy(update={"allow_demo_prompts": True}), languages, base, devices=devices)
    worst = min(demo.checkpoints, key=lambda checkpoint: checkpoint.schedule.steps_that_learn)
    schedule = worst.schedule
    return (
        f"On the shipped demo prompts, {worst.name} ({worst.language or 'all'}) would train {schedule.examples} "
        f"examples in {schedule.optimizer_steps} optimizer step(s) at an effective batch of "
        f"{schedule.effective_batch}, "
        f"{schedule.steps_that_learn} of them at a learning rate above 0 (first {schedule.first_learning_rate:.3g}, "
        f"last {schedule.last_learning_rate:.3g}): it would learn nothing."
        if worst.problems
        else "On the shipped demo prompts every checkpoint would learn; set settings.allow_demo_prompts to use them."
    )


def _with_overrides(settings, assignments: list[str]):
    """``settings`` with ``KEY=VALUE`` overrides, each validated as the field's type."""
    from croco_pipeline.core.settings import parse_assignments

    return settings.model_copy(update=parse_assignments(type(settings), assignments)) if assignments else settings


def _languages(args: argparse.Namespace, profile: str) -> list[str]:
    from croco_pipeline.commands.demo import DEFAULT_LANGUAGES
    from croco_pipeline.core.languages.codes import PAPER_HIGH_RESOURCE, PAPER_LOW_RESOURCE, get_language
    from croco_pipeline.core.languages.registry import load_registry

    if args.languages:
        codes = [code.strip() for code in args.languages.split(",") if code.strip()]
    else:
        registered = [entry.code for entry in load_registry(args.storage or envs.storage_base())]
        paper = PAPER_HIGH_RESOURCE + PAPER_LOW_RESOURCE
        codes = registered or (paper if profile == "paper" else DEFAULT_LANGUAGES.split(","))
    for code in codes:
        get_language(code)
    return codes


def _parameters(spec: str | None, known: dict[str, float]) -> float | None:
    """A model's parameter count: the paper's models from a table, others from their configuration (built
    without weights) where it can be read here; None when it cannot."""
    if not spec:
        return None
    if spec in known:
        return known[spec]
    try:
        import torch
        from accelerate import init_empty_weights
        from transformers import AutoConfig, AutoModel

        from croco_pipeline.core.models.specs import resolve_model

        config = AutoConfig.from_pretrained(resolve_model(spec))
        with init_empty_weights():
            model = AutoModel.from_config(config, dtype=torch.bfloat16)
        return float(sum(parameter.numel() for parameter in model.parameters()))
    except Exception:  # noqa: BLE001 - an unreadable size only leaves the estimate out
        return None


def _translator_tokenizer(model: str, settings):
    """The translator's tokenizer, for the authors' length filter (None when it does not apply or cannot load)."""
    if not settings.translation_max_input_tokens or not (settings.prompt_file or settings.prompt_dataset):
        return None
    from croco_pipeline.core.models.specs import load_tokenizer

    try:
        return load_tokenizer(model)
    except Exception as error:  # noqa: BLE001 - the plan still helps without the filter
        print(
            f"croco plan: the length filter is not applied (the translator's tokenizer {model!r} cannot be loaded "
            f"here: {str(error).splitlines()[0]}); prompt counts are upper bounds.",
            file=sys.stderr,
        )
        return None
