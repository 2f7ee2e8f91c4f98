"""What does training through the Dagster asset cost, next to the same DPO run in a bare TRL script?

The same run both ways — same model, same preference pairs (the same Parquet file), same
hyperparameters, same seed, same number of steps:

  (a) asset: ``dpo_checkpoint`` materialised in process for one language partition, as
      ``materialize(ALL_ASSETS, selection=["dpo_checkpoint"], partition_key=...)`` against the
      pipeline's own resources (``build_definitions``). Its upstream ``preference_pairs`` is
      materialised once beforehand, untimed, by the real pairing asset from a synthetic
      ``reward_scores`` table written where the IO manager reads it. The timed call includes what the
      asset does around training: the Dagster run and its events, loading the pairs through the IO
      manager, the manifest, the training-curves PNG, publishing the adapter under the storage base
      and writing the checkpoint row.
  (b) bare: a plain TRL script written here (it does not call ``croco_pipeline``'s ``train_dpo``):
      read the pairs Parquet, load the model, ``LoraConfig``, ``DPOConfig``, ``DPOTrainer(...).train()``,
      ``save_model``.

The bare script spells its hyperparameters out itself; before anything runs they are compared,
field by field, with what the asset would use (``DPOSettings.embedded()`` with the step count), and
after the runs the final training loss of both variants is printed: identical settings and seed give
the same loss, which shows it is the same run.

Both variants run in this one process, interleaved (a b, b a, a b, ...), after ``--warmup`` untimed
two-step runs of each (imports, lazy initialisation, page cache: first runs are slower). The asset's
preflight, which refuses runs too short to learn anything (``settings.min_optimizer_steps``), is set to
the run's own step count: these runs are timed, not meant to learn. Printed: wall seconds
of every run, this process's CPU seconds (less sensitive to other jobs on a shared machine), the
seconds inside ``trainer.train()`` (the same TRL loop in both, so their difference shows the noise),
medians, and the overhead ratio ``median(asset) / median(bare) - 1`` (also in CPU time, and as the
median of the per-round ratios, which cancels slow drifts of the machine's load). The target is at
most 5 %. On a CPU the asset trains with croco's exact shortcuts (``core/training/cpu_shortcuts.py``:
the LM head on completion tokens only, frozen layers served from memory when LoRA adapts only the top
layers), which the bare TRL script does not have, so there the asset can come out faster than bare
TRL; the final losses still agree.

    python benchmarks/training_overhead.py                 # embedded SmolLM2-135M, 8 pairs, 4 steps, 3 runs each
    python benchmarks/training_overhead.py --model tiny    # a tiny random model (smoke run)
    python benchmarks/training_overhead.py --model PATH    # any local causal-LM folder with a chat template

On a GPU the same code trains in bf16 (both variants). On a shared machine timings move with its load:
the load average is printed with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench_common import interleaved, medians, paired_median, print_load, resolve_model_arg

LANGUAGE = "da"
TARGET_OVERHEAD = 0.05

# Word list for synthetic Danish-looking prompts and answers (the pairs' content does not matter for
# timing; their length does: prompts of ~15 words, answers of 20-60 words, like the demo's 64 tokens).
_WORDS = (
    "jeg du han hun vi de det den en et er var har havde kan vil skal ikke og eller men i på til fra med "
    "om af for at som hvor hvad hvorfor hvordan hus bil by land vand brød dag nat sol regn sne skole bog "
    "mad kaffe te mælk ven familie arbejde tid år uge morgen aften god dårlig stor lille ny gammel rød "
    "blå grøn hurtig langsom let svær glad trist varm kold altid aldrig ofte nogle gange måske også"
).split()


# ---------------------------------------------------------------------------------------------------
# The bare TRL script's settings, spelled out (they must equal the asset's: checked before running)


def bare_settings(steps: int, on_cuda: bool) -> dict:
    """The hyperparameters the bare script uses: the embedded laptop DPO settings, written out."""
    return dict(
        beta=0.1,
        loss_type="sigmoid",
        learning_rate=1e-3,
        lr_scheduler_type="cosine",
        warmup_ratio=0.05,
        weight_decay=0.01,
        num_train_epochs=2.0,
        max_steps=steps,
        max_length=384,
        per_device_train_batch_size=2,
        gradient_accumulation_steps=1,
        effective_batch_size=None,  # no batch target: accumulation as given
        eval_fraction=0.0,  # no eval split
        eval_strategy="no",
        bf16=on_cuda,
        gradient_checkpointing=False,
        precompute_ref_log_probs=True,
        seed=0,
        logging_steps=1,
        lora=dict(
            r=16,
            alpha=32,
            dropout=0.05,
            target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
            top_layers=16,
        ),  # LoRA on the top 16 transformer layers only
    )


def asset_settings(steps: int) -> dict:
    """What ``dpo_checkpoint`` trains with for ``training_max_steps=steps`` (embedded profile)."""
    from croco_pipeline.resources.settings import PipelineSettings

    return PipelineSettings(training="embedded", training_max_steps=steps).dpo_settings().as_dict()


def check_same_settings(steps: int, on_cuda: bool) -> None:
    ours = asset_settings(steps)
    ours["bf16"] = ours["bf16"] and on_cuda  # the pipeline switches bf16 off without a GPU
    bare = bare_settings(steps, on_cuda)
    differ = sorted(k for k in set(ours) | set(bare) if ours.get(k) != bare.get(k))
    if differ:
        raise SystemExit(
            "the bare script's settings differ from the asset's: "
            + ", ".join(f"{k}: bare {bare.get(k)!r} vs asset {ours.get(k)!r}" for k in differ)
        )


def bare_trl_run(model_path: str, pairs_parquet: Path, output_dir: Path, steps: int) -> tuple[float, float]:
    """A plain TRL DPO run with LoRA. Returns (final train loss, seconds inside trainer.train())."""
    import polars as pl
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, PrinterCallback
    from trl import DPOConfig, DPOTrainer

    on_cuda = torch.cuda.is_available()
    s = bare_settings(steps, on_cuda)
    pairs = pl.read_parquet(pairs_parquet)
    dataset = Dataset.from_list(
        [
            {
                "prompt": [{"role": "user", "content": row["prompt"]}],
                "chosen": [{"role": "assistant", "content": row["chosen"]}],
                "rejected": [{"role": "assistant", "content": row["rejected"]}],
            }
            for row in pairs.select("prompt", "chosen", "rejected").iter_rows(named=True)
        ]
    )
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.bfloat16 if s["bf16"] else torch.float32)
    lora = s["lora"]
    layers = model.config.num_hidden_layers
    peft_config = LoraConfig(
        r=lora["r"],
        lora_alpha=lora["alpha"],
        lora_dropout=lora["dropout"],
        target_modules=lora["target_modules"],
        layers_to_transform=list(range(max(0, layers - lora["top_layers"]), layers)),
        task_type="CAUSAL_LM",
    )
    config = DPOConfig(
        output_dir=str(output_dir),
        beta=s["beta"],
        loss_type=[s["loss_type"]],
        max_length=s["max_length"],
        precompute_ref_log_probs=s["precompute_ref_log_probs"],
        learning_rate=s["learning_rate"],
        lr_scheduler_type=s["lr_scheduler_type"],
        warmup_steps=s["warmup_ratio"],  # transformers 5: a float in [0, 1) is a ratio
        weight_decay=s["weight_decay"],
        num_train_epochs=s["num_train_epochs"],
        max_steps=s["max_steps"],
        per_device_train_batch_size=s["per_device_train_batch_size"],
        gradient_accumulation_steps=s["gradient_accumulation_steps"],
        bf16=s["bf16"],
        use_cpu=not on_cuda,
        gradient_checkpointing=s["gradient_checkpointing"],
        seed=s["seed"],
        data_seed=s["seed"],
        logging_steps=s["logging_steps"],
        eval_strategy=s["eval_strategy"],
        save_strategy="no",
        report_to=[],
        disable_tqdm=True,
    )
    trainer = DPOTrainer(
        model=model,
        ref_model=None,
        args=config,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=peft_config,
    )
    trainer.remove_callback(PrinterCallback)  # no log dict per step on stdout (the asset prints none either)
    started = time.perf_counter()
    output = trainer.train()
    train_seconds = time.perf_counter() - started
    trainer.save_model(str(output_dir))
    return float(output.training_loss), train_seconds


# ---------------------------------------------------------------------------------------------------
# The asset side


def synthetic_reward_scores(prompts: int, samples: int, seed: int):
    """A ``reward_scores`` table for LANGUAGE: ``samples`` scored answers per prompt."""
    import random

    import polars as pl

    rng = random.Random(seed)

    def words(low: int, high: int) -> str:
        return " ".join(rng.choice(_WORDS) for _ in range(rng.randint(low, high))).capitalize() + "."

    rows = []
    for p in range(prompts):
        prompt = words(10, 20)[:-1] + "?"
        for k in range(samples):
            rows.append(
                {
                    "prompt_id": f"p{p:04d}",
                    "language": LANGUAGE,
                    "sample_idx": k,
                    "prompt": prompt,
                    "response": words(20, 60),
                    "finish_reason": "stop",
                    "reward": round(rng.gauss(0.0, 1.0), 4),
                }
            )
    return pl.DataFrame(rows)


@dataclass
class AssetSide:
    resources: dict
    instance: object
    storage: Path

    @property
    def pairs_parquet(self) -> Path:
        return self.storage / "preference_pairs" / f"language={LANGUAGE}" / "data.parquet"


def prepare_asset_side(storage: Path, model_path: str, pairs: int, seed: int) -> AssetSide:
    """Resources over ``storage``, and the pairs materialised (untimed) by the real pairing asset."""
    from dagster import DagsterInstance, materialize

    from croco_pipeline.core.io.atomic import write_parquet
    from croco_pipeline.core.io.storage import partition_dir
    from croco_pipeline.definitions import ALL_ASSETS, build_definitions
    from croco_pipeline.partitions import language_partitions

    environ = {"CROCO_POLICY_MODEL": model_path, "CROCO_STORAGE": str(storage)}
    resources = build_definitions(profile="embedded", environ=environ).resources
    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(language_partitions.name, [LANGUAGE])
    scores = synthetic_reward_scores(pairs, samples=4, seed=seed)
    write_parquet(scores, partition_dir(str(storage), "reward_scores", LANGUAGE) + "/data.parquet")
    result = materialize(
        ALL_ASSETS,
        selection=["preference_pairs", "unpaired_prompts", "sft_records"],
        partition_key=LANGUAGE,
        instance=instance,
        resources=resources,
        raise_on_error=True,
    )
    assert result.success
    side = AssetSide(resources, instance, storage)
    import polars as pl

    made = pl.read_parquet(side.pairs_parquet).height
    if made != pairs:
        raise SystemExit(f"expected {pairs} pairs from the synthetic scores, the pairing asset made {made}")
    return side


def asset_run(side: AssetSide, steps: int) -> tuple[float, float]:
    """Materialise dpo_checkpoint once. Returns (final train loss, seconds inside trainer.train())."""
    import polars as pl
    from dagster import materialize

    from croco_pipeline.definitions import ALL_ASSETS

    run_config = {"resources": {"settings": {"config": {"training_max_steps": steps, "min_optimizer_steps": steps}}}}
    result = materialize(
        ALL_ASSETS,
        selection=["dpo_checkpoint"],
        partition_key=LANGUAGE,
        instance=side.instance,
        resources=side.resources,
        run_config=run_config,
        raise_on_error=True,
    )
    assert result.success
    row = pl.read_parquet(side.storage / "dpo_checkpoint" / f"language={LANGUAGE}" / "data.parquet").row(0, named=True)
    manifest = json.loads((Path(row["checkpoint_path"]) / "manifest.json").read_text())
    if manifest["num_steps"] != steps:
        raise SystemExit(f"the asset trained {manifest['num_steps']} steps, expected {steps}")
    return float(manifest["final_metrics"]["train_loss"]), float(row["train_seconds"])


# ---------------------------------------------------------------------------------------------------


@dataclass
class Timing:
    wall: float
    cpu: float  # CPU seconds of this process (all threads): less sensitive than wall time to other jobs
    train: float
    loss: float


def quiet_libraries() -> None:
    """The same quiet output for both variants (the asset silences these itself while training)."""
    import datasets
    import transformers

    transformers.logging.set_verbosity_warning()
    transformers.logging.disable_progress_bar()
    datasets.disable_progress_bars()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--model",
        default="embedded",
        help="'embedded' (SmolLM2-135M-Instruct, default), 'tiny' (a tiny random model) or a folder",
    )
    parser.add_argument("--pairs", type=int, default=8, help="preference pairs (default 8)")
    parser.add_argument(
        "--steps", type=int, default=4, help="optimizer steps per run (default 4, at least 2; batch size 2)"
    )
    parser.add_argument("--repeat", type=int, default=3, help="timed runs of each variant, interleaved (default 3)")
    parser.add_argument(
        "--warmup", type=int, default=1, help="untimed two-step runs of each variant first (default 1)"
    )
    parser.add_argument(
        "--threads", type=int, help="torch CPU threads (default: torch's choice; on a loaded machine 1 can be faster)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic scores")
    parser.add_argument("--workdir", type=Path, help="folder for the temporary data (default: system temp)")
    parser.add_argument("--out", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args(argv)
    if args.repeat < 1 or args.steps < 2 or args.pairs < 1 or args.warmup < 0:
        # one step is all warm-up, at learning rate 0: the asset refuses it
        parser.error("--repeat and --pairs must be >= 1, --steps >= 2, --warmup >= 0")

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    quiet_libraries()
    on_cuda = torch.cuda.is_available()
    check_same_settings(args.steps, on_cuda)

    with tempfile.TemporaryDirectory(prefix="croco-training-overhead-", dir=args.workdir) as tmp:
        folder = Path(tmp)
        print_load("start")
        model_path = resolve_model_arg(args.model, folder)
        side = prepare_asset_side(folder / "storage", model_path, args.pairs, args.seed)
        shown = Path(model_path).name if args.model in ("embedded", "tiny") else model_path
        print(
            f"model {args.model} ({shown}), "
            f"{args.pairs} pairs, {args.steps} steps, batch 2, {'cuda bf16' if on_cuda else 'cpu fp32'}, "
            f"{torch.get_num_threads()} torch threads; settings identical in both variants",
            flush=True,
        )

        def run(variant: str, index: int) -> Timing:
            steps = 2 if index < 0 else args.steps  # warm-ups: the fewest steps the asset accepts
            started, cpu_started = time.perf_counter(), time.process_time()
            if variant == "asset":
                loss, train = asset_run(side, steps)
            else:
                loss, train = bare_trl_run(model_path, side.pairs_parquet, folder / f"bare-{index}", steps)
            return Timing(time.perf_counter() - started, time.process_time() - cpu_started, train, loss)

        def report(variant: str, index: int, t: Timing) -> None:
            what = f"warm-up {variant:5s} (2 steps)" if index < 0 else f"run {index + 1} {variant:5s}"
            loss = "" if index < 0 else f", train loss {t.loss:.6f}"
            print(f"  {what}: {t.wall:6.2f} s wall, {t.cpu:6.2f} s CPU, {t.train:6.2f} s in train(){loss}", flush=True)

        timings = interleaved(("asset", "bare"), run, rounds=args.repeat, warmup=args.warmup, report=report)
        wall = medians(timings, lambda t: t.wall)
        cpu = medians(timings, lambda t: t.cpu)
        train = medians(timings, lambda t: t.train)
        outside = medians(timings, lambda t: t.wall - t.train)
        overhead = wall["asset"] / wall["bare"] - 1
        paired = paired_median(timings["asset"], timings["bare"], lambda a, b: a.wall / b.wall - 1)
        cpu_overhead = cpu["asset"] / cpu["bare"] - 1
        same_loss = all(
            abs(a.loss - b.loss) <= 1e-6 * max(1.0, abs(b.loss)) for a, b in zip(timings["asset"], timings["bare"])
        )
        print()
        for v in ("asset", "bare"):
            walls = ", ".join(f"{t.wall:.2f}" for t in timings[v])
            print(
                f"{v:5s}: median {wall[v]:.2f} s wall (runs: {walls}), {cpu[v]:.2f} s CPU; "
                f"{train[v]:.2f} s in train(), {outside[v]:.2f} s outside it"
            )
        verdict = "met" if overhead <= TARGET_OVERHEAD else "NOT met"
        print(
            f"overhead of the asset: {overhead * 100:+.1f} % wall (median asset / median bare - 1; target <= "
            f"{TARGET_OVERHEAD * 100:.0f} %: {verdict}), {cpu_overhead * 100:+.1f} % CPU time; "
            f"median of the per-round ratios {paired * 100:+.1f} % wall"
        )
        inside = (
            "croco's CPU shortcuts against plain TRL"
            if not on_cuda
            else "the same TRL loop in both, a measure of the noise"
        )
        print(
            f"  outside train(): asset {outside['asset']:.2f} s vs bare {outside['bare']:.2f} s "
            f"({outside['asset'] - outside['bare']:+.2f} s); inside train(): "
            f"{(train['asset'] / train['bare'] - 1) * 100:+.1f} % ({inside})"
        )
        print(
            f"  final train loss {'identical' if same_loss else 'DIFFERS'} between the variants "
            f"(asset {timings['asset'][0].loss:.6f}, bare {timings['bare'][0].loss:.6f})"
        )
        print_load("end")
        if args.out:
            args.out.write_text(
                json.dumps(
                    {
                        "model": args.model,
                        "pairs": args.pairs,
                        "steps": args.steps,
                        "device": "cuda" if on_cuda else "cpu",
                        "runs": {v: [t.__dict__ for t in ts] for v, ts in timings.items()},
                        "median_wall_seconds": wall,
                        "median_cpu_seconds": cpu,
                        "median_train_seconds": train,
                        "overhead": overhead,
                        "cpu_overhead": cpu_overhead,
                        "paired_overhead": paired,
                        "same_loss": same_loss,
                        "load_average": os.getloadavg(),
                    },
                    indent=2,
                )
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
