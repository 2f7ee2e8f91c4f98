"""LoRA adapter folders, as training writes them, and merging one into its base model.

A trained folder (``core.training.trainer``) holds the adapter (``adapter_config.json``,
``adapter_model.safetensors``), its tokenizer and ``manifest.json`` (:data:`MANIFEST_NAME`: base model,
data, settings, metrics). EuroEval and a CPU serving a tuned model want a plain model instead:
:func:`merge_adapter` folds the adapter into the base weights.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from croco_pipeline.core.io.atomic import replace_directory

MANIFEST_NAME = "manifest.json"


def merge_adapter(adapter_dir: str | Path, out_dir: str | Path, *, trust_remote_code: bool = False) -> Path:
    """Merge a LoRA adapter into its base model and save a plain model folder (for EuroEval, vLLM …).

    The base model is the one recorded in the adapter's ``adapter_config.json``. Written atomically;
    the adapter's manifest, when it has one, goes along as ``adapter_manifest.json``. ``trust_remote_code``
    lets the base model's repository run its own code (off unless asked for).
    """
    adapter_dir = Path(adapter_dir)
    if not (adapter_dir / "adapter_config.json").is_file():
        raise FileNotFoundError(f"{adapter_dir} holds no LoRA adapter (adapter_config.json is missing)")

    def build(folder: Path) -> None:
        from peft import AutoPeftModelForCausalLM
        from transformers import AutoTokenizer

        model = AutoPeftModelForCausalLM.from_pretrained(str(adapter_dir), trust_remote_code=trust_remote_code)
        base = model.peft_config[model.active_adapter].base_model_name_or_path
        merged = model.merge_and_unload()
        merged.save_pretrained(folder)
        # Checkpoints carry their tokenizer; a bare adapter takes its base model's.
        has_tokenizer = (adapter_dir / "tokenizer_config.json").is_file()
        tokenizer_source = str(adapter_dir) if has_tokenizer else base
        AutoTokenizer.from_pretrained(tokenizer_source, trust_remote_code=trust_remote_code).save_pretrained(folder)
        manifest = adapter_dir / MANIFEST_NAME
        if manifest.is_file():
            shutil.copy2(manifest, folder / "adapter_manifest.json")

    return replace_directory(out_dir, build)
