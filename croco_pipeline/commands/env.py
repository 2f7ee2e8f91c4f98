"""`croco env`: every environment variable croco reads, what it sets, and its value here (secrets hidden)."""

from __future__ import annotations

import argparse

SECRETS = ("AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown (as in the README)")


def run(args: argparse.Namespace) -> int:
    from croco_pipeline import envs

    if args.markdown:
        print(envs.variables_table())
        return 0
    width = max(len(name) for name in envs.VARIABLES)
    for name, variable in envs.VARIABLES.items():
        raw = envs.current().get(name)
        value = "(unset)" if not raw else "(set, hidden)" if name in SECRETS else raw
        print(f"{name:<{width}}  {value}\n{'':<{width}}  {variable.help}")
    return 0
