"""`croco languages list | add CODE | remove CODE`: the languages the pipeline runs on.

The list lives in ``<storage>/languages.json`` (see ``croco_pipeline.core.languages.registry``). With
``dg dev`` (``make ui``) running, the ``language_registry_sensor`` picks a change up within about 30 seconds:
an added language becomes a partition and gets a pipeline run; a removed one loses its partition
(its data stays unless ``--delete-data``).
"""

from __future__ import annotations

import argparse
import sys

from croco_pipeline import envs


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--storage",
        default=None,
        help="storage base, a folder or s3://bucket/prefix (default: $CROCO_STORAGE or ./croco_data)",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    actions.add_parser("list", help="show the registered languages")
    actions.add_parser("known", help="every language croco can run: ISO 639-1 codes both identifiers recognise")
    add = actions.add_parser(
        "add", help="register a language (any ISO 639-1 code the identifiers know, e.g. da or pl)"
    )
    add.add_argument("code", help="ISO 639-1 code, e.g. pl; without shipped prompts, its prompts are translated")
    add.add_argument("--name", default=None, help="English name; must agree with croco's table")
    add.add_argument("--group", default=None, help="high-resource | low-resource | other; must agree")
    remove = actions.add_parser("remove", help="unregister a language (its data stays unless --delete-data)")
    remove.add_argument("code", help="ISO 639-1 code, e.g. da")
    remove.add_argument(
        "--delete-data",
        action="store_true",
        help="also delete <storage>/<table>/language=CODE/ and <storage>/checkpoints/*/language=CODE/",
    )


def run(args: argparse.Namespace) -> int:
    from croco_pipeline.core.languages import registry

    base = args.storage or envs.storage_base()
    action = getattr(args, "action", None)
    if action is None:
        print("croco languages: say what to do: list, add CODE or remove CODE (see --help).", file=sys.stderr)
        return 2
    try:
        if action == "list":
            _print_table(registry.load_registry(base), registry.registry_path(base))
        elif action == "known":
            _print_known()
        elif action == "add":
            print(registry.add_language(base, args.code, name=args.name, group=args.group).message)
        elif action == "remove":
            print(registry.remove_language(base, args.code, delete_data=args.delete_data).message)
    except registry.RegistryError as error:
        print(f"croco languages {action}: {error}", file=sys.stderr)
        return 2
    return 0


def _print_table(entries, path: str) -> None:
    if not entries:
        print(f"No languages registered in {path}. Add one with: croco languages add da")
        return
    rows = [("code", "name", "group", "added"), *[(e.code, e.name, e.group, e.added_at) for e in entries]]
    widths = [max(len(row[column]) for row in rows) for column in range(4)]
    for position, row in enumerate(rows):
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
        if position == 0:
            print("  ".join("-" * width for width in widths))


def _print_known() -> None:
    from croco_pipeline.core.languages.codes import get_language, iso_639_1_codes
    from croco_pipeline.core.languages.identify import identifiers_missing

    known = [get_language(code) for code in iso_639_1_codes() if not identifiers_missing(code)]
    print(f"{len(known)} languages (ISO 639-1 codes that both language identifiers recognise):")
    for language in known:
        print(f"  {language.code}  {language.name}" + (f"  ({language.group})" if language.group != "other" else ""))
