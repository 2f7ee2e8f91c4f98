"""The arithmetic of a training run, worked out before it starts: examples, batch shape, optimizer steps,
warmup and the learning rate of every step, exactly as transformers' ``Trainer`` will count them.

A run that cannot learn is refused here, before a model is loaded or a GPU job submitted: one with fewer
than ``min_optimizer_steps`` optimizer steps, or whose schedule gives no step a learning rate above 0
(e.g. 47 examples at an effective batch of 64: one step, and a warmup rounded up to that step runs it at
learning rate 0). ``croco plan`` prints the same numbers for every checkpoint of a profile.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from croco_pipeline.core.training.config import TrainingSettings

DEFAULT_MIN_OPTIMIZER_STEPS = 10


class UntrainableRunError(ValueError):
    """A training run whose schedule cannot change the model; the message has the numbers and the fix."""


@dataclass(frozen=True)
class TrainingSchedule:
    """What a run will do, step by step (counted as transformers 5's ``Trainer`` counts)."""

    examples: int  # rows handed to training
    eval_examples: int  # of those, held out as the eval split
    micro_batch: int  # examples per device per forward pass
    devices: int
    accumulation: int  # forward passes per optimizer step
    epochs: float
    max_steps: int  # > 0: a fixed number of optimizer steps instead of epochs
    steps_per_epoch: int
    optimizer_steps: int
    warmup_steps: int
    peak_learning_rate: float
    learning_rates: tuple[float, ...]  # the rate of each optimizer step, in order

    @property
    def train_examples(self) -> int:
        return self.examples - self.eval_examples

    @property
    def effective_batch(self) -> int:
        return self.micro_batch * self.devices * self.accumulation

    @property
    def first_learning_rate(self) -> float:
        return self.learning_rates[0] if self.learning_rates else 0.0

    @property
    def last_learning_rate(self) -> float:
        return self.learning_rates[-1] if self.learning_rates else 0.0

    @property
    def steps_that_learn(self) -> int:
        """Optimizer steps at a learning rate above 0 (warmup starts at 0)."""
        return sum(1 for rate in self.learning_rates if rate > 0)

    def problems(self, min_optimizer_steps: int) -> list[str]:
        """Why this run would not learn (empty when it would)."""
        found = []
        if self.train_examples <= 0:
            found.append("it has no training examples")
        elif self.steps_that_learn == 0:
            found.append(f"every one of its {self.optimizer_steps} optimizer step(s) runs at learning rate 0")
        if self.optimizer_steps < min_optimizer_steps:
            found.append(
                f"it takes {self.optimizer_steps} optimizer step(s), fewer than the minimum {min_optimizer_steps}"
            )
        return found

    def describe(self) -> str:
        """One paragraph: examples, batch, steps, warmup, first and last learning rate."""
        held = f" ({self.eval_examples} held out for eval)" if self.eval_examples else ""
        length = f"max_steps {self.max_steps}" if self.max_steps > 0 else f"{self.epochs:g} epoch(s)"
        return (
            f"{self.examples} examples{held}; effective batch {self.effective_batch} (micro-batch {self.micro_batch} "
            f"× {self.devices} device(s) × {self.accumulation} accumulation); {self.steps_per_epoch} optimizer "
            f"step(s) per epoch, {length}: {self.optimizer_steps} step(s), {self.warmup_steps} of warmup; learning "
            f"rate {self.first_learning_rate:.3g} at the first step and {self.last_learning_rate:.3g} at the last "
            f"(peak {self.peak_learning_rate:.3g}, {self.steps_that_learn} step(s) above 0)"
        )

    def as_dict(self) -> dict:
        return {
            "examples": self.examples,
            "eval_examples": self.eval_examples,
            "train_examples": self.train_examples,
            "effective_batch": self.effective_batch,
            "micro_batch": self.micro_batch,
            "devices": self.devices,
            "accumulation": self.accumulation,
            "steps_per_epoch": self.steps_per_epoch,
            "optimizer_steps": self.optimizer_steps,
            "warmup_steps": self.warmup_steps,
            "first_learning_rate": self.first_learning_rate,
            "last_learning_rate": self.last_learning_rate,
            "steps_that_learn": self.steps_that_learn,
        }


def eval_size(num_examples: int, fraction: float) -> int:
    """Examples held out for evaluation: ``ceil(fraction × n)``, none when that would leave no training data."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"eval_fraction must be in [0, 1), got {fraction}")
    held_out = math.ceil(fraction * num_examples) if fraction else 0
    return held_out if 0 < held_out < num_examples else 0


def plan_training(settings: TrainingSettings, examples: int, devices: int = 1) -> TrainingSchedule:
    """The schedule of training ``settings`` on ``examples`` rows over ``devices`` devices.

    Counted as transformers' ``Trainer.set_initial_training_values`` does: each device's data loader has
    ceil(ceil(n / devices) / micro-batch) batches; an epoch has ceil(batches / accumulation) optimizer
    steps (at least 1); ``max_steps`` > 0 wins over epochs, else ceil(epochs × steps per epoch). Warmup is
    ceil(warmup_ratio × steps), and the learning rates come from transformers' own scheduler.
    """
    accumulation = settings.accumulation_steps(devices)
    held_out = eval_size(examples, settings.eval_fraction)
    train = examples - held_out
    per_device = math.ceil(train / devices)
    batches = math.ceil(per_device / settings.per_device_train_batch_size)
    steps_per_epoch = max(batches // accumulation + int(batches % accumulation > 0), 1) if train else 0
    if settings.max_steps > 0:
        steps = settings.max_steps if train else 0
    else:
        steps = math.ceil(settings.num_train_epochs * steps_per_epoch)
    warmup = math.ceil(steps * settings.warmup_ratio) if settings.warmup_ratio < 1 else int(settings.warmup_ratio)
    return TrainingSchedule(
        examples=examples,
        eval_examples=held_out,
        micro_batch=settings.per_device_train_batch_size,
        devices=devices,
        accumulation=accumulation,
        epochs=settings.num_train_epochs,
        max_steps=settings.max_steps,
        steps_per_epoch=steps_per_epoch,
        optimizer_steps=steps,
        warmup_steps=warmup,
        peak_learning_rate=settings.learning_rate,
        learning_rates=learning_rates(settings.lr_scheduler_type, settings.learning_rate, steps, warmup),
    )


def learning_rates(scheduler: str, peak: float, steps: int, warmup_steps: int) -> tuple[float, ...]:
    """The learning rate of each of ``steps`` optimizer steps under transformers' ``scheduler``."""
    if steps <= 0:
        return ()
    import torch
    from transformers import get_scheduler

    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([parameter], lr=peak)
    schedule = get_scheduler(scheduler, optimizer, num_warmup_steps=warmup_steps, num_training_steps=steps)
    rates = []
    for _ in range(steps):
        rates.append(float(optimizer.param_groups[0]["lr"]))
        optimizer.step()
        schedule.step()
    return tuple(rates)


def check_trainable(schedule: TrainingSchedule, min_optimizer_steps: int, what: str, fixes: str) -> None:
    """Raise :class:`UntrainableRunError` when ``schedule`` would not learn. ``what`` names the run (e.g.
    "dpo_checkpoint for da"); ``fixes`` names the settings that change it, in the caller's words."""
    found = schedule.problems(min_optimizer_steps)
    if found:
        raise UntrainableRunError(
            f"{what} would not learn: {'; '.join(found)}. Its schedule: {schedule.describe()}. {fixes}"
        )


# A run "learned" when the mean loss of its last quarter of steps is at most this share of its first
# quarter's. A step's loss is one small batch's, so single steps are too noisy to compare; at the demo's
# sizes SFT that moves the model ends near 0.6 of its start, SFT that does not near 0.99.
LEARNED_LOSS_RATIO = 0.8


def loss_progress(log_history: list[dict]) -> dict:
    """From a trainer's ``log_history``: the first and the last logged step's loss, the mean loss of the
    first and the last quarter of the logged steps, their ratio, and whether the run learned (the ratio
    at most :data:`LEARNED_LOSS_RATIO`). Empty when no step logged a loss."""
    losses = [float(entry["loss"]) for entry in log_history if "loss" in entry]
    if not losses:
        return {}
    quarter = math.ceil(len(losses) / 4)
    start, end = sum(losses[:quarter]) / quarter, sum(losses[-quarter:]) / quarter
    ratio = end / start if start > 0 else float("nan")
    return {
        "first_loss": losses[0],
        "last_loss": losses[-1],
        "start_loss": start,  # mean of the first quarter of the logged steps
        "end_loss": end,  # mean of the last quarter
        "loss_ratio": ratio,
        "learned": bool(ratio <= LEARNED_LOSS_RATIO),
    }
