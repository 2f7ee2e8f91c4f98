"""The language registry file and the `croco languages` command, on a temporary storage folder."""

import json
import os
from pathlib import Path

import pytest

from croco_pipeline.core.languages import registry
from croco_pipeline.core.languages.registry import LanguageEntry, RegistryError, plan_partitions


def test_add_list_and_remove_keep_the_data(tmp_path):
    base = str(tmp_path / "data")
    assert registry.load_registry(base) == []

    first = registry.add_language(base, "da")
    assert first.added and first.entry.name == "Danish" and first.entry.group == "high-resource"
    registry.add_language(base, "ga", name="Irish", group="low-resource")
    again = registry.add_language(base, "da")
    assert not again.added and "already registered" in again.message
    assert again.entry == first.entry

    entries = registry.load_registry(base)
    assert [entry.code for entry in entries] == ["da", "ga"]
    assert entries[0].added_at.endswith("+00:00")
    stored = json.loads(Path(registry.registry_path(base)).read_text())
    assert stored["version"] == 1 and stored["languages"][1]["name"] == "Irish"

    (tmp_path / "data" / "prompts" / "language=da").mkdir(parents=True)
    (tmp_path / "data" / "prompts" / "language=da" / "data.parquet").write_bytes(b"x")
    removed = registry.remove_language(base, "da")
    assert removed.removed and removed.deleted_paths == [] and "stays" in removed.message
    assert [entry.code for entry in registry.load_registry(base)] == ["ga"]
    assert (tmp_path / "data" / "prompts" / "language=da" / "data.parquet").exists()

    missing = registry.remove_language(base, "fr")
    assert not missing.removed and "not registered" in missing.message
    assert not list((tmp_path / "data").glob(".languages.json.*"))  # no temporary files left behind


def test_remove_with_delete_data_deletes_every_table_and_checkpoint_of_that_language_only(tmp_path):
    base = tmp_path / "data"
    for folder in [
        "prompts/language=da",
        "generations/language=da",
        "evaluation_judgments/language=da",
        "checkpoints/dpo_checkpoint/language=da",
        "prompts/language=fr",
        "checkpoints/dpo_checkpoint/language=fr",
    ]:
        (base / folder).mkdir(parents=True)
        (base / folder / "data.parquet").write_bytes(b"x")
    registry.add_language(str(base), "da")

    result = registry.remove_language(str(base), "da", delete_data=True)

    assert result.removed and len(result.deleted_paths) == 4
    assert not any(base.rglob("language=da"))
    assert (base / "prompts/language=fr/data.parquet").exists()
    assert (base / "checkpoints/dpo_checkpoint/language=fr/data.parquet").exists()
    assert (base / "languages.json").exists()


@pytest.mark.parametrize(
    "code, expected",
    [
        ("xx", "Unknown language code 'xx'"),
        ("DA", "not an ISO 639-1"),
        ("dan", "not an ISO 639-1"),
        ("../", "not an ISO 639-1"),
        ("", "not an ISO 639-1"),
    ],
)
def test_unknown_or_malformed_codes_are_refused(tmp_path, code, expected):
    with pytest.raises(RegistryError, match=expected):
        registry.add_language(str(tmp_path), code)
    assert not Path(registry.registry_path(str(tmp_path))).exists()


def test_any_iso_code_the_identifiers_know_is_accepted_and_named(tmp_path):
    """Not only the paper's fifteen: Polish, Swahili, Basque get their names from the ISO table."""
    for code, name in [("pl", "Polish"), ("sw", "Swahili"), ("eu", "Basque"), ("el", "Modern Greek")]:
        result = registry.add_language(str(tmp_path), code)
        assert result.added and (result.entry.name, result.entry.group) == (name, "other")
    assert registry.add_language(str(tmp_path), "cy").entry.group == "low-resource"  # the paper's groups stay


def test_a_language_the_identifiers_cannot_recognise_is_refused_with_that_reason(tmp_path):
    # Abkhazian has an ISO 639-1 code, but no language identifier here knows it
    with pytest.raises(RegistryError, match="'ab' \\(Abkhazian\\) is an ISO 639-1 code, but .* cannot recognise it"):
        registry.add_language(str(tmp_path), "ab")
    assert not Path(registry.registry_path(str(tmp_path))).exists()


def test_name_or_group_that_disagree_with_the_table_are_refused(tmp_path):
    with pytest.raises(RegistryError, match="--group 'low-resource' disagrees"):
        registry.add_language(str(tmp_path), "da", group="low-resource")


def test_remove_refuses_a_malformed_code_before_touching_any_folder(tmp_path):
    with pytest.raises(RegistryError, match="not an ISO 639-1"):
        registry.remove_language(str(tmp_path), "*", delete_data=True)


@pytest.mark.parametrize(
    "content, expected",
    [
        ("{not json", "not valid JSON"),
        ('["da"]', "'languages' list"),
        ('{"version": 7, "languages": []}', "version 7"),
        ('{"version": 1, "languages": [{"code": "da"}]}', "needs the text fields"),
        (
            '{"version": 1, "languages": ['
            + ",".join(['{"code": "da", "name": "Danish", "group": "g", "added_at": "t"}'] * 2)
            + "]}",
            "twice",
        ),
    ],
)
def test_a_malformed_registry_file_is_named_in_the_error(tmp_path, content, expected):
    path = Path(registry.registry_path(str(tmp_path)))
    path.write_text(content)
    with pytest.raises(RegistryError, match=expected) as error:
        registry.load_registry(str(tmp_path))
    assert str(path) in str(error.value)
    with pytest.raises(RegistryError):
        registry.add_language(str(tmp_path), "fr")
    assert path.read_text() == content  # a broken file is never overwritten


def test_plan_adds_new_codes_reruns_readded_ones_and_deletes_only_what_the_registry_owned():
    entries = [
        LanguageEntry("da", "Danish", "high-resource", "t2"),
        LanguageEntry("fr", "French", "high-resource", "t1"),
    ]
    plan = plan_partitions(entries, {"fr", "es", "de"}, previous={"da": "t1", "fr": "t1", "de": "t0"})
    assert plan.add == ["da"]
    assert [entry.code for entry in plan.run] == ["da"]
    assert plan.delete == ["de"]  # "es" was made elsewhere (UI, croco demo) and is left alone
    assert plan.seen == {"da": "t2", "fr": "t1"}

    readded = plan_partitions(entries, {"da", "fr"}, previous={"da": "t1", "fr": "t1"})
    assert readded.add == [] and [entry.code for entry in readded.run] == ["da"]


@pytest.fixture
def croco_languages(croco):
    """``croco languages …`` with ``CROCO_STORAGE`` unset, or set to ``env_storage``."""

    def run(*args, env_storage=None):
        env = {name: value for name, value in os.environ.items() if name != "CROCO_STORAGE"}
        if env_storage:
            env["CROCO_STORAGE"] = env_storage
        return croco("languages", *args, env=env)

    return run


def test_command_line_add_list_remove(tmp_path, croco_languages):
    base = str(tmp_path / "store")
    empty = croco_languages("list", env_storage=base)
    assert empty.returncode == 0 and "No languages registered" in empty.stdout

    added = croco_languages("add", "mt", env_storage=base)
    assert added.returncode == 0, added.stderr
    assert "Registered mt (Maltese, low-resource)" in added.stdout
    assert "already registered" in croco_languages("--storage", base, "add", "mt").stdout

    listing = croco_languages("--storage", base, "list")
    lines = listing.stdout.splitlines()
    assert lines[0].split() == ["code", "name", "group", "added"]
    assert lines[2].split()[:3] == ["mt", "Maltese", "low-resource"]

    bad = croco_languages("--storage", base, "add", "xx")
    assert bad.returncode == 2 and "Unknown language code 'xx'" in bad.stderr

    removed = croco_languages("--storage", base, "remove", "mt", "--delete-data")
    assert removed.returncode == 0 and "Unregistered mt" in removed.stdout
    assert croco_languages("--storage", base, "list").stdout.startswith("No languages registered")
    assert croco_languages("--storage", base).returncode == 2


def test_command_line_reports_a_malformed_registry_with_exit_code_2(tmp_path, croco_languages):
    Path(registry.registry_path(str(tmp_path))).write_text("{broken")
    result = croco_languages("--storage", str(tmp_path), "list")
    assert result.returncode == 2
    assert "languages.json is not valid JSON" in result.stderr and "Traceback" not in result.stderr
