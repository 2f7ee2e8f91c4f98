"""LoRA training with TRL: DPO on preference pairs (CroCo) and SFT on best-of-N samples (the baseline).

Both trainers take a polars frame, write a self-describing folder and return a :class:`TrainingResult`:

    output_dir/
      adapter_config.json, adapter_model.safetensors   the LoRA adapter (``PeftModel.save_pretrained``)
      tokenizer files                                  so the folder loads on its own
      manifest.json                                    base model, data size, settings, metrics, versions, tracker run
      training_curves.png                              loss (+ DPO rewards) per step
      README.md                                        the model card (``core.io.cards``)

Training reports to the tracker of its :class:`~croco_pipeline.core.training.tracking.Tracking`
(``report_to`` is always set explicitly; ``[]`` when no tracking is given).

The folder appears atomically: training writes into a temporary folder beside ``output_dir`` and only a
finished run is renamed into place, replacing an older one. A crash never leaves half a checkpoint.

The reference model of DPO is the base model itself, obtained by switching the LoRA adapter off
(``ref_model=None`` with a ``peft_config``), so only one copy of the weights is in memory.

On a CPU, training takes two exact shortcuts (:mod:`croco_pipeline.core.training.cpu_shortcuts`): the
LM head scores completion tokens only, and layers below the adapted ones run once per sequence.

The hyperparameters and their per-profile presets live beside this module, in
:mod:`croco_pipeline.core.training.config`. Heavy imports (torch, transformers, trl, peft) happen
inside the functions so that importing this module is cheap.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from croco_pipeline.core.io.atomic import replace_directory
from croco_pipeline.core.models.adapters import MANIFEST_NAME
from croco_pipeline.core.training.config import DPOSettings, LoraSettings, SFTSettings, TrainingSettings
from croco_pipeline.core.training.schedule import eval_size, plan_training
from croco_pipeline.core.training.tracking import Tracking

if TYPE_CHECKING:
    import polars as pl

log = logging.getLogger(__name__)

CURVES_NAME = "training_curves.png"


@dataclass
class TrainingResult:
    output_dir: Path
    log_history: list[dict]  # one dict per logged step (loss, rewards/…), plus the final summary
    final_metrics: dict  # the last step's metrics and the run summary (train_runtime, train_loss, …)
    train_seconds: float
    num_examples: int


# ----------------------------------------------------------------------------- public entry points


def train_dpo(
    base_model: str,
    pairs: "pl.DataFrame",
    output_dir: str | Path,
    settings: DPOSettings,
    *,
    manifest_extra: dict | None = None,
    tracking: Tracking | None = None,
) -> TrainingResult:
    """Train a LoRA adapter with DPO on ``pairs`` (columns ``prompt``, ``chosen``, ``rejected``).

    ``base_model`` is a local model folder or a hub id. The prompt becomes a user turn and each answer
    an assistant turn, so TRL applies the model's chat template exactly as generation did.
    """
    rows = dpo_rows(pairs, output_dir)

    def make_trainer(model, tokenizer, dataset, eval_dataset, workdir: Path, on_cuda: bool, tracking: Tracking):
        from trl import DPOConfig, DPOTrainer

        config = DPOConfig(
            output_dir=str(workdir),
            beta=settings.beta,
            loss_type=[settings.loss_type],
            max_length=settings.max_length,
            precompute_ref_log_probs=settings.precompute_ref_log_probs,
            **training_arguments(settings, on_cuda, tracking, evaluate=eval_dataset is not None),
        )
        return DPOTrainer(
            model=model,
            ref_model=None,  # reference = the base with the adapter disabled
            args=config,
            train_dataset=dataset,
            eval_dataset=eval_dataset,
            processing_class=tokenizer,
            peft_config=_lora_config(settings.lora, model.config.num_hidden_layers),
        )

    return _train("dpo", base_model, rows, output_dir, settings, make_trainer, manifest_extra, tracking)


def train_sft(
    base_model: str,
    records: "pl.DataFrame",
    output_dir: str | Path,
    settings: SFTSettings,
    *,
    manifest_extra: dict | None = None,
    tracking: Tracking | None = None,
) -> TrainingResult:
    """Train a LoRA adapter with SFT on ``records`` (columns ``prompt``, ``response``).

    ``settings.loss`` = ``full_sequence`` trains on the conversation (TRL's ``messages`` format) with TRL's
    default loss over every token, as the authors did; ``completion_only`` uses TRL's prompt/completion
    format, so the loss covers the response tokens only. Records with an empty prompt or response are
    left out (the authors' ``--filter_invalid_conversations``), and counted in the manifest.
    """
    rows = sft_rows(records, settings, output_dir)
    manifest_extra = {**(manifest_extra or {}), "invalid_records_left_out": records.height - len(rows)}

    def make_trainer(model, tokenizer, dataset, eval_dataset, workdir: Path, on_cuda: bool, tracking: Tracking):
        from trl import SFTConfig, SFTTrainer

        config = SFTConfig(
            output_dir=str(workdir),
            max_length=settings.max_length,
            **training_arguments(settings, on_cuda, tracking, evaluate=eval_dataset is not None),
        )
        return SFTTrainer(
            model=model,
            args=config,
            train_dataset=dataset,
            eval_dataset=eval_dataset,
            processing_class=tokenizer,
            peft_config=_lora_config(settings.lora, model.config.num_hidden_layers),
        )

    return _train("sft", base_model, rows, output_dir, settings, make_trainer, manifest_extra, tracking)


def dpo_rows(pairs: "pl.DataFrame", output_dir: str | Path = "") -> list[dict]:
    """TRL's conversational preference rows: the prompt as a user turn, each answer as an assistant turn,
    so TRL applies the model's chat template exactly as generation did."""
    _require_columns(pairs, ("prompt", "chosen", "rejected"), "preference pairs", output_dir)
    return [
        {
            "prompt": [{"role": "user", "content": r["prompt"]}],
            "chosen": [{"role": "assistant", "content": r["chosen"]}],
            "rejected": [{"role": "assistant", "content": r["rejected"]}],
        }
        for r in pairs.select("prompt", "chosen", "rejected").iter_rows(named=True)
    ]


def sft_rows(records: "pl.DataFrame", settings: SFTSettings, output_dir: str | Path = "") -> list[dict]:
    """TRL's conversational SFT rows (see :func:`train_sft`), without records whose prompt or response is
    empty."""
    _require_columns(records, ("prompt", "response"), "SFT records", output_dir)
    valid = [
        r
        for r in records.select("prompt", "response").iter_rows(named=True)
        if r["prompt"].strip() and r["response"].strip()
    ]
    if not valid:
        raise ValueError(f"every SFT record for {output_dir} has an empty prompt or response, nothing to train")
    user = lambda r: {"role": "user", "content": r["prompt"]}  # noqa: E731
    assistant = lambda r: {"role": "assistant", "content": r["response"]}  # noqa: E731
    if settings.loss == "full_sequence":
        return [{"messages": [user(r), assistant(r)]} for r in valid]
    return [{"prompt": [user(r)], "completion": [assistant(r)]} for r in valid]


def training_rows(kind: str, data: "pl.DataFrame", settings: TrainingSettings) -> list[dict]:
    """The rows ``train_dpo`` (kind "dpo") or ``train_sft`` ("sft") would train on: what a schedule counts."""
    return dpo_rows(data) if kind == "dpo" else sft_rows(data, settings)


def load_manifest(path: str | Path) -> dict:
    """The manifest of a trained folder (give the folder or the manifest file itself)."""
    path = Path(path)
    if path.is_dir():
        path = path / MANIFEST_NAME
    if not path.is_file():
        raise FileNotFoundError(f"no training manifest at {path}; is this a folder written by train_dpo/train_sft?")
    return json.loads(path.read_text())


# ----------------------------------------------------------------------------- internals


def _require_columns(df: "pl.DataFrame", columns: tuple[str, ...], what: str, output_dir: str | Path) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{what} lack column(s) {missing}; got {df.columns}")
    if df.height == 0:
        raise ValueError(f"no {what}{f' for {output_dir}' if str(output_dir) else ''}, nothing to train")
    for column in columns:
        nulls = df[column].is_null()
        if nulls.any():
            raise ValueError(f"{what}: row {int(nulls.arg_true()[0])} has no {column!r}")


def _lora_config(lora: LoraSettings, num_layers: int):
    from peft import LoraConfig

    layers = None
    if lora.top_layers is not None:
        layers = list(range(max(0, num_layers - lora.top_layers), num_layers))
    return LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=list(lora.target_modules),
        layers_to_transform=layers,
        task_type="CAUSAL_LM",
    )


def world_size() -> int:
    """Devices training together: ``WORLD_SIZE`` as torchrun/accelerate set it, else 1."""
    from croco_pipeline import envs

    return envs.world_size()


def training_arguments(
    settings: TrainingSettings,
    on_cuda: bool,
    tracking: Tracking | None = None,
    devices: int | None = None,
    evaluate: bool | None = None,
) -> dict[str, Any]:
    """The TrainingArguments that DPO and SFT share, as handed to TRL's ``DPOConfig``/``SFTConfig``.

    Gradient accumulation comes from ``settings.effective_batch_size`` over ``devices`` (default
    :func:`world_size`): the paper's effective batch of 64 is 1 × 64 on one GPU, 1 × 8 on eight.
    ``tracking``: the experiment tracker (``report_to`` is always explicit: ``[]`` without one).
    ``evaluate``: whether there is an eval split to evaluate as ``settings.eval_strategy`` says (default:
    when ``settings.eval_fraction`` asks for one; too few examples leave none, see :func:`eval_size`).
    """
    if evaluate is None:
        evaluate = settings.eval_fraction > 0
    tracking = tracking or Tracking()
    if not 0.0 <= settings.warmup_ratio < 1.0:
        raise ValueError(f"warmup_ratio must be in [0, 1), got {settings.warmup_ratio}")
    return dict(
        learning_rate=settings.learning_rate,
        lr_scheduler_type=settings.lr_scheduler_type,
        warmup_steps=settings.warmup_ratio,  # transformers 5: a float in [0, 1) is a ratio of all steps
        weight_decay=settings.weight_decay,
        num_train_epochs=settings.num_train_epochs,
        max_steps=settings.max_steps,
        per_device_train_batch_size=settings.per_device_train_batch_size,
        gradient_accumulation_steps=settings.accumulation_steps(devices or world_size()),
        per_device_eval_batch_size=settings.per_device_train_batch_size,
        eval_strategy=settings.eval_strategy if evaluate else "no",
        bf16=settings.bf16 and on_cuda,  # bf16 on CPU is slow and imprecise
        use_cpu=not on_cuda,
        gradient_checkpointing=settings.gradient_checkpointing,
        seed=settings.seed,
        data_seed=settings.seed,
        logging_steps=settings.logging_steps,
        save_strategy="no",  # the finished adapter is saved once, below
        # report_to is always explicit ([] without tracking): metrics also go to the manifest and the PNG
        **tracking.training_args(),
        disable_tqdm=False,  # the step progress bar stays (see _use_quiet_progress_bar)
    )


def _load_base(base_model: str, bf16: bool):
    """Tokenizer and model, with a clear error when the base model cannot be found."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    local = Path(base_model).expanduser()
    if local.is_dir():
        # Absolute, because the adapter records it and loads its base from there later (merge_adapter).
        base_model = str(local.resolve())
    elif os.path.isabs(base_model) or base_model.startswith((".", "~")):  # a path, not a hub id
        raise FileNotFoundError(f"base model folder {base_model!r} does not exist")
    try:
        tokenizer = AutoTokenizer.from_pretrained(base_model)
        model = AutoModelForCausalLM.from_pretrained(base_model, dtype=torch.bfloat16 if bf16 else torch.float32)
    except OSError as exc:
        raise FileNotFoundError(
            f"cannot load base model {base_model!r}: give a local folder written by save_pretrained or a "
            f"Hugging Face hub id that is cached or reachable ({exc})"
        ) from exc
    if tokenizer.chat_template is None:
        raise ValueError(f"the tokenizer of {base_model!r} has no chat template; CroCo trains on chat turns")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def _train(
    kind: str,
    base_model: str,
    rows: list[dict],
    output_dir: str | Path,
    settings: TrainingSettings,
    make_trainer: Callable[..., Any],
    manifest_extra: dict | None,
    tracking: Tracking | None = None,
) -> TrainingResult:
    """Load the base, build the trainer with ``make_trainer``, train, and write the folder atomically."""
    import torch
    from datasets import Dataset

    output_dir = Path(output_dir)
    tracking = tracking or Tracking()
    tracking.activate()
    on_cuda = torch.cuda.is_available()
    if not on_cuda:  # train on every core this process may use (torch may count fewer)
        from croco_pipeline.core.models.hardware import read_cpu_features

        torch.set_num_threads(len(read_cpu_features().cores))
    with _quiet_libraries():
        model, tokenizer = _load_base(str(base_model), bf16=settings.bf16 and on_cuda)
    dataset = Dataset.from_list(rows)
    eval_dataset = None
    held_out = eval_size(len(rows), settings.eval_fraction)
    if held_out:
        split = dataset.train_test_split(test_size=held_out, seed=settings.seed)
        # Held out either way; handed to the trainer only when it is evaluated (the authors' DPO never was).
        dataset, eval_dataset = split["train"], split["test"] if settings.eval_strategy != "no" else None
    outcome: dict[str, Any] = {}

    def build(workdir: Path) -> None:
        with _quiet_libraries():
            with _cpu_shortcuts(model, settings, on_cuda):
                trainer = make_trainer(model, tokenizer, dataset, eval_dataset, workdir, on_cuda, tracking)
                _use_quiet_progress_bar(trainer)
                started = time.perf_counter()
                train_output = trainer.train()
                train_seconds = time.perf_counter() - started
            trainer.save_model(str(workdir))  # adapter + tokenizer, with the model's own layers back in place
        (workdir / "training_args.bin").unlink(missing_ok=True)  # pickled args; the manifest says it all

        log_history = _jsonable(trainer.state.log_history)
        step_logs = [entry for entry in log_history if "loss" in entry]
        final_metrics = {**(step_logs[-1] if step_logs else {}), **_jsonable(train_output.metrics)}
        manifest = {
            "kind": kind,
            "base_model": str(base_model),
            "num_examples": len(rows),
            "num_eval_examples": held_out,
            "num_steps": trainer.state.global_step,
            "schedule": plan_training(settings, len(rows), devices=world_size()).as_dict(),
            "settings": settings.as_dict(),
            "device": "cuda" if on_cuda else "cpu",
            "bf16": settings.bf16 and on_cuda,
            "final_metrics": final_metrics,
            "log_history": log_history,
            "train_seconds": train_seconds,
            "versions": _versions(),
            "tracking": tracking.describe(),
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            **_jsonable(manifest_extra or {}),
        }
        (workdir / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2, allow_nan=False))
        from croco_pipeline.core.io.cards import write_model_card

        write_model_card(workdir, manifest)

        from croco_pipeline.core.io.plots import plot_training_curves

        plot_training_curves(log_history, workdir / CURVES_NAME, title=f"{kind.upper()} on {Path(base_model).name}")
        outcome.update(log_history=log_history, final_metrics=final_metrics, train_seconds=train_seconds)

    replace_directory(output_dir, build)
    log.info("%s: %d examples trained in %.1f s -> %s", kind.upper(), len(rows), outcome["train_seconds"], output_dir)
    return TrainingResult(
        output_dir=output_dir,
        log_history=outcome["log_history"],
        final_metrics=outcome["final_metrics"],
        train_seconds=outcome["train_seconds"],
        num_examples=len(rows),
    )


@contextlib.contextmanager
def _cpu_shortcuts(model, settings: TrainingSettings, on_cuda: bool):
    """On a CPU: score completion tokens only and run the frozen bottom layers once per sequence
    (:mod:`croco_pipeline.core.training.cpu_shortcuts`; both exact). GPUs train as TRL does."""
    if on_cuda:
        yield
        return
    from croco_pipeline.core.training.cpu_shortcuts import frozen_layer_cache, score_completion_tokens_only

    top_layers = settings.lora.top_layers
    first_adapted = model.config.num_hidden_layers - top_layers if top_layers is not None else 0
    if settings.gradient_checkpointing:  # checkpointing trades time for memory; the cache would undo it
        first_adapted = 0
    with score_completion_tokens_only(), frozen_layer_cache(model, first_adapted):
        yield


def _versions() -> dict[str, str]:
    import importlib.metadata

    versions = {}
    for dist in ("trl", "peft", "transformers", "torch", "accelerate", "datasets"):
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            versions[dist] = "not installed"
    return versions


def _jsonable(value: Any) -> Any:
    """Plain JSON: NaN/inf become None, numpy/torch scalars become floats."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    if hasattr(value, "item"):  # numpy / torch scalar
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (int, str)):
        return value
    return str(value)


class _quiet_libraries:
    """Silence transformers' and datasets' info logs and progress bars (loading weights, mapping the
    dataset) for the duration of a training run. Warnings stay, and so does the training progress bar."""

    def __enter__(self):
        import datasets
        import transformers

        self._tf_level = transformers.logging.get_verbosity()
        self._tf_bars = transformers.logging.is_progress_bar_enabled()
        self._ds_bars = datasets.is_progress_bar_enabled()
        transformers.logging.set_verbosity_warning()
        transformers.logging.disable_progress_bar()
        datasets.disable_progress_bars()
        return self

    def __exit__(self, *exc):
        import datasets
        import transformers

        transformers.logging.set_verbosity(self._tf_level)
        if self._tf_bars:
            transformers.logging.enable_progress_bar()
        if self._ds_bars:
            datasets.enable_progress_bars()
        return False


def _use_quiet_progress_bar(trainer) -> None:
    """Keep the step progress bar but show the loss on it instead of printing every log dict."""
    from tqdm.auto import tqdm
    from transformers import ProgressCallback, TrainerCallback

    class QuietProgress(TrainerCallback):
        def __init__(self) -> None:
            self.bar = None

        def on_train_begin(self, args, state, control, **kwargs):
            if state.is_world_process_zero:
                self.bar = tqdm(total=state.max_steps, desc="training", dynamic_ncols=True)

        def on_step_end(self, args, state, control, **kwargs):
            if self.bar is not None:
                self.bar.update(state.global_step - self.bar.n)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if self.bar is not None and logs and "loss" in logs:
                postfix = {"loss": f"{logs['loss']:.4f}"}
                if "rewards/margins" in logs:
                    postfix["margin"] = f"{logs['rewards/margins']:.3f}"
                self.bar.set_postfix(postfix)

        def on_train_end(self, args, state, control, **kwargs):
            if self.bar is not None:
                self.bar.close()
                self.bar = None

    trainer.remove_callback(ProgressCallback)
    trainer.add_callback(QuietProgress())
