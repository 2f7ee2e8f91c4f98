"""The report over whatever exists: one language, systems missing, no model needed."""

import polars as pl
from dagster import DagsterInstance

from croco_pipeline.core.io import atomic
from croco_pipeline.definitions import build_definitions


def _row(base, table, **values):
    path = base / table / f"language={values['language']}" / "data.parquet"
    atomic.write_parquet(pl.DataFrame([values]), str(path))


def test_report_with_one_language_and_only_some_systems(tmp_path):
    base = tmp_path / "croco_data"
    mc = {"mc_n": 48, "mc_accuracy": 0.5, "mc_ci_low": 0.36, "mc_ci_high": 0.64}
    _row(base, "base_evaluation", language="da", system="base", mean_reward=0.1, language_share=0.5, **mc)
    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("language", ["da", "ga"])  # ga has nothing yet
    definitions = build_definitions(environ={"CROCO_PROFILE": "embedded", "CROCO_STORAGE": str(base)})

    result = definitions.resolve_job_def("report_job").execute_in_process(instance=instance)
    assert result.success
    report = pl.read_parquet(base / "croco_report" / "data.parquet")
    assert report.select("language", "system", "win_rate").rows() == [("da", "base", 50.0)]
    assert "No tuned system evaluated yet" in (base / "report" / "report.md").read_text()

    summary = dict(
        language="da",
        system="croco_monolingual",
        n_judged=32,
        win_rate=62.5,
        standard_error=8.0,
        lc_win_rate=60.0,
        tuned_mean_reward=0.3,
        tuned_language_share=0.7,
        **mc,
    )
    _row(base, "evaluation", **summary)
    assert definitions.resolve_job_def("report_job").execute_in_process(instance=instance).success
    report = pl.read_parquet(base / "croco_report" / "data.parquet")
    assert report.select("system", "win_rate", "mean_reward").rows() == [
        ("base", 50.0, 0.1),
        ("croco_monolingual", 62.5, 0.3),
    ]
    assert (base / "report" / "win_rates.png").is_file()


def test_report_table_adds_the_unweighted_average_over_languages():
    from croco_pipeline.core.evaluation.report import build_report_table

    mc = {"mc_accuracy": 0.5, "mc_ci_low": 0.4, "mc_ci_high": 0.6}
    base = pl.DataFrame(
        [
            {"language": code, "system": "base", "mean_reward": 0.1, "language_share": 0.5, **mc}
            for code in ("da", "fr")
        ]
    )
    rows = [  # da has 10 judgments, fr 30: the average weighs the two languages equally
        ("da", "croco_monolingual", 60.0, 3.0, 55.0, 10),
        ("fr", "croco_monolingual", 80.0, 4.0, 75.0, 30),
        ("da", "sft_multilingual", 40.0, 5.0, 40.0, 10),
    ]
    systems = pl.DataFrame(
        [
            {
                "language": lang,
                "system": system,
                "win_rate": wr,
                "standard_error": se,
                "lc_win_rate": lc,
                "n_judged": n,
                "tuned_mean_reward": 0.2,
                "tuned_language_share": 0.6,
                **mc,
            }
            for lang, system, wr, se, lc, n in rows
        ]
    )
    table = build_report_table(base, [systems], None)
    average = table.filter(pl.col("language") == "average")
    # sft_multilingual exists in one language only: no average row for it
    assert average.select("system", "win_rate", "standard_error", "lc_win_rate", "n_judged").rows() == [
        ("base", 50.0, None, 50.0, None),
        ("croco_monolingual", 70.0, 2.5, 65.0, 40),
    ]
    assert table["language"].to_list()[-2:] == ["average", "average"]  # after every language
    assert table.filter(pl.col("language") == "da")["system"].to_list() == [
        "base",
        "sft_multilingual",
        "croco_monolingual",
    ]


def test_effect_table_gives_a_plain_verdict_per_language_and_system():
    from croco_pipeline.core.evaluation.report import effect_table

    columns = ["language", "system", "win_rate", "standard_error", "language_share_independent", "judge"]
    columns += ["mc_delta", "mc_delta_low", "mc_delta_high"]
    reward = "reward: language-fidelity-demo"
    rows = [
        ("da", "base", 50.0, None, 0.30, None, None, None, None),
        ("da", "croco_monolingual", 66.4, 5.8, 0.48, reward, -0.8, -2.1, 0.5),
        ("da", "sft_best_of_n", 52.0, 5.0, 0.31, reward, -9.0, -12.0, -6.0),
        ("fr", "base", 50.0, None, 0.95, None, None, None, None),
        ("fr", "croco_monolingual", 58.0, 5.0, 0.97, reward, -3.0, -6.5, 0.4),
        ("average", "croco_monolingual", 62.2, 3.9, None, None, None, None, None),
    ]
    table = pl.DataFrame(rows, schema=columns, orient="row")
    verdicts = effect_table(table, ("croco_monolingual",))
    assert verdicts["language"].to_list() == ["da", "fr"]  # the average row has no per-language verdict
    da, fr = verdicts.iter_rows(named=True)
    assert da["verdict"] == "CroCo helps; no forgetting"
    assert da["win rate vs base"] == "66.4 ± 5.8 ✓" and da["in-language share"] == "0.30 → 0.48 ✓"
    # the table says who judged, and that it is the scorer that chose the pairs
    assert da["judge"] == "language-fidelity-demo (also chose the pairs)"
    assert da["Δ p(correct) [95% CI]"] == "-0.8 [-2.1, +0.5] ✓"
    # 58 - 2 x 5 = 48: not a win; +0.02 share; the interval reaches -6.5: forgetting cannot be excluded
    assert fr["verdict"] == "CroCo not shown: win rate, language share; forgetting not ruled out"
    # every tuned system the table has, CroCo first
    both = effect_table(table)
    assert both.select("language", "system").rows() == [
        ("da", "CroCo"),
        ("fr", "CroCo"),
        ("da", "SFT best-of-N"),
    ]
    # the whole interval [-12, -6] lies below -5: a loss of more than 5 points, not only one not excluded
    assert both.row(2, named=True)["verdict"] == "not shown: win rate, language share; forgot"


def test_a_checkpoint_that_answers_with_nothing_is_called_collapsed():
    from croco_pipeline.commands.demo import collapsed

    assert collapsed(0.59, 0.0)  # what 48 DPO steps at lr 1e-3 did to Danish on the embedded model
    assert not collapsed(0.05, 0.0)  # a few empty answers are noise
    assert not collapsed(0.30, 0.20)  # the base model says nothing as often
    assert collapsed(0.40, 0.20)


def test_the_demo_notes_a_language_whose_pairs_mostly_chose_another_language(tmp_path):
    import polars as pl

    from croco_pipeline.commands.demo import _off_language_pairs

    danish = "Jeg kan godt lide at læse bøger om vinteren, når det er koldt og mørkt udenfor."
    english = "I like to read books in the winter when it is cold and dark outside."
    for language, chosen in {"da": [danish, danish, english], "mt": [english, english, danish]}.items():
        folder = tmp_path / "preference_pairs" / f"language={language}"
        folder.mkdir(parents=True)
        pairs = pl.DataFrame({"language": [language] * 3, "chosen": chosen, "pool_size": [32, 31, 32]})
        pairs.write_parquet(folder / "data.parquet")
    assert _off_language_pairs(str(tmp_path), None, ["da"]) == []  # only languages whose share did not rise
    lines = _off_language_pairs(str(tmp_path), None, ["da", "mt"])
    assert len(lines) == 1 and lines[0].startswith("NOTE mt: only 0 of 3 chosen answers are in mt")
    assert "more than its 32 samples a prompt (--set 'samples_per_prompt_by_language={\"mt\": 64}')" in lines[0]


def test_the_languages_whose_share_did_not_rise_are_those_the_table_marks():
    import polars as pl

    from croco_pipeline.core.evaluation.report import share_not_shown

    report = pl.DataFrame(
        {
            "language": ["da", "da", "mt", "mt", "no", "no"],
            "system": ["base", "croco_monolingual"] * 3,
            "language_share_independent": [0.25, 0.48, 0.23, 0.19, 0.45, 0.55],
        }
    )
    assert share_not_shown(report) == ["mt"]  # no: +0.10 exactly passes
    assert share_not_shown(report, "sft_best_of_n") == []  # a system the table does not have
