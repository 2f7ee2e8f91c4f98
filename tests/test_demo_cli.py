"""`croco demo` as a user runs it: the tiny profile through Dagster in a child process, with the seed
and a setting given on the command line, into its own Dagster home and storage, for a language with
shipped prompts and one whose prompts the translator writes; then the same demo with a second round, which
reuses round 0, and with a second round sampled from the multilingual checkpoint."""

import os

import polars as pl
import pytest
from dagster import AssetKey, AssetRecordsFilter, DagsterInstance

SETTINGS = [
    "--seed",
    "3",
    "--set",
    "max_train_prompts=3",
    "--set",
    "translation_language_filter=false",  # the tiny random policy translates into no language at all
    "--set",
    "translation_max_new_tokens=12",  # short prompts, so the tiny reward model's context sees the answers
]


@pytest.mark.system
def test_demo_runs_any_language_with_seed_and_settings_from_the_command_line(croco, tiny_environ, tmp_path):
    storage = tmp_path / "data"
    env = {**os.environ, **tiny_environ(storage)}
    result = croco(
        "demo",
        "--languages",
        "da,pl",  # pl has no shipped prompts (nor reward-transfer pairs)
        *SETTINGS,
        "--dagster-home",
        tmp_path / "home",
        "--quiet",
        env=env,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "win rate vs base" in result.stdout  # the effect table
    assert "judge" in result.stdout

    assert "pl has no shipped prompts" in result.stdout and "weak translator" in result.stdout
    for language in ("da", "pl"):
        generations = pl.read_parquet(storage / "generations" / f"language={language}" / "data.parquet")
        assert generations["prompt_id"].n_unique() == 3  # --set max_train_prompts=3 reached the run
    translated = pl.read_parquet(storage / "prompts" / "language=pl" / "data.parquet")
    assert translated.height > 0 and (translated["language"] == "pl").all()
    assert pl.read_parquet(storage / "reward_model_transfer" / "language=pl" / "data.parquet").is_empty()
    instance = DagsterInstance.from_config(str(tmp_path / "home"))
    runs = instance.get_runs()
    assert runs and all(run.run_config["resources"]["settings"]["config"]["seed"] == 3 for run in runs)
    assert len(list((tmp_path / "home" / "logs").glob("demo-*.log"))) == 1

    # The same demo with a second round reuses round 0 (its graph has more assets, its data are the same)
    # and adds round 1 only.
    rounds = croco(
        "demo", "--languages", "da", *SETTINGS, "--rounds", "2", "--dagster-home", tmp_path / "home", env=env
    )
    assert rounds.returncode == 0, rounds.stdout + rounds.stderr
    assert "croco_job [da]: already done for this configuration, skipped" in rounds.stdout
    generations = AssetRecordsFilter(asset_key=AssetKey("generations"), asset_partitions=["da"])
    assert len(instance.fetch_materializations(generations, limit=10).records) == 1
    assert (storage / "round1_generations" / "language=da" / "data.parquet").exists()

    # Round 1 sampled from the multilingual checkpoint: merged once, both languages sampled in one run,
    # round 0 reused, one report row per language, chain and round.
    multilingual = croco(
        "demo",
        "--languages",
        "da,pl",
        *SETTINGS,
        "--rounds",
        "2",
        "--round-policy",
        "multilingual",
        "--dagster-home",
        tmp_path / "home",
        env=env,
    )
    assert multilingual.returncode == 0, multilingual.stdout + multilingual.stderr
    assert "croco_job [pl]: already done for this configuration, skipped" in multilingual.stdout
    assert "round1_multilingual_sampling_job [all languages]" in multilingual.stdout
    assert len(instance.fetch_materializations(generations, limit=10).records) == 1
    policy = instance.fetch_materializations(AssetKey("round1_multilingual_policy"), limit=10).records
    assert len(policy) == 1  # one merge for every language
    checkpoint = instance.fetch_materializations(AssetKey("multilingual_dpo_checkpoint"), limit=10).records
    assert len(checkpoint) == 1  # round 0's multilingual checkpoint, not trained again for round 1
    merged = pl.read_parquet(storage / "round1_multilingual_policy" / "data.parquet")
    trained = pl.read_parquet(storage / "multilingual_dpo_checkpoint" / "data.parquet")
    assert merged["source_checkpoint"][0] == trained["checkpoint_path"][0]
    runs = {
        record.event_log_entry.run_id
        for record in instance.fetch_materializations(AssetKey("round1_multilingual_generations"), limit=10).records
    }
    assert len(runs) == 1  # one run sampled both languages
    for language in ("da", "pl"):
        sampled = pl.read_parquet(
            storage / "round1_multilingual_generations" / f"language={language}" / "data.parquet"
        )
        assert set(sampled["model"]) == {"multilingual_dpo_checkpoint"}
    report = pl.read_parquet(storage / "croco_rounds_report" / "data.parquet")
    chain = report.filter(pl.col("round_policy") == "multilingual")
    assert sorted(chain.select("language", "round").rows()) == [("da", 0), ("da", 1), ("pl", 0), ("pl", 1)]
    assert chain["win_rate"].null_count() == 0
    assert "sampled_from" in multilingual.stdout


@pytest.mark.parametrize(
    "assignment, message",
    [
        ("max_train_prompts", "use KEY=VALUE"),
        ("no_such_setting=1", "use KEY=VALUE"),
        ("max_train_prompts=many", "max_train_prompts=many"),
    ],
)
def test_demo_refuses_a_bad_setting_before_it_starts(croco, tmp_path, assignment, message):
    result = croco("demo", "--set", assignment, "--dagster-home", tmp_path / "home", "--storage", tmp_path / "d")
    assert result.returncode == 2
    assert message in result.stderr
    assert not (tmp_path / "d").exists()  # nothing started
