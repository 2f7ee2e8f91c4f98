"""The whole asset graph, materialised in process for two languages with tiny models built on the fly."""

import json
import os

import polars as pl
import pytest
from dagster import DagsterInstance
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

from croco_pipeline.core.models.lifetime import close_shared_generators
from croco_pipeline.definitions import build_definitions
from croco_pipeline.partitions import language_partitions

LANGUAGES = ["da", "ga"]

# whole runs of the asset graph: the system tier (make test), not make test-fast
pytestmark = pytest.mark.system


@pytest.fixture(scope="module")
def pipeline_run(tmp_path_factory, tiny_environ):
    storage = tmp_path_factory.mktemp("croco_data")
    # one engine for every step of this process, as `croco demo` runs (and much faster on 2 cores)
    environ = tiny_environ(storage, CROCO_KEEP_MODELS_LOADED="1")
    definitions = build_definitions(environ=environ)
    # an instance on disk, so that `croco export` (another process) finds the runs with DAGSTER_HOME
    instance = DagsterInstance.local_temp(str(tmp_path_factory.mktemp("dagster_home")))
    instance.add_dynamic_partitions(language_partitions.name, LANGUAGES)
    results = {}
    for language in LANGUAGES:
        for job_name in ["croco_job", "baselines_job"]:
            job = definitions.resolve_job_def(job_name)
            results[(job_name, language)] = job.execute_in_process(partition_key=language, instance=instance)
    results["cross_language_job"] = definitions.resolve_job_def("cross_language_job").execute_in_process(
        instance=instance
    )
    for language in LANGUAGES:
        job = definitions.resolve_job_def("multilingual_evaluation_job")
        results[("multilingual_evaluation_job", language)] = job.execute_in_process(
            partition_key=language, instance=instance
        )
    results["report_job"] = definitions.resolve_job_def("report_job").execute_in_process(instance=instance)
    close_shared_generators()
    return storage, results, instance


def _table(storage, asset, language):
    return pl.read_parquet(storage / asset / f"language={language}" / "data.parquet")


def test_every_stage_succeeds_and_writes_hive_partitions(pipeline_run):
    storage, results, _ = pipeline_run
    assert [name for name, result in results.items() if not result.success] == []
    per_language = [
        "prompts",
        "generations",
        "reward_scores",
        "preference_pairs",
        "unpaired_prompts",
        "sft_records",
        "dpo_checkpoint",
        "sft_checkpoint",
        "base_answers",
        "base_evaluation",
        "evaluation",
        "evaluation_judgments",
        "sft_evaluation",
        "multilingual_evaluation",
        "multilingual_sft_evaluation",
        "reward_model_transfer",
    ]
    for asset in per_language:
        for language in LANGUAGES:
            assert (storage / asset / f"language={language}" / "data.parquet").is_file(), (asset, language)
    for asset in [
        "cross_language_pairs",
        "multilingual_dpo_checkpoint",
        "multilingual_sft_checkpoint",
        "croco_report",
    ]:
        assert (storage / asset / "data.parquet").is_file(), asset
    # no temporary files or staged chunks are left next to the data
    assert not [path for path in storage.rglob("*.tmp")]
    assert not [path for path in (storage / "_staging").rglob("*.parquet")]


def test_generations_have_prompts_times_n_rows_with_ids(pipeline_run):
    storage, _, _ = pipeline_run
    for language in LANGUAGES:
        generations = _table(storage, "generations", language)
        assert generations.height == 4 * 3  # tiny profile: 4 train prompts × 3 samples
        assert generations["language"].unique().to_list() == [language]
        assert (
            generations.group_by("prompt_id").agg(pl.col("sample_idx").sort())["sample_idx"].to_list()
            == [[0, 1, 2]] * 4
        )
        assert set(generations["finish_reason"]) <= {"stop", "length"}
        scores = _table(storage, "reward_scores", language)
        assert scores.height == generations.height
        assert scores["reward"].is_finite().all()


def test_every_pair_obeys_the_selection_rule(pipeline_run):
    storage, _, _ = pipeline_run
    for language in LANGUAGES:
        scores = _table(storage, "reward_scores", language)
        pairs = _table(storage, "preference_pairs", language)
        assert pairs.height >= 1
        for pair in pairs.iter_rows(named=True):
            pool = scores.filter(pl.col("prompt_id") == pair["prompt_id"]).sort("sample_idx")
            rewards = pool["reward"].to_list()
            best = max(rewards)
            assert pair["chosen_score"] == best
            assert pair["chosen_sample_idx"] == rewards.index(best)  # first on a tie
            mean = sum(rewards) / len(rewards)
            std = (sum((r - mean) ** 2 for r in rewards) / len(rewards)) ** 0.5
            target = mean - 2 * std
            below = [(abs(r - target), i) for i, r in enumerate(rewards) if r < best]
            assert pair["rejected_sample_idx"] == min(below)[1]
            assert pair["rejected_score"] < pair["chosen_score"]
            assert pair["chosen"] == pool["response"][pair["chosen_sample_idx"]].strip()  # stripped, as the authors


def test_adapter_loads_and_generates(pipeline_run, tiny_policy_path):
    storage, _, _ = pipeline_run
    checkpoint = _table(storage, "dpo_checkpoint", "da")
    adapter_dir = checkpoint["checkpoint_path"][0]
    manifest = json.loads(open(os.path.join(adapter_dir, "manifest.json")).read())
    assert (
        manifest["num_examples"] == checkpoint["num_examples"][0] == _table(storage, "preference_pairs", "da").height
    )
    base = AutoModelForCausalLM.from_pretrained(tiny_policy_path)
    model = PeftModel.from_pretrained(base, adapter_dir)
    tokenizer = AutoTokenizer.from_pretrained(tiny_policy_path)
    inputs = tokenizer("hello", return_tensors="pt")
    output = model.generate(**inputs, max_new_tokens=4, do_sample=False)
    assert output.shape[1] > inputs["input_ids"].shape[1]


def test_evaluation_has_one_row_per_language(pipeline_run):
    storage, _, _ = pipeline_run
    for language in LANGUAGES:
        evaluation = _table(storage, "evaluation", language)
        assert evaluation.height == 1
        row = evaluation.row(0, named=True)
        assert row["language"] == language and row["system"] == "croco_monolingual"
        assert row["n_judged"] + row["n_unjudged"] == 2 * 2  # 2 held-out prompts × 2 samples
        assert 0 <= row["win_rate"] <= 100
        assert 0 <= row["tuned_language_share"] <= 1
        assert row["mc_n"] == 48 and 0 <= row["mc_accuracy"] <= 1
        # how the tuned model was served: merged on a CPU, in float32 where its dtype would erase the adapter
        assert row["adapter_serving"] in ("merged", "merged_float32") and row["adapter_kept_fraction"] is not None
        assert row["adapter_dtype"] in ("float32", "bfloat16")
        judgments = _table(storage, "evaluation_judgments", language)
        assert judgments.height == 4
        # tuned answers are judged against the very base answers stored in base_answers
        base = _table(storage, "base_answers", language)
        assert (
            judgments.sort("prompt_id", "sample_idx")["base_response"].to_list()
            == base.sort("prompt_id", "sample_idx")["response"].to_list()
        )
        expected = [
            1.0 if t > b else 0.0 if t < b else 0.5
            for t, b in zip(judgments["tuned_reward"], judgments["base_reward"])
        ]
        assert judgments["preference"].to_list() == expected


def test_report_compares_every_system_in_every_language(pipeline_run):
    storage, _, _ = pipeline_run
    report = pl.read_parquet(storage / "croco_report" / "data.parquet")
    systems = ["base", "sft_best_of_n", "sft_multilingual", "croco_monolingual", "croco_multilingual"]
    # each language, then the unweighted average over the languages, as the paper reports it
    assert report.select("language", "system").rows() == [
        (language, system) for language in [*LANGUAGES, "average"] for system in systems
    ]
    assert report.filter(pl.col("system") == "base")["win_rate"].to_list() == [50.0, 50.0, 50.0]
    per_language = report.filter(pl.col("language") != "average")
    assert per_language["rm_transfer_accuracy"].is_not_null().all()
    for system in systems[1:]:
        rates = per_language.filter(pl.col("system") == system)["win_rate"].to_list()
        average = report.filter((pl.col("language") == "average") & (pl.col("system") == system)).row(0, named=True)
        assert average["win_rate"] == pytest.approx(sum(rates) / len(rates))
    assert (storage / "report" / "win_rates.png").stat().st_size > 1000
    assert "| language | system |" in (storage / "report" / "report.md").read_text()


def test_the_demo_shows_every_checkpoints_loss_and_a_forgetting_verdict_per_language(pipeline_run):
    """What `croco demo --full` prints under its table: each checkpoint's first and last loss (recorded in
    its row and metadata), how many held-out prompts moved, and per language whether SFT and CroCo forgot."""
    from dagster import AssetKey

    from croco_pipeline.commands.demo import _checkpoint_losses, collapsed
    from croco_pipeline.core.evaluation.report import forgetting_verdicts

    storage, _, instance = pipeline_run
    for asset in ["dpo_checkpoint", "sft_checkpoint"]:
        final = json.loads(_table(storage, asset, "da")["final_metrics"][0])
        assert {"first_loss", "last_loss", "start_loss", "end_loss", "learned"} <= set(final), final
        metadata = instance.get_latest_materialization_event(AssetKey(asset)).asset_materialization.metadata
        assert "(first → last step)" in metadata["loss"].text
    losses = _checkpoint_losses(str(storage), None)
    assert sorted(zip(losses["checkpoint"], losses["language"])) == sorted(
        [(name, language) for name in ["dpo_checkpoint", "sft_checkpoint"] for language in LANGUAGES]
        + [("multilingual_dpo_checkpoint", "all"), ("multilingual_sft_checkpoint", "all")]
    )
    assert losses["prompts with answers ≠ base"].str.ends_with("%").all()
    # the share of empty held-out answers, tuned and base, counted again here from the judgments
    judgments = pl.read_parquet(storage / "evaluation_judgments" / "language=da" / "data.parquet")
    tuned, base = (judgments[column].str.strip_chars().eq("").mean() for column in ("tuned_response", "base_response"))
    row = losses.filter((pl.col("checkpoint") == "dpo_checkpoint") & (pl.col("language") == "da")).row(0, named=True)
    assert row["empty answers, tuned / base"] == f"{100 * tuned:.0f}% / {100 * base:.0f}%"
    assert row["collapsed"] == collapsed(tuned, base)
    report = pl.read_parquet(storage / "croco_report" / "data.parquet")
    lines = forgetting_verdicts(report)
    assert [line.split(":")[0] for line in lines] == LANGUAGES
    assert all(line.split(": ", 1)[1].startswith("SFT ") and "; CroCo " in line for line in lines), lines


def test_croco_sql_returns_the_pairs(pipeline_run, croco):
    storage, _, _ = pipeline_run
    query = "SELECT language, count(*) AS n FROM preference_pairs GROUP BY language ORDER BY language"
    completed = croco("sql", query, "--storage", storage, "--format", "json")
    assert completed.returncode == 0, completed.stderr
    rows = json.loads(completed.stdout)
    expected = [
        {"language": language, "n": _table(storage, "preference_pairs", language).height} for language in LANGUAGES
    ]
    assert rows == expected


def test_training_and_evaluation_are_tracked_and_carded(pipeline_run):
    """Every checkpoint names its Trackio run (manifest and asset metadata), the run holds its loss curve,
    evaluations are runs of their own, and each adapter's model card ends up with its evaluation."""
    import sqlite3

    from dagster import AssetKey

    storage, _, instance = pipeline_run
    for asset, language, evaluation in [
        ("dpo_checkpoint", "da", "evaluation"),
        ("sft_checkpoint", "ga", "sft_evaluation"),
        ("multilingual_dpo_checkpoint", None, "multilingual_evaluation"),
    ]:
        table = pl.read_parquet(storage / asset / (f"language={language}" if language else "") / "data.parquet")
        folder = table["checkpoint_path"][0]
        tracking = json.loads(open(os.path.join(folder, "manifest.json")).read())["tracking"]
        assert tracking["tracker"] == "trackio" and tracking["project"] == "croco"
        assert tracking["run"].startswith(f"{asset}-{language or 'all'}-")
        event = instance.get_latest_materialization_event(AssetKey(asset))
        assert event.asset_materialization.metadata["tracker_run"].data["run"].startswith(f"{asset}-")
        # the UI names how each tuned model was served and how much of its adapter the served weights keep
        evaluated = instance.get_latest_materialization_event(AssetKey(evaluation)).asset_materialization.metadata
        assert evaluated["adapter_serving"].text.startswith("merged")
        assert 0 <= evaluated["adapter_kept_fraction"].value <= 1.5
        with sqlite3.connect(os.path.join(tracking["location"], "croco.db")) as connection:
            query = "SELECT metrics FROM metrics WHERE run_name = ?"
            logged = connection.execute(query, (tracking["run"],)).fetchall()
            evaluations = connection.execute(
                "SELECT metrics FROM metrics WHERE run_name LIKE ?", (f"{evaluation}-%",)
            ).fetchall()
        assert sum("train/loss" in json.loads(row) for (row,) in logged) == 2  # tiny profile: 2 steps
        assert evaluations and all("win_rate" in json.loads(row) for (row,) in evaluations)
        card = open(os.path.join(folder, "README.md")).read()
        assert "Not evaluated yet" not in card and "| win_rate |" in card, card


def test_exported_pairs_carry_a_dataset_card(pipeline_run, tmp_path, tiny_policy_path, croco):
    storage, results, instance = pipeline_run
    environ = {**os.environ, "DAGSTER_HOME": instance.root_directory}
    out = tmp_path / "pairs"
    completed = croco("export", "preference_pairs", out, "--storage", storage, "--format", "hf", env=environ)
    assert completed.returncode == 0, completed.stderr
    card = (out / "README.md").read_text()
    for language in LANGUAGES:
        pairs = _table(storage, "preference_pairs", language).height
        assert f"| {language} | {pairs} |" in card and f'- "{language}"' in card
        assert f"| {language} | {results[('croco_job', language)].run_id} |" in card  # the run that made them
    assert "`mean_minus_2sigma`: mean − 2·std" in card and "closest to the target" in card
    assert str(tiny_policy_path) in card  # the policy that sampled the answers
    reward_model = _table(storage, "reward_scores", "da")["reward_model"][0]
    assert f"| reward model (scores) | {reward_model} |" in card
    assert "| prompt set | shipped |" in card and "in-language" in card

    out = tmp_path / "cross"
    completed = croco("export", "cross_language_pairs", out, "--storage", storage, "--format", "hf", env=environ)
    assert completed.returncode == 0, completed.stderr
    card = (out / "README.md").read_text()
    assert "the language of the chosen answer" in card
    assert f"| (all languages) | {results['cross_language_job'].run_id} |" in card
