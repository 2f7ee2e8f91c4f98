"""The language registry: which languages the pipeline should run on, kept next to the data.

The registry is one small JSON file, ``<storage base>/languages.json``, so the command line
(``croco languages add da``) and the Dagster sensor that turns entries into partitions read the same
list wherever the data lives (a local folder or ``s3://bucket/prefix``)::

    {"version": 1, "languages": [
        {"code": "da", "name": "Danish", "group": "high-resource", "added_at": "2026-11-02T10:00:00+00:00"}
    ]}

Every ISO 639-1 code is accepted whose language croco's identifiers recognise (``core.languages``); a
language without shipped prompts gets the English ones machine-translated on its first run.
``--name``/``--group`` may still be given; they must then agree with croco's table.

Writes are atomic (a temporary file renamed over the old one; one PUT on S3). Two people editing the
registry at the very same moment may lose one edit: the file is meant for a person at a terminal.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone

from croco_pipeline.core.io import atomic, storage
from croco_pipeline.core.languages.codes import UnknownLanguageError, get_language
from croco_pipeline.core.languages.identify import identifiers_missing

REGISTRY_FILE = "languages.json"
FORMAT_VERSION = 1
_FIELDS = ("code", "name", "group", "added_at")


class RegistryError(ValueError):
    """The registry file cannot be read, or a request to change it is refused; the message says why."""


@dataclass(frozen=True)
class LanguageEntry:
    code: str
    name: str
    group: str
    added_at: str  # ISO 8601 in UTC; with the code it names one "addition" (the sensor's run key)


@dataclass(frozen=True)
class AddResult:
    entry: LanguageEntry
    added: bool  # False: the code was already registered and nothing changed
    message: str


@dataclass(frozen=True)
class RemoveResult:
    code: str
    removed: bool  # False: the code was not registered
    deleted_paths: list[str] = field(default_factory=list)
    message: str = ""


def registry_path(base: str) -> str:
    """``<base>/languages.json``, for a local folder or an ``s3://`` prefix."""
    return storage.join(str(base), REGISTRY_FILE)


def _options(base: str, storage_options: dict | None) -> dict | None:
    if storage_options is not None:
        return storage_options
    return storage.storage_options_for(base) or None


def load_registry(base: str, storage_options: dict | None = None) -> list[LanguageEntry]:
    """The registered languages in the order they were added; no file yet means none."""
    path = registry_path(base)
    options = _options(base, storage_options)
    fs = storage.filesystem(path, options)
    if not fs.exists(path):
        return []
    with fs.open(path, "rb") as handle:
        raw = handle.read()
    return _parse(raw, path)


def _parse(raw: bytes, path: str) -> list[LanguageEntry]:
    advice = f"Fix {path} by hand (see croco_pipeline/core/languages/registry.py for its format) or delete it."
    try:
        document = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise RegistryError(f"The language registry {path} is not valid JSON ({error}). {advice}") from error
    if not isinstance(document, dict) or not isinstance(document.get("languages"), list):
        raise RegistryError(f"The language registry {path} must be an object with a 'languages' list. {advice}")
    if document.get("version") != FORMAT_VERSION:
        raise RegistryError(
            f"The language registry {path} has version {document.get('version')!r}; this croco reads "
            f"version {FORMAT_VERSION}. {advice}"
        )
    entries: list[LanguageEntry] = []
    seen: set[str] = set()
    for position, item in enumerate(document["languages"]):
        if not isinstance(item, dict) or not all(isinstance(item.get(key), str) for key in _FIELDS):
            raise RegistryError(
                f"Entry {position} of the language registry {path} needs the text fields "
                f"{', '.join(_FIELDS)}; found {item!r}. {advice}"
            )
        if item["code"] in seen:
            raise RegistryError(f"The language registry {path} lists {item['code']!r} twice. {advice}")
        seen.add(item["code"])
        entries.append(LanguageEntry(**{key: item[key] for key in _FIELDS}))
    return entries


def _save(base: str, entries: list[LanguageEntry], storage_options: dict | None) -> None:
    """Replace the registry file as a whole, so a reader never sees half of it."""
    path = registry_path(base)
    payload = (
        json.dumps(
            {"version": FORMAT_VERSION, "languages": [asdict(entry) for entry in entries]},
            indent=2,
            ensure_ascii=False,
        ).encode("utf-8")
        + b"\n"
    )
    atomic.write_bytes(path, payload, storage_options)


def _now() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


def add_language(
    base: str,
    code: str,
    name: str | None = None,
    group: str | None = None,
    storage_options: dict | None = None,
    added_at: str | None = None,
) -> AddResult:
    """Register ``code`` so the sensor adds it as a partition and runs the pipeline for it.

    Accepts every ISO 639-1 code (``core.languages.codes``) that croco's language identifiers recognise;
    a language without prompts of its own gets the English prompts machine-translated on its first run.
    Refuses malformed and unknown codes, and languages the identifiers cannot recognise (answers in them
    could not be measured). Adding a registered code again changes nothing and says so.
    """
    code = code.strip() if isinstance(code, str) else code
    try:
        language = get_language(code)
    except UnknownLanguageError as error:
        raise RegistryError(str(error)) from error
    missing = identifiers_missing(code)
    if missing:
        raise RegistryError(
            f"{code!r} ({language.name}) is an ISO 639-1 code, but {' and '.join(missing)} cannot recognise it: "
            "croco could not tell whether answers are in it (the reward scorer and the evaluation both measure "
            "that). Choose a language they know (`croco languages known` lists them)."
        )
    for given, expected, option in [(name, language.name, "name"), (group, language.group, "group")]:
        if given is not None and given.strip().lower() != expected.lower():
            raise RegistryError(
                f"{code!r} is {language.name} ({language.group}) in croco's language table; --{option} {given!r} "
                f"disagrees. Leave --{option} out."
            )
    options = _options(base, storage_options)
    entries = load_registry(base, options)
    for entry in entries:
        if entry.code == code:
            return AddResult(
                entry, False, f"{code} ({entry.name}) is already registered (since {entry.added_at}); nothing changed."
            )
    entry = LanguageEntry(code=code, name=language.name, group=language.group, added_at=added_at or _now())
    _save(base, [*entries, entry], options)
    return AddResult(entry, True, f"Registered {code} ({entry.name}, {entry.group}) in {registry_path(base)}.")


def remove_language(
    base: str, code: str, delete_data: bool = False, storage_options: dict | None = None
) -> RemoveResult:
    """Unregister ``code``; the sensor then deletes its partition.

    Its data stays unless ``delete_data``: then every ``<base>/<table>/language=<code>/`` folder and
    every ``<base>/checkpoints/<asset>/language=<code>/`` folder is deleted too.
    """
    code = code.strip() if isinstance(code, str) else code
    if not isinstance(code, str) or not (len(code) == 2 and code.isascii() and code.isalpha() and code.islower()):
        raise RegistryError(f"{code!r} is not an ISO 639-1 language code (two lower-case letters, e.g. 'da').")
    options = _options(base, storage_options)
    entries = load_registry(base, options)
    kept = [entry for entry in entries if entry.code != code]
    removed = len(kept) != len(entries)
    if removed:
        _save(base, kept, options)
    deleted = _delete_language_data(base, code, options) if delete_data else []
    parts = [f"Unregistered {code}." if removed else f"{code} was not registered; the registry is unchanged."]
    if delete_data:
        parts.append(
            f"Deleted {len(deleted)} data folder(s)." if deleted else f"No data folders for {code} were found."
        )
    elif removed:
        parts.append(f"Its data stays under {base} (use --delete-data to delete it).")
    return RemoveResult(code, removed, deleted, " ".join(parts))


def language_data_dirs(base: str, code: str, storage_options: dict | None = None) -> list[str]:
    """Every existing ``<base>/<table>/language=<code>`` and ``<base>/checkpoints/<asset>/language=<code>``."""
    options = _options(base, storage_options)
    fs = storage.filesystem(base, options)
    fs.invalidate_cache()  # s3fs caches listings; a stale one could miss a folder written since
    found: list[str] = []
    for parent in [base, storage.join(base, "checkpoints")]:
        if not fs.isdir(parent):
            continue
        for child in fs.ls(parent, detail=True):
            if child.get("type") != "directory":
                continue
            folder = storage.join(parent, child["name"].rstrip("/").rsplit("/", 1)[-1], f"language={code}")
            if fs.isdir(folder):
                found.append(folder)
    return found


def _delete_language_data(base: str, code: str, storage_options: dict | None) -> list[str]:
    fs = storage.filesystem(base, storage_options)
    folders = language_data_dirs(base, code, storage_options)
    for folder in folders:
        fs.rm(folder, recursive=True)
    return folders


@dataclass(frozen=True)
class PartitionPlan:
    """What the sensor should do to bring the ``language`` partitions in line with the registry."""

    add: list[str]  # codes to add as partitions
    run: list[LanguageEntry]  # entries to request a pipeline run for
    delete: list[str]  # partitions to delete (their data stays)
    seen: dict[str, str]  # code -> added_at of the registry as read now (the sensor's next cursor)


def plan_partitions(
    entries: list[LanguageEntry], partitions: set[str] | list[str], previous: dict[str, str]
) -> PartitionPlan:
    """Compare the registry with the existing partitions and with the registry seen last time.

    - a registered code with no partition is added and gets a run;
    - a code removed and added again since last time (a new ``added_at``) gets a new run;
    - a partition is deleted only when its code was in the registry last time and is gone now, so
      partitions made another way (the Dagster UI, ``croco demo``) are left alone.
    """
    existing = set(partitions)
    current = {entry.code: entry.added_at for entry in entries}
    add = [entry.code for entry in entries if entry.code not in existing]
    run = [
        entry
        for entry in entries
        if entry.code not in existing or (entry.code in previous and previous[entry.code] != entry.added_at)
    ]
    delete = sorted(code for code in previous if code not in current and code in existing)
    return PartitionPlan(add=add, run=run, delete=delete, seen=current)
