"""Does an embedded training recipe learn? Train on one language's demo data with a recipe, then measure
what the demo reports: the loss of the first and the last step, and the mean loss of the first and the
last epoch (a step's loss is that of one small batch), for DPO also the final reward margin;
and on held-out prompts the win rate of the tuned model over its base (judged by the profile's reward
scorer), the share of answers in the target language, multiple-choice accuracy (forgetting), and how
many answers moved at all: the share of (prompt, sample) answers that differ from the base's, and the
share of prompts with at least one differing answer. Answers are sampled with the same per-prompt
seeds, so an unchanged model gives the base's answers again. It also says how the tuned model was
served (merged, and how much of the adapter the served weights keep).

Run the demo (``croco demo``, with ``--full`` for the SFT records) for the language first, so that its
``preference_pairs`` (DPO) or ``sft_records`` (SFT) exist:

    python benchmarks/training_recipe.py --storage croco_data --language da \\
        --recipe lr=5e-4,epochs=4 --recipe lr=1e-3,epochs=2,top_layers=8
    python benchmarks/training_recipe.py --kind sft --storage croco_data --language cy \\
        --recipe lr=2e-4,epochs=2 --recipe lr=1e-3,epochs=4

Each ``--recipe`` is ``key=value`` pairs over the embedded preset's fields (``lr``, ``epochs``, ``steps``
(max_steps), ``batch``, ``top_layers``, ``r``, ``max_length``, ``seed`` (the preset's is 42, the demo's
0); DPO: ``beta``; SFT: ``loss`` =
full_sequence | completion_only). The base model's answers are sampled once and shared by every recipe;
tuned answers are sampled from the merged adapter with the same seeds. Prints one line per recipe and a
table at the end.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

KEYS = {
    "lr": "learning_rate",
    "epochs": "num_train_epochs",
    "steps": "max_steps",
    "batch": "per_device_train_batch_size",
    "beta": "beta",
    "max_length": "max_length",
    "loss": "loss",
    "seed": "seed",
}
# What each kind trains on (an asset of the demo) and with which preset.
DATA_ASSET = {"dpo": "preference_pairs", "sft": "sft_records"}


def recipe_settings(text: str, kind: str = "dpo"):
    """The embedded DPO or SFT preset with the recipe's ``key=value`` changes."""
    from croco_pipeline.core.training.config import DPOSettings, SFTSettings

    settings = DPOSettings.embedded() if kind == "dpo" else SFTSettings.embedded()
    lora = settings.lora
    for item in filter(None, text.split(",")):
        key, _, value = item.partition("=")
        if key in ("top_layers", "r"):
            lora = dataclasses.replace(
                lora, **{key: int(value)} if key == "top_layers" else {"r": int(value), "alpha": 2 * int(value)}
            )
        elif key in KEYS and hasattr(settings, KEYS[key]):
            field = KEYS[key]
            kind_of = type(getattr(settings, field))
            settings = dataclasses.replace(
                settings, **{field: kind_of(float(value)) if kind_of is int else kind_of(value)}
            )
        else:
            known = [key for key, field in KEYS.items() if hasattr(settings, field)]
            raise SystemExit(f"unknown {kind} recipe key {key!r}; use {', '.join([*known, 'top_layers', 'r'])}")
    return dataclasses.replace(settings, lora=lora)


def epoch_mean(steps: list[dict], first: bool) -> float:
    """Mean loss of the steps of the first (or the last) epoch; ``steps`` are the logged training steps."""
    import math

    epoch = math.ceil(steps[0]["epoch"]) if first else math.ceil(steps[-1]["epoch"])
    losses = [step["loss"] for step in steps if math.ceil(step["epoch"]) == epoch]
    return sum(losses) / len(losses)


def moved(judgments) -> tuple[float, float]:
    """Share of answers that differ from the base's answer to the same prompt and seed, and share of
    prompts with at least one such answer."""
    import polars as pl

    differs = judgments.with_columns((pl.col("tuned_response") != pl.col("base_response")).alias("differs"))
    per_prompt = differs.group_by("prompt_id").agg(pl.col("differs").any())
    return float(differs["differs"].mean()), float(per_prompt["differs"].mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kind", choices=sorted(DATA_ASSET), default="dpo", help="what to train (default: dpo)")
    parser.add_argument("--storage", default="croco_data")
    parser.add_argument("--language", default="da")
    parser.add_argument("--recipe", action="append", default=[], help="e.g. lr=5e-4,epochs=4 (repeatable)")
    parser.add_argument("--eval-samples", type=int, default=4, help="answers per held-out prompt")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--dtype", default="auto", help="the policy engine's dtype (default: the profile's choice)")
    parser.add_argument("--no-mc", action="store_true", help="skip the multiple-choice evaluation")
    args = parser.parse_args()

    import polars as pl

    from croco_pipeline.core.evaluation.heldout import load_heldout_prompts
    from croco_pipeline.core.evaluation.multiple_choice import load_mc_tasks, mc_summary, score_choices
    from croco_pipeline.core.evaluation.versus_base import Judging, evaluate_system
    from croco_pipeline.core.models.lifetime import open_adapter_generator, open_policy_generator
    from croco_pipeline.core.models.reward_scorers import open_scorer
    from croco_pipeline.core.models.specs import resolve_model
    from croco_pipeline.core.sampling.config import SamplingConfig
    from croco_pipeline.core.sampling.samples import sample_answers
    from croco_pipeline.core.sampling.scoring import add_rewards
    from croco_pipeline.core.settings import PolicySettings
    from croco_pipeline.core.training.trainer import train_dpo, train_sft

    policy = PolicySettings()  # the embedded policy (a profile states only what differs from these)
    model = resolve_model(policy.model)
    folder = Path(args.storage) / DATA_ASSET[args.kind] / f"language={args.language}"
    data = pl.read_parquet(folder / "*.parquet")
    train = train_dpo if args.kind == "dpo" else train_sft
    heldout = load_heldout_prompts(args.language, "shipped", None).prompts
    sampling = SamplingConfig(n=args.eval_samples, max_new_tokens=args.max_new_tokens, seed=1)
    options = dict(backend="auto", max_model_len=policy.max_model_len, seed=0, dtype=args.dtype)

    started = time.perf_counter()
    with open_policy_generator(model, **options) as generator:
        base = sample_answers(
            generator, heldout, args.language, sampling, respond_in_language=True, model_label="base"
        )
    with open_scorer("language_fidelity") as scorer:
        base = add_rewards(base, scorer)
    base_mc = None if args.no_mc else mc_summary(score_choices(model, load_mc_tasks(args.language)))["accuracy"]
    print(f"base answers and MC in {time.perf_counter() - started:.0f} s; {len(data)} training rows", flush=True)

    rows = []
    for text in args.recipe:
        settings = recipe_settings(text, args.kind)
        with tempfile.TemporaryDirectory() as scratch:
            adapter = str(Path(scratch) / "adapter")
            started = time.perf_counter()
            result = train(model, data, adapter, settings)
            train_s = time.perf_counter() - started
            steps = [entry for entry in result.log_history if "loss" in entry]
            started = time.perf_counter()
            evaluated = evaluate_system(
                language=args.language,
                system="recipe",
                base_answers=base,
                adapter_path=adapter,
                open_policy=lambda: open_adapter_generator(model, adapter, **options),
                open_scorer=lambda: open_scorer("language_fidelity"),
                open_judge=None,
                sampling=sampling,
                respond_in_language=True,
                model_label="smollm2",
                judging=Judging(seed=0, max_new_tokens=0, temperature=0.0, prompt_style="croco", tie_handling="half"),
                multiple_choice=lambda: (
                    None
                    if args.no_mc
                    else mc_summary(score_choices(model, load_mc_tasks(args.language), adapter_path=adapter))
                ),
            )
            eval_s = time.perf_counter() - started
        row = evaluated.summary.row(0, named=True)
        answers_differ, prompts_differ = moved(evaluated.judgments)
        rows.append(
            {
                "recipe": text,
                "steps": len(steps),
                "train_s": round(train_s, 1),
                "eval_s": round(eval_s, 1),
                "first_loss": round(steps[0]["loss"], 3),
                "final_loss": round(steps[-1]["loss"], 3),
                # the mean over the first and the last epoch's steps: a step's loss is one batch's, noisy
                "first_epoch_loss": round(epoch_mean(steps, first=True), 3),
                "last_epoch_loss": round(epoch_mean(steps, first=False), 3),
                **({"final_margin": round(steps[-1]["rewards/margins"], 3)} if args.kind == "dpo" else {}),
                "answers_differ": round(answers_differ, 2),
                "prompts_differ": round(prompts_differ, 2),
                "win_rate": round(row["win_rate"], 1),
                "se": round(row["standard_error"], 1),
                "reward_base": round(row["base_mean_reward"], 4),
                "reward_tuned": round(row["tuned_mean_reward"], 4),
                "share_base": round(row["base_language_share"], 2),
                "share_tuned": round(row["tuned_language_share"], 2),
                "mc_base": base_mc,
                "mc_tuned": row["mc_accuracy"],
                "served": f"{row['adapter_serving']} {row['adapter_dtype']}",
                "kept": round(row["adapter_kept_fraction"], 3) if row["adapter_kept_fraction"] is not None else None,
            }
        )
        print(rows[-1], flush=True)
    with pl.Config(tbl_rows=-1, tbl_cols=-1, tbl_width_chars=250):
        print(pl.DataFrame(rows))


if __name__ == "__main__":
    main()
