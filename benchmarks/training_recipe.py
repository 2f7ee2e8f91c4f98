"""Does the embedded DPO recipe learn? Train on one language's demo pairs with a recipe, then measure
what the demo reports: the final DPO loss and reward margin, and on held-out prompts the win rate of
the tuned model over its base (judged by the profile's reward scorer), the share of answers in the
target language, and multiple-choice accuracy (forgetting).

Run the demo (or ``croco_job``) for the language first, so that its ``preference_pairs`` exist:

    python benchmarks/training_recipe.py --storage croco_data --language da \\
        --recipe lr=5e-4,epochs=4 --recipe lr=1e-3,epochs=2,top_layers=8

Each ``--recipe`` is ``key=value`` pairs over ``DPOSettings`` fields (``lr``, ``epochs``, ``batch``,
``top_layers``, ``r``, ``beta``, ``max_length``) applied to the embedded preset. The base model's
answers are sampled once and shared by every recipe; tuned answers are sampled from the merged
adapter with the same seeds. Prints one line per recipe and a table at the end.
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
    "batch": "per_device_train_batch_size",
    "beta": "beta",
    "max_length": "max_length",
}


def recipe_settings(text: str):
    from croco_pipeline.core.training.config import DPOSettings

    settings = DPOSettings.embedded()
    lora = settings.lora
    for item in filter(None, text.split(",")):
        key, _, value = item.partition("=")
        if key in ("top_layers", "r"):
            lora = dataclasses.replace(
                lora, **{key: int(value)} if key == "top_layers" else {"r": int(value), "alpha": 2 * int(value)}
            )
        elif key in KEYS:
            field = KEYS[key]
            kind = type(getattr(settings, field))
            settings = dataclasses.replace(settings, **{field: kind(float(value)) if kind is int else kind(value)})
        else:
            raise SystemExit(f"unknown recipe key {key!r}; use {', '.join([*KEYS, 'top_layers', 'r'])}")
    return dataclasses.replace(settings, lora=lora)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--storage", default="croco_data")
    parser.add_argument("--language", default="da")
    parser.add_argument("--recipe", action="append", default=[], help="e.g. lr=5e-4,epochs=4 (repeatable)")
    parser.add_argument("--eval-samples", type=int, default=4, help="answers per held-out prompt")
    parser.add_argument("--max-new-tokens", type=int, default=64)
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
    from croco_pipeline.core.training.trainer import train_dpo

    policy = PolicySettings()  # the embedded policy (a profile states only what differs from these)
    model = resolve_model(policy.model)
    pairs = pl.read_parquet(Path(args.storage) / "preference_pairs" / f"language={args.language}" / "*.parquet")
    heldout = load_heldout_prompts(args.language, "shipped", None).prompts
    sampling = SamplingConfig(n=args.eval_samples, max_new_tokens=args.max_new_tokens, seed=1)
    options = dict(backend="auto", max_model_len=policy.max_model_len, seed=0)

    started = time.perf_counter()
    with open_policy_generator(model, **options) as generator:
        base = sample_answers(
            generator, heldout, args.language, sampling, respond_in_language=True, model_label="base"
        )
    with open_scorer("language_fidelity") as scorer:
        base = add_rewards(base, scorer)
    base_mc = None if args.no_mc else mc_summary(score_choices(model, load_mc_tasks(args.language)))["accuracy"]
    print(f"base answers and MC in {time.perf_counter() - started:.0f} s; {len(pairs)} pairs", flush=True)

    rows = []
    for text in args.recipe:
        settings = recipe_settings(text)
        with tempfile.TemporaryDirectory() as scratch:
            adapter = str(Path(scratch) / "adapter")
            started = time.perf_counter()
            result = train_dpo(model, pairs, adapter, settings)
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
        rows.append(
            {
                "recipe": text,
                "steps": len(steps),
                "train_s": round(train_s, 1),
                "eval_s": round(eval_s, 1),
                "first_loss": round(steps[0]["loss"], 3),
                "final_loss": round(steps[-1]["loss"], 3),
                "final_margin": round(steps[-1].get("rewards/margins", float("nan")), 3),
                "win_rate": round(row["win_rate"], 1),
                "se": round(row["standard_error"], 1),
                "share_base": round(row["base_language_share"], 2),
                "share_tuned": round(row["tuned_language_share"], 2),
                "mc_base": base_mc,
                "mc_tuned": row["mc_accuracy"],
            }
        )
        print(rows[-1], flush=True)
    with pl.Config(tbl_rows=-1, tbl_cols=-1, tbl_width_chars=250):
        print(pl.DataFrame(rows))


if __name__ == "__main__":
    main()
