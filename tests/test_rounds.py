"""Rounds of CroCo: round 1 samples from round 0's checkpoint and leaves round 0 as it was."""

import polars as pl
import pytest
from dagster import AssetKey, DagsterInstance

from croco_pipeline.core.models.lifetime import close_shared_generators
from croco_pipeline.core.plan import format_plan, model_loads, plan_run
from croco_pipeline.core.rounds import (
    RoundModels,
    adapter_base,
    multilingual_round_jobs,
    parse_round_policies,
    round_models,
    rounds_table,
)
from croco_pipeline.definitions import build_definitions
from croco_pipeline.partitions import language_partitions

LANGUAGE = "da"
ROUND_0 = ["prompts", "generations", "reward_scores", "preference_pairs", "dpo_checkpoint", "evaluation"]


def test_round_models_follow_the_settings():
    assert round_models("base", None, "previous", "previous") == RoundModels("base", None)  # round 0
    assert round_models("base", "r0", "base", "initial") == RoundModels("base", None)
    assert round_models("base", "r0", "base", "previous") == RoundModels("base", "r0")
    assert round_models("base", "r0", "previous", "previous") == RoundModels("r0", None)
    assert round_models("base", "r0", "previous", "initial") == RoundModels("r0", "base")
    with pytest.raises(ValueError, match="round_init"):
        round_models("base", "r0", "last", "initial")


def test_rounds_table_has_one_row_per_round_per_language_and_chain():
    evaluation = pl.DataFrame({"language": ["da", "ga"], "system": ["s", "s"], "win_rate": [50.0, 60.0]})
    pairs = pl.DataFrame({"language": ["da", "da", "ga"]})
    pooled = pl.DataFrame({"language": ["ga", "ga", None]})  # cross-language pairs by prompt language: none in da
    table = rounds_table(
        {
            ("language", 0): evaluation,
            ("language", 1): evaluation.with_columns(pl.col("win_rate") + 1),
            ("multilingual", 1): evaluation.with_columns(pl.col("win_rate") + 2),
        },
        {("language", 0): pairs, ("multilingual", 1): pooled},
    )
    assert table.select("language", "round_policy", "round").rows() == [
        ("da", "language", 0),
        ("da", "language", 1),
        ("da", "multilingual", 1),
        ("ga", "language", 0),
        ("ga", "language", 1),
        ("ga", "multilingual", 1),
    ]
    assert table["win_rate"].to_list() == [50.0, 51.0, 52.0, 60.0, 61.0, 62.0]
    assert table["pairs"].to_list() == [2, None, 0, 1, None, 2]  # no pooled pair in da: 0, not unknown


def test_round_policies_are_read_and_refused_by_name():
    assert parse_round_policies(None) == ("language",)
    assert parse_round_policies("multilingual, language") == ("language", "multilingual")
    with pytest.raises(ValueError, match="language or multilingual"):
        parse_round_policies("bilingual")
    with pytest.raises(ValueError, match="CROCO_ROUND_POLICY"):
        build_definitions(environ={"CROCO_ROUNDS": "2", "CROCO_ROUND_POLICY": "both"})


def _materializations(instance, name):
    return instance.fetch_materializations(AssetKey(name), limit=100).records


@pytest.mark.system
def test_round_1_samples_from_round_0_and_recomputes_nothing_of_it(tmp_path, tiny_environ):
    storage = tmp_path / "croco_data"
    environ = tiny_environ(storage, CROCO_KEEP_MODELS_LOADED="1", CROCO_ROUNDS="2")
    definitions = build_definitions(environ=environ)
    (tmp_path / "dagster_home").mkdir()
    instance = DagsterInstance.local_temp(str(tmp_path / "dagster_home"))
    instance.add_dynamic_partitions(language_partitions.name, [LANGUAGE])
    try:
        first = definitions.resolve_job_def("croco_job").execute_in_process(partition_key=LANGUAGE, instance=instance)
        assert first.success
        files = sorted(p for p in storage.rglob("*") if p.is_file() and "round1" not in str(p))
        before = {p: p.stat().st_mtime_ns for p in files}
        counts = {name: len(_materializations(instance, name)) for name in ROUND_0}
        assert all(count == 1 for count in counts.values()), counts

        second = definitions.resolve_job_def("round1_job").execute_in_process(
            partition_key=LANGUAGE, instance=instance
        )
        assert second.success
        report = definitions.resolve_job_def("report_job").execute_in_process(instance=instance)
        assert report.success
    finally:
        close_shared_generators()

    # nothing of round 0 was recomputed: no new materialisation, no file rewritten
    assert {name: len(_materializations(instance, name)) for name in ROUND_0} == counts
    assert {p: p.stat().st_mtime_ns for p in files} == before

    # round 1's policy is round 0's checkpoint merged, and its generations say so
    checkpoint = pl.read_parquet(storage / "dpo_checkpoint" / f"language={LANGUAGE}" / "data.parquet")
    policy = pl.read_parquet(storage / "round1_policy" / f"language={LANGUAGE}" / "data.parquet")
    assert policy["source_checkpoint"][0] == checkpoint["checkpoint_path"][0]
    generations = pl.read_parquet(storage / "round1_generations" / f"language={LANGUAGE}" / "data.parquet")
    round_0 = pl.read_parquet(storage / "generations" / f"language={LANGUAGE}" / "data.parquet")
    assert set(generations["model"]) == {f"dpo_checkpoint[{LANGUAGE}]"}
    assert generations.height == round_0.height
    assert generations["response"].to_list() != round_0["response"].to_list()  # another model sampled them
    metadata = _materializations(instance, "round1_generations")[0].asset_materialization.metadata
    assert metadata["policy_checkpoint"].value == policy["model_path"][0]

    # round 1 trained on the base (round_init=base), its adapter recorded so
    round_1 = pl.read_parquet(storage / "round1_dpo_checkpoint" / f"language={LANGUAGE}" / "data.parquet")
    assert adapter_base(round_1["checkpoint_path"][0]) == adapter_base(checkpoint["checkpoint_path"][0])

    # the report across rounds: one row per round for the language
    table = pl.read_parquet(storage / "croco_rounds_report" / "data.parquet")
    assert table.select("language", "round_policy", "round").rows() == [
        (LANGUAGE, "language", 0),
        (LANGUAGE, "language", 1),
    ]
    assert table["win_rate"].null_count() == 0
    assert (storage / "report" / "rounds" / "rounds.png").is_file()


def test_model_loads_count_each_model_opening_step():
    one_round = model_loads(languages=4, rounds=1)
    assert one_round.per_language_runs == 4 * 8  # generations, scores, training, base answers 2, evaluation 2, RM 1
    assert one_round.one_run_per_stage == 4 * 8 - 2 * 3  # generations and scores load once instead of four times
    two_rounds = model_loads(languages=4, rounds=2)
    # a later round's policy is its language's own model: only the reward model is shared
    assert two_rounds.per_language_runs - one_round.per_language_runs == 4 * 6
    assert two_rounds.one_run_per_stage - one_round.one_run_per_stage == 4 * 6 - 3
    assert model_loads(languages=1, rounds=1, judge=True).per_language_runs == 9
    # the multilingual chain: round 0's pooled checkpoint (1) and its evaluation (2 per language), then per
    # round one merge, sampling and scoring per language (or once), one training, evaluation per language
    multilingual = model_loads(languages=4, rounds=2, round_policies=("multilingual",))
    assert multilingual.per_language_runs - one_round.per_language_runs == (1 + 4 * 2) + (1 + 4 + 4 + 1 + 4 * 2)
    assert multilingual.one_run_per_stage - one_round.one_run_per_stage == (1 + 4 * 2) + (1 + 1 + 1 + 1 + 4 * 2)


def test_plan_has_a_checkpoint_per_round_and_the_model_loads(tmp_path):
    from croco_pipeline.definitions import build_resources

    settings = build_resources("embedded", {})["settings"]
    plan = plan_run(settings, ["da", "ga"], str(tmp_path), rounds=3)
    names = [c.name for c in plan.checkpoints if c.language == "da"]
    assert names == ["dpo_checkpoint", "sft_checkpoint", "round1_dpo_checkpoint", "round2_dpo_checkpoint"]
    text = format_plan(plan)
    assert "Rounds: 3 (round 0, then rounds 1–2" in text
    loads = model_loads(2, 3)
    assert f"{loads.per_language_runs} with one run per language; {loads.one_run_per_stage} when" in text


def test_rounds_add_their_assets_and_jobs_only_when_asked():
    graph = build_definitions(environ={}).resolve_asset_graph()
    assert not [key for key in graph.get_all_asset_keys() if "round" in key.to_user_string()]
    definitions = build_definitions(environ={"CROCO_ROUNDS": "3"})
    graph = definitions.resolve_asset_graph()
    round_2 = {
        key.to_user_string() for key in graph.get_all_asset_keys() if graph.get(key).group_name == "croco_round2"
    }
    assert round_2 == {
        f"round2_{name}"
        for name in [
            "policy",
            "generations",
            "reward_scores",
            "preference_pairs",
            "unpaired_prompts",
            "sft_records",
            "dpo_checkpoint",
            "evaluation",
            "evaluation_judgments",
        ]
    }
    # round 2 samples from round 1's checkpoint, merged
    assert AssetKey("round1_dpo_checkpoint") in graph.get(AssetKey("round2_policy")).parent_keys
    assert AssetKey("round2_policy") in graph.get(AssetKey("round2_generations")).parent_keys
    for job in ("round1_job", "round2_job", "sampling_job"):
        assert definitions.resolve_job_def(job)
    with pytest.raises(ValueError, match="CROCO_ROUNDS"):
        build_definitions(environ={"CROCO_ROUNDS": "0"})


def test_the_multilingual_chain_samples_from_the_multilingual_checkpoint():
    definitions = build_definitions(environ={"CROCO_ROUNDS": "3", "CROCO_ROUND_POLICY": "multilingual"})
    graph = definitions.resolve_asset_graph()
    names = {key.to_user_string() for key in graph.get_all_asset_keys()}
    assert not {"round1_policy", "round1_dpo_checkpoint"} & names  # only the chain asked for
    parents = {name: {key.to_user_string() for key in graph.get(AssetKey(name)).parent_keys} for name in names}
    assert parents["round1_multilingual_policy"] == {"multilingual_dpo_checkpoint"}
    assert parents["round2_multilingual_policy"] == {"round1_multilingual_dpo_checkpoint"}
    assert parents["round1_multilingual_generations"] == {"prompts", "round1_multilingual_policy"}
    assert parents["round1_cross_language_pairs"] == {"round1_multilingual_reward_scores"}
    assert parents["round1_multilingual_dpo_checkpoint"] == {
        "round1_cross_language_pairs",
        "round1_multilingual_policy",
    }
    # merged and trained once for every language; sampled and scored per language, or in one run over all
    assert not graph.get(AssetKey("round1_multilingual_policy")).is_partitioned
    assert not graph.get(AssetKey("round1_multilingual_dpo_checkpoint")).is_partitioned
    for name in ("round1_multilingual_generations", "round1_multilingual_reward_scores"):
        assert graph.get(AssetKey(name)).backfill_policy.max_partitions_per_run is None
    jobs = {
        job: {key.to_user_string() for key in definitions.resolve_job_def(job).asset_layer.selected_asset_keys}
        for job in multilingual_round_jobs(1).values()
    }
    assert jobs == {
        "round1_multilingual_sampling_job": {
            "round1_multilingual_policy",
            "round1_multilingual_generations",
            "round1_multilingual_reward_scores",
        },
        "round1_multilingual_training_job": {
            "round1_cross_language_pairs",
            "round1_cross_language_unpaired",
            "round1_cross_language_sft_records",
            "round1_multilingual_dpo_checkpoint",
        },
        "round1_multilingual_evaluation_job": {
            "round1_multilingual_evaluation",
            "round1_multilingual_evaluation_judgments",
        },
    }
    # the report reads both rounds of the chain; both chains live side by side when asked
    report_parents = {key.to_user_string() for key in graph.get(AssetKey("croco_rounds_report")).parent_keys}
    assert {"multilingual_evaluation", "round1_multilingual_evaluation", "round2_multilingual_evaluation"} <= (
        report_parents
    )
    both = build_definitions(environ={"CROCO_ROUNDS": "2", "CROCO_ROUND_POLICY": "language,multilingual"})
    assert both.resolve_job_def("round1_job") and both.resolve_job_def("round1_multilingual_sampling_job")


def test_the_demo_plan_runs_the_multilingual_chain_once_per_stage():
    from croco_pipeline.commands.demo import demo_plan

    labels = [step.label for step in demo_plan(["da", "ga"], 2, ("multilingual",), full=False)]
    assert labels == [
        "croco_job [da]",
        "croco_job [ga]",
        "cross_language_job",
        "multilingual_evaluation_job [da]",
        "multilingual_evaluation_job [ga]",
        "round1_multilingual_sampling_job [all languages]",
        "round1_multilingual_training_job",
        "round1_multilingual_evaluation_job [da]",
        "round1_multilingual_evaluation_job [ga]",
        "report_job",
    ]
    only_language = [step.job for step in demo_plan(["da"], 2, ("language",), full=False)]
    assert only_language == ["croco_job", "round1_job", "report_job"]


def test_the_catalogue_shows_the_later_rounds_tables(tmp_path):
    from croco_pipeline.core.io import catalog

    for folder in ["round1_generations/language=da", "round12_generations/language=da", "round1_unknown", "."]:
        (tmp_path / folder).mkdir(parents=True, exist_ok=True)
    for name, frame in {
        "round1_generations/language=da": pl.DataFrame({"language": ["da"], "model": ["dpo_checkpoint[da]"]}),
        "round12_generations/language=da": pl.DataFrame({"language": ["da"], "model": ["round11_dpo_checkpoint[da]"]}),
        "round1_unknown": pl.DataFrame({"x": [1]}),
    }.items():
        frame.write_parquet(tmp_path / name / "data.parquet")
    (tmp_path / "croco_rounds_report").mkdir()
    pl.DataFrame({"language": ["da"], "round": [1]}).write_parquet(tmp_path / "croco_rounds_report" / "data.parquet")
    connection = catalog.open_catalog(str(tmp_path))
    assert set(catalog.available_tables(connection)) == {
        "croco_rounds_report",
        "round1_generations",
        "round12_generations",
    }
    assert catalog.query(str(tmp_path), "SELECT model FROM round1_generations")["model"].to_list() == [
        "dpo_checkpoint[da]"
    ]
