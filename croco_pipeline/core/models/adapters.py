"""LoRA adapter folders, as training writes them, and merging one into its base model.

A trained folder (``core.training.trainer``) holds the adapter (``adapter_config.json``,
``adapter_model.safetensors``), its tokenizer and ``manifest.json`` (:data:`MANIFEST_NAME`: base model,
data, settings, metrics). EuroEval and a CPU serving a tuned model want a plain model instead:
:func:`merge_adapter` folds the adapter into the base weights.

Merging is exact in float32, but the engine that serves the merged model may compute in bfloat16,
which keeps 8 significant bits. Where the base weights sit on the bfloat16 grid (a checkpoint stored in
bfloat16), a change below half a bfloat16 step rounds back to the base weight: a small adapter (the
paper's DPO learning rate is 5e-6) can vanish entirely, and the "tuned" model evaluated is its base.
:func:`merge_for_serving` therefore measures how much of the adapter's change survives in the serving
dtype (:class:`MergeFidelity`) and keeps float32 when too little does.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from croco_pipeline.core.io.atomic import replace_directory

MANIFEST_NAME = "manifest.json"
FIDELITY_NAME = "merge_fidelity.json"

# A merged adapter is served in the engine's dtype only when at least this share of its change survives
# there (MergeFidelity.kept_fraction); else it is merged and served in float32. Measured on the demo's
# SmolLM2 (a float32 checkpoint, weights mostly off the bfloat16 grid) in bfloat16: 0.97 of a DPO adapter
# and 0.90 of a weak SFT adapter survive, and their effect on the log-likelihood of their training answers
# was kept alike (0.97 and 0.92); on a bfloat16 checkpoint a change of 1e-4 of each weight keeps 0.2
# (benchmarks/merge_fidelity.py, benchmarks/README.md).
MIN_KEPT_FRACTION = 0.9


@dataclass(frozen=True)
class MergeFidelity:
    """How much of a LoRA adapter's change to the weights survives a merge served in ``dtype``.

    Over every adapted weight matrix W with the adapter's change Δ = s·B·A (float32), the change the
    served weights carry is D = dtype(W + Δ) − dtype(W). ``kept_fraction`` is the least-squares share of
    Δ in D, ⟨D, Δ⟩ / ⟨Δ, Δ⟩: 1 when the change arrives (on average: rounding may move single weights by a
    whole step either way), 0 when it rounds away. ``worst_layer_kept_fraction`` is the same per matrix,
    the lowest one; ``changed_share`` the share of adapted weights whose served value differs from the
    base's served value.
    """

    dtype: str
    kept_fraction: float
    worst_layer_kept_fraction: float
    changed_share: float
    matrices: int

    def keeps_adapter(self, min_kept_fraction: float = MIN_KEPT_FRACTION) -> bool:
        return self.kept_fraction >= min_kept_fraction

    def as_dict(self) -> dict:
        return {
            "dtype": self.dtype,
            "kept_fraction": self.kept_fraction,
            "worst_layer_kept_fraction": self.worst_layer_kept_fraction,
            "changed_share": self.changed_share,
            "matrices": self.matrices,
        }


@dataclass(frozen=True)
class MergedModel:
    """A merged model folder, the dtype to serve it in, and how much of the adapter that dtype keeps."""

    path: Path
    dtype: str  # the requested serving dtype, or float32 when too little of the adapter survived in it
    fidelity: MergeFidelity  # measured in the requested serving dtype


def adapter_fidelity(peft_model, dtype: str) -> MergeFidelity:
    """:class:`MergeFidelity` of the (unmerged, float32) ``peft_model``'s active adapter served in ``dtype``."""
    import torch

    target = getattr(torch, dtype)
    adapter = peft_model.active_adapter
    overlap = squared = changed = total = 0.0
    worst = 1.0
    matrices = 0
    with torch.no_grad():
        for module in peft_model.modules():
            lora_a = getattr(module, "lora_A", None)
            if lora_a is None or adapter not in lora_a or not hasattr(module, "get_delta_weight"):
                continue
            weight = module.get_base_layer().weight.float()
            delta = module.get_delta_weight(adapter).float()
            served = (weight + delta).to(target).float() - weight.to(target).float()
            layer_overlap, layer_squared = float((served * delta).sum()), float((delta * delta).sum())
            overlap, squared = overlap + layer_overlap, squared + layer_squared
            changed += float((served != 0).sum())
            total += served.numel()
            matrices += 1
            if layer_squared > 0:
                worst = min(worst, layer_overlap / layer_squared)
    if not matrices:
        raise ValueError("the model has no LoRA layer of its active adapter to measure")
    return MergeFidelity(
        dtype=dtype,
        kept_fraction=overlap / squared if squared > 0 else 1.0,  # an all-zero adapter has nothing to lose
        worst_layer_kept_fraction=worst,
        changed_share=changed / total,
        matrices=matrices,
    )


def merge_adapter(adapter_dir: str | Path, out_dir: str | Path, *, trust_remote_code: bool = False) -> Path:
    """Merge a LoRA adapter into its base model and save a plain model folder (for EuroEval, vLLM …).

    The base model is the one recorded in the adapter's ``adapter_config.json``. The merge is done in
    float32 and saved in the base checkpoint's own dtype. Written atomically; the adapter's manifest, when
    it has one, goes along as ``adapter_manifest.json``. ``trust_remote_code`` lets the base model's
    repository run its own code (off unless asked for).
    """
    return _merge(adapter_dir, out_dir, serving_dtype=None, trust_remote_code=trust_remote_code).path


def merge_for_serving(
    adapter_dir: str | Path,
    out_dir: str | Path,
    serving_dtype: str,
    min_kept_fraction: float = MIN_KEPT_FRACTION,
    *,
    trust_remote_code: bool = False,
) -> MergedModel:
    """Merge an adapter (as :func:`merge_adapter`) for an engine computing in ``serving_dtype``.

    The adapter's :class:`MergeFidelity` in ``serving_dtype`` is measured before the merge (and written
    to the folder as ``merge_fidelity.json``). When it keeps at least ``min_kept_fraction`` of the change,
    the folder is saved in ``serving_dtype``; else in float32, and ``MergedModel.dtype`` says to serve it
    in float32.
    """
    return _merge(
        adapter_dir,
        out_dir,
        serving_dtype=serving_dtype,
        min_kept_fraction=min_kept_fraction,
        trust_remote_code=trust_remote_code,
    )


def _merge(
    adapter_dir: str | Path,
    out_dir: str | Path,
    serving_dtype: str | None,
    min_kept_fraction: float = MIN_KEPT_FRACTION,
    trust_remote_code: bool = False,
) -> MergedModel:
    adapter_dir = Path(adapter_dir)
    if not (adapter_dir / "adapter_config.json").is_file():
        raise FileNotFoundError(f"{adapter_dir} holds no LoRA adapter (adapter_config.json is missing)")
    outcome: dict = {}

    def build(folder: Path) -> None:
        import json

        import torch
        from peft import AutoPeftModelForCausalLM, PeftConfig
        from transformers import AutoConfig, AutoTokenizer

        base = PeftConfig.from_pretrained(str(adapter_dir)).base_model_name_or_path
        own_dtype = _checkpoint_dtype(AutoConfig.from_pretrained(base, trust_remote_code=trust_remote_code))
        # float32: the sum W + s·B·A is exact to float32 before any rounding to the saved dtype
        model = AutoPeftModelForCausalLM.from_pretrained(
            str(adapter_dir), dtype=torch.float32, trust_remote_code=trust_remote_code
        )
        if serving_dtype is None:
            fidelity, save_dtype = None, own_dtype
        else:
            fidelity = adapter_fidelity(model, serving_dtype)
            (folder / FIDELITY_NAME).write_text(json.dumps(fidelity.as_dict(), indent=2))
            save_dtype = serving_dtype if fidelity.keeps_adapter(min_kept_fraction) else "float32"
        merged = model.merge_and_unload().to(getattr(torch, save_dtype))
        merged.save_pretrained(folder)
        # Checkpoints carry their tokenizer; a bare adapter takes its base model's.
        has_tokenizer = (adapter_dir / "tokenizer_config.json").is_file()
        tokenizer_source = str(adapter_dir) if has_tokenizer else base
        AutoTokenizer.from_pretrained(tokenizer_source, trust_remote_code=trust_remote_code).save_pretrained(folder)
        manifest = adapter_dir / MANIFEST_NAME
        if manifest.is_file():
            shutil.copy2(manifest, folder / "adapter_manifest.json")
        outcome.update(dtype=save_dtype, fidelity=fidelity)

    path = replace_directory(out_dir, build)
    return MergedModel(path=path, dtype=outcome["dtype"], fidelity=outcome["fidelity"])


def _checkpoint_dtype(config) -> str:
    """The dtype a model's checkpoint was saved in (float32 when its configuration does not say)."""
    dtype = getattr(config, "dtype", None) or getattr(config, "torch_dtype", None) or "float32"
    return str(dtype).removeprefix("torch.")
