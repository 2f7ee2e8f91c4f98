"""The `croco` command.

Each sub-command lives in its own module under ``croco_pipeline.commands`` and is imported only when it
runs, so light commands (``croco pairs``, ``croco sql``) start fast without loading Dagster or torch.
Every command module exposes ``add_arguments(parser)`` and ``run(args) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module under croco_pipeline.commands, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("demo", "Run the whole pipeline on the embedded laptop configuration and print the results."),
    "env": ("env", "List the environment variables croco reads, with their values here (secrets hidden)."),
    "plan": ("plan", "Show what a run will do (prompts, samples, pairs, training schedules) and whether it learns."),
    "sql": ("sql", "Run a read-only SQL query over the pipeline's Parquet data (DuckDB)."),
    "pairs": ("pairs", "Build preference pairs from any scored file (Parquet or JSONL)."),
    "generate": ("generate", "Sample N answers per prompt from any model into a Parquet file (generations schema)."),
    "winrate": ("winrate", "Win rate, standard error and length-controlled win rate from judgments."),
    "languages": ("languages", "List, add or remove the languages the pipeline runs on."),
    "export": ("export", "Export a pair table as a TRL-ready conversational dataset (JSONL or HF folder)."),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The ``croco`` parser. Only ``command``'s module is imported (each may import what it needs for its
    options' help); the others list their one-line help. None: every command's options (tests, docs)."""
    parser = argparse.ArgumentParser(
        prog="croco",
        description=(
            "CroCo: cross-lingual contrastive preference tuning on self-generations. "
            "The pipeline itself runs in Dagster (`dg dev`, or `dagster dev -w workspace.yaml`); "
            "these commands run the demo, plan a run and work with the data it produces."
        ),
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        command_parser = sub.add_parser(name, help=help_text, description=help_text)
        command_parser.set_defaults(_module=module_name)
        if command is None or command == name:
            importlib.import_module(f"croco_pipeline.commands.{module_name}").add_arguments(command_parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    chosen = next((word for word in argv if not word.startswith("-")), None)
    parser = build_parser(chosen if chosen in COMMANDS else "")  # "": the command list only
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    module = importlib.import_module(f"croco_pipeline.commands.{args._module}")
    return int(module.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
