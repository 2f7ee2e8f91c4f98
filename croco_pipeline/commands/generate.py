"""`croco generate`: N answers per prompt from any model into a Parquet file with the `generations` schema.

    croco generate --prompts prompts.jsonl --out samples.parquet
    croco generate --prompts prompts.csv --language da --model ./checkpoint --n 16 --max-new-tokens 256 \\
        --temperature 0.8 --seed 3 --out samples.parquet

Samples the way the pipeline's ``generations`` asset does, through the same code: the model is opened
with ``open_policy_generator`` (vLLM where installed, else transformers; on a CPU the dtype and threads
follow the processor, see ``core.models.hardware``) and each language's prompts go through
``sample_answers``, so a row here is the row the asset would write for the same model, prompt, settings
and seed (answers are seeded per prompt). Defaults are the profile's (``CROCO_PROFILE``, default
``embedded``): its policy model and its sampling settings.

The prompt file (JSONL, CSV or Parquet; local or ``s3://``) has ``prompt_id`` and ``prompt`` and
optionally ``language``; ``--language`` gives the language of rows without one. Rows are written in
(language, prompt_id) order. The output is written atomically: on any error nothing is written, one line
goes to stderr and the status is 2. Nothing heavy is imported before the command runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
import time
from pathlib import Path

_EXAMPLES = """\
examples:
  croco generate --prompts prompts.jsonl --out samples.parquet
  croco generate --prompts prompts.csv --language da --model ./my-checkpoint --n 16 \\
      --max-new-tokens 256 --temperature 0.8 --seed 3 --out samples.parquet
  croco generate --prompts heldout.parquet --adapter croco_data/checkpoints/dpo_checkpoint/language=da \\
      --n 4 --out tuned_da.parquet

The prompt file (.jsonl, .csv or .parquet) has the columns prompt_id and prompt, and optionally
language (else give --language). The output has one row per prompt and sample, with the columns of the
pipeline's `generations` table: prompt_id, language, sample_idx, prompt, response, num_tokens,
finish_reason, model, config_hash. Unset options take the profile's value (CROCO_PROFILE, default
embedded); answers are seeded per prompt, so the same seed gives the same answers.
"""


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = _HelpWithDefaults
    parser.epilog = _EXAMPLES
    e = _Placeholders()  # "{embedded[name]}" in a help text: the schema's default, filled in when help is shown
    parser.add_argument(
        "--prompts",
        required=True,
        metavar="FILE",
        help="prompts: .jsonl, .csv or .parquet with prompt_id, prompt and optionally language",
    )
    parser.add_argument(
        "--out", required=True, metavar="FILE", help="where to write the samples (.parquet; .jsonl also works)"
    )
    parser.add_argument(
        "--model",
        metavar="SPEC",
        help=f"a local folder, a Hugging Face id or embedded:NAME (default: the profile's policy; "
        f"embedded: {e['model']})",
    )
    parser.add_argument(
        "--adapter", metavar="DIR", help="a LoRA adapter folder to sample with (e.g. a dpo_checkpoint); default: none"
    )
    parser.add_argument(
        "--n",
        type=_positive_int,
        metavar="N",
        help=f"answers per prompt (default: the profile's for each language, as `croco plan` lists them; "
        f"embedded: {e['samples_per_prompt']}, more where the profile says)",
    )
    parser.add_argument(
        "--max-new-tokens",
        type=_positive_int,
        metavar="N",
        help=f"at most this many tokens per answer (default: the profile's; embedded: {e['max_new_tokens']})",
    )
    parser.add_argument(
        "--temperature",
        type=float,
        metavar="T",
        help=f"sampling temperature; 0 is greedy (default {e['temperature']})",
    )
    parser.add_argument("--top-p", type=float, metavar="P", help=f"nucleus sampling (default {e['top_p']})")
    parser.add_argument(
        "--seed",
        type=int,
        metavar="N",
        help=f"run seed; each prompt is seeded from it and its text (default {e['seed']})",
    )
    parser.add_argument(
        "--language", metavar="CODE", help="language of the prompts without one (no language column, or an empty cell)"
    )
    parser.add_argument(
        "--respond-in-language",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="append ' Please respond in {Language} and nothing else.' to each prompt, as the "
        "pipeline does (default: the profile's; embedded: yes)",
    )
    parser.add_argument(
        "--backend",
        type=_backend,
        help="auto (vLLM where installed, else transformers) | vllm | transformers (default: the profile's, "
        f"{e['backend']})",
    )
    parser.add_argument("--dtype", help="model dtype, e.g. float32 or bfloat16 (default: auto, from the processor)")
    parser.add_argument(
        "--max-model-len",
        type=_positive_int,
        metavar="N",
        help=f"context length: prompt plus answer (default: the profile's; embedded: {e['max_model_len']})",
    )
    parser.add_argument(
        "--tensor-parallel-size",
        type=_positive_int,
        default=1,
        metavar="K",
        help="vLLM: shard the model over K GPUs (default 1)",
    )
    parser.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="let the model's repository run its own Python code (custom architectures); off by default, as that "
        "code runs as your user",
    )
    parser.add_argument("--verbose", action="store_true", help="show the libraries' INFO logs (vLLM, croco)")


class _Placeholders:
    """``e['name']`` in an f-string help text leaves ``{embedded[name]}`` for :class:`_HelpWithDefaults`."""

    def __getitem__(self, name: str) -> str:
        return "{embedded[" + name + "]}"


def _schema_defaults() -> dict:
    """The settings schemas' defaults (the embedded configuration), imported only when help is shown."""
    from croco_pipeline.core.settings import PolicySettings, RunSettings

    return {name: field.default for name, field in {**RunSettings.model_fields, **PolicySettings.model_fields}.items()}


class _HelpWithDefaults(argparse.RawDescriptionHelpFormatter):
    """Fills the schemas' defaults into option help, so parsing options loads nothing heavy."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = super()._get_help_string(action) or ""
        return text.format(embedded=_schema_defaults()) if "{embedded[" in text else text


def _backend(text: str) -> str:
    from typing import get_args

    from croco_pipeline.core.models.generators import Backend

    if text not in get_args(Backend):
        raise argparse.ArgumentTypeError(f"invalid choice {text!r} (choose from {', '.join(get_args(Backend))})")
    return text


class _Options:
    """The settings the run uses: given options, else the profile's (its differences from the schemas'
    defaults, ``croco_pipeline.core.settings``)."""

    def __init__(self, args: argparse.Namespace):
        from croco_pipeline.core.settings import PolicySettings, RunSettings
        from croco_pipeline.profiles import resource_config

        config = resource_config()
        policy = PolicySettings(**config["policy"])
        settings = RunSettings(**config["settings"])

        def pick(given, default):
            return default if given is None else given

        self.model = pick(args.model, policy.model)
        if not self.model:
            raise ValueError("the profile names no policy model: give --model (or set CROCO_POLICY_MODEL)")
        self.backend = pick(args.backend, policy.backend)
        self.dtype = pick(args.dtype, policy.dtype)
        self.max_model_len = pick(args.max_model_len, policy.max_model_len)
        self.respond_in_language = pick(args.respond_in_language, settings.respond_in_language)
        # without --n, each language's own number of answers, as the pipeline samples it
        self.samples_for = settings.samples_for if args.n is None else (lambda language: args.n)
        self.sampling = dict(
            n=pick(args.n, settings.samples_per_prompt),
            temperature=pick(args.temperature, settings.temperature),
            top_p=pick(args.top_p, settings.top_p),
            max_new_tokens=pick(args.max_new_tokens, settings.max_new_tokens),
            seed=pick(args.seed, settings.seed),
        )
        self.generator_options = dict(
            model=self.model,
            backend=self.backend,
            max_model_len=self.max_model_len,
            dtype=self.dtype,
            seed=self.sampling["seed"],
            cpu_threads=policy.cpu_threads,
            tensor_parallel_size=args.tensor_parallel_size,
            trust_remote_code=args.trust_remote_code or policy.trust_remote_code,
        )
        if args.adapter:
            self.generator_options.update(enable_lora=True, max_lora_rank=_adapter_rank(args.adapter))


def _adapter_rank(path: str) -> int:
    """The LoRA rank of an adapter folder (vLLM must be started with at least that rank)."""
    config_file = Path(path).expanduser() / "adapter_config.json"
    if not config_file.is_file():
        raise ValueError(f"--adapter {path}: not a LoRA adapter folder (no adapter_config.json)")
    return max(16, int(json.loads(config_file.read_text()).get("r", 16)))


def run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    if not args.verbose:  # read by vLLM when it is imported (below, in the model's first use)
        os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    else:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    import polars as pl

    from croco_pipeline import envs
    from croco_pipeline.core.io import atomic, storage, tables
    from croco_pipeline.core.models.lifetime import open_policy_generator
    from croco_pipeline.core.prompts.sets import load_prompt_file
    from croco_pipeline.core.sampling.config import SamplingConfig
    from croco_pipeline.core.sampling.samples import GENERATION_COLUMNS, sample_answers

    try:
        out_format = tables.table_format(args.out)  # a bad extension fails before any model is loaded
        remote = storage.is_remote(args.prompts) or storage.is_remote(args.out)
        s3_options = envs.s3_options() if remote else None
        prompts_path = args.prompts if storage.is_remote(args.prompts) else str(Path(args.prompts).expanduser())
        if not storage.is_remote(prompts_path) and not Path(prompts_path).is_file():
            raise ValueError(f"--prompts {args.prompts}: no such file")
        options = _Options(args)
        sampling = SamplingConfig(**options.sampling)
        prompts = load_prompt_file(
            prompts_path,
            s3_options if storage.is_remote(prompts_path) else None,
            default_language=args.language,
            language_hint="Add a language column or give --language CODE.",
        )
        languages = prompts["language"].unique(maintain_order=True).to_list()
        opening = time.perf_counter()
        with open_policy_generator(**options.generator_options) as generator:
            engine_seconds = time.perf_counter() - opening
            print(_engine_line(generator, options), file=sys.stderr, flush=True)
            generating = time.perf_counter()
            parts = [
                sample_answers(
                    generator,
                    prompts.filter(pl.col("language") == language).select("prompt_id", "prompt"),
                    language,
                    dataclasses.replace(sampling, n=options.samples_for(language)),
                    respond_in_language=options.respond_in_language,
                    model_label=options.model,
                    adapter_path=args.adapter,
                )
                for language in languages
            ]
            generate_seconds = time.perf_counter() - generating
        samples = pl.concat(parts, how="vertical").select(GENERATION_COLUMNS)
        # atomic: a temporary file renamed over the target (an object store gets one whole object)
        if out_format == "parquet":
            atomic.write_parquet(samples, args.out, s3_options if storage.is_remote(args.out) else None)
        else:
            tables.write_table(samples, args.out)
    except (ValueError, OSError, ImportError, RuntimeError, pl.exceptions.PolarsError) as error:
        # ValueError: a bad prompt file (PromptFileError names the file, row and column), bad settings or a
        # prompt too long for the context; OSError: a missing model or adapter, an unwritable output;
        # RuntimeError: an engine that failed to start.
        print(f"croco generate: error: {_one_line(error)}", file=sys.stderr)
        return 2

    tokens = int(samples["num_tokens"].sum())
    total = time.perf_counter() - started
    print(
        f"croco generate: {samples.height} rows ({prompts.height} prompts x {_answers_each(languages, options)}, "
        f"{len(languages)} language(s)) -> {args.out}; {tokens} tokens, "
        f"{tokens / max(generate_seconds, 1e-9):.1f} tok/s; {generate_seconds:.2f} s generating, "
        f"{engine_seconds:.1f} s loading the model, {total:.1f} s in all"
    )
    return 0


def _answers_each(languages: list[str], options: _Options) -> str:
    """The answers per prompt: one number, or one per language where the languages differ."""
    counts = {language: options.samples_for(language) for language in languages}
    if len(set(counts.values())) <= 1:
        return str(next(iter(counts.values()), options.sampling["n"]))
    return "(" + ", ".join(f"{language} {n}" for language, n in counts.items()) + ")"


def _engine_line(generator, options: _Options) -> str:
    """One line on what runs: model, backend and, for vLLM on a CPU, the dtype and threads chosen."""
    choice = getattr(generator, "cpu_choice", None)
    detail = f": {choice.reason}" if choice is not None else f", dtype {options.dtype}"
    return f"croco generate: {options.model} on {generator.backend}{detail}"


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    if isinstance(error, FileNotFoundError) and error.filename and str(error.filename) not in text:
        text = f"{error.filename}: {text}"
    return text or type(error).__name__
