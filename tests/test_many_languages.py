"""One step for many languages: the rows equal those of one run per language, with one model load."""

import logging

import polars as pl
import pytest
from dagster import DagsterInstance, materialize
from polars.testing import assert_frame_equal

from croco_pipeline.core.execution.many_languages import WORK_KEY, combine, split, stage_label
from croco_pipeline.definitions import ALL_ASSETS, build_resources
from croco_pipeline.partitions import language_partitions

LANGUAGES = ["da", "ga"]
RANGE_TAGS = {"dagster/asset_partition_range_start": LANGUAGES[0], "dagster/asset_partition_range_end": LANGUAGES[-1]}


def test_combine_and_split_give_each_language_its_rows_back():
    da = pl.DataFrame({"prompt_id": ["p1", "p2"], "x": [1, 2]})
    ga = pl.DataFrame({"prompt_id": ["p1"], "x": [3]})
    combined = combine({"ga": ga, "da": da})
    assert combined[WORK_KEY].n_unique() == 3  # prompt ids are shared by translations: the key is not
    parts = split(combined, ["da", "ga", "cy"])
    assert_frame_equal(parts["da"].drop("language"), da)
    assert_frame_equal(parts["ga"].drop("language"), ga)
    assert parts["cy"].is_empty()
    assert stage_label(["nl", "da"]) == "da+nl"


class _EngineStarts(logging.Handler):
    def __init__(self):
        super().__init__()
        self.count = 0

    def emit(self, record):
        if "engine for" in record.getMessage() and "started" in record.getMessage():
            self.count += 1


# Irish sampled more than Danish (the tiny profile's 3): one engine serves both budgets in one run
SAMPLES = {"da": 3, "ga": 5}


def _run(environ, instance, selection, **kwargs):
    result = materialize(
        ALL_ASSETS,
        selection=selection,
        instance=instance,
        resources=build_resources(environ=environ),
        run_config={"resources": {"settings": {"config": {"samples_per_prompt_by_language": {"ga": SAMPLES["ga"]}}}}},
        **kwargs,
    )
    assert result.success
    return result


@pytest.mark.system
def test_one_run_over_languages_writes_the_rows_of_per_language_runs(tmp_path, tiny_environ):
    starts = _EngineStarts()
    logging.getLogger("croco_pipeline.core.models.generators").addHandler(starts)
    logging.getLogger("croco_pipeline.core.models.generators").setLevel(logging.INFO)
    try:
        tables, engine_starts = {}, {}
        for mode in ("per_language", "one_run"):
            storage = tmp_path / mode
            environ = tiny_environ(storage)
            (tmp_path / f"home-{mode}").mkdir()
            instance = DagsterInstance.local_temp(str(tmp_path / f"home-{mode}"))
            instance.add_dynamic_partitions(language_partitions.name, LANGUAGES)
            for language in LANGUAGES:
                _run(environ, instance, ["prompts"], partition_key=language)
            starts.count = 0
            if mode == "per_language":
                for language in LANGUAGES:
                    _run(environ, instance, ["generations", "reward_scores"], partition_key=language)
            else:
                result = _run(environ, instance, ["generations", "reward_scores"], tags=RANGE_TAGS)
                steps = {event.step_key for event in result.all_events if event.is_step_success}
                assert steps == {"generations", "reward_scores"}  # one step each for both languages
            engine_starts[mode] = starts.count
            tables[mode] = {
                (asset, language): pl.read_parquet(storage / asset / f"language={language}" / "data.parquet")
                for asset in ("generations", "reward_scores")
                for language in LANGUAGES
            }
            assert not (storage / "_staging" / "generations").exists() or not any(
                (storage / "_staging" / "generations").iterdir()
            )
    finally:
        logging.getLogger("croco_pipeline.core.models.generators").removeHandler(starts)
    for (asset, language), table in tables["per_language"].items():
        assert set(table.group_by("prompt_id").len()["len"]) == {SAMPLES[language]}
        assert_frame_equal(tables["one_run"][asset, language], table, check_exact=False, rel_tol=1e-5, abs_tol=1e-5)
    assert engine_starts == {"per_language": len(LANGUAGES), "one_run": 1}
