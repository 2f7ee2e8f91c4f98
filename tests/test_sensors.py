"""The language registry sensor and the nightly refresh condition, against real Dagster instances.

The pipeline's own assets load models, so these tests use a small stand-in chain with the same
`language` partitions, a job called `croco_job` and the real sensors and automation condition.
"""

import datetime
import os
import time
from pathlib import Path

import pytest
from dagster import (
    AddDynamicPartitionsRequest,
    AssetKey,
    AssetSelection,
    DagsterInstance,
    Definitions,
    asset,
    build_sensor_context,
    define_asset_job,
    evaluate_automation_conditions,
    execute_job,
    materialize,
    multiprocess_executor,
    reconstructable,
)

from croco_pipeline.constants import MODEL_POOL
from croco_pipeline.core.languages import registry
from croco_pipeline.partitions import language_partitions
from croco_pipeline.resources.storage import StorageResource
from croco_pipeline.sensors import (
    automation_condition,
    croco_schedules,
    croco_sensors,
    language_registry_sensor,
)


def _chain(code_version: str = "1"):
    @asset(partitions_def=language_partitions, code_version="1", automation_condition=automation_condition())
    def prompts() -> None: ...

    @asset(
        partitions_def=language_partitions,
        code_version=code_version,
        deps=[prompts],
        automation_condition=automation_condition(),
    )
    def generations() -> None: ...

    @asset(
        partitions_def=language_partitions,
        code_version="1",
        deps=[generations],
        automation_condition=automation_condition(),
    )
    def evaluation() -> None: ...

    return [prompts, generations, evaluation]


def _definitions(base: str) -> Definitions:
    assets = _chain()
    job = define_asset_job("croco_job", selection=AssetSelection.assets(*assets))
    return Definitions(
        assets=assets,
        jobs=[job],
        sensors=croco_sensors,
        schedules=croco_schedules,
        resources={"storage_base": StorageResource(base_path=base)},
    )


def _tick(instance, defs, cursor=None):
    """One sensor tick as the daemon runs it: the definitions' resources, evaluate, then apply the
    partition requests (the daemon also skips run keys it has seen; we check we never rely on that)."""
    resources = defs.get_repository_def().get_top_level_resources()
    context = build_sensor_context(
        instance=instance,
        instance_ref=instance.get_ref(),
        cursor=cursor,
        definitions=defs,
        resources=resources,
        sensor_name="language_registry_sensor",
    )
    data = language_registry_sensor.evaluate_tick(context)
    for request in data.dynamic_partitions_requests or []:
        if isinstance(request, AddDynamicPartitionsRequest):
            instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
        else:
            for key in request.partition_keys:
                instance.delete_dynamic_partition(request.partitions_def_name, key)
    return data


@pytest.fixture
def instance(tmp_path):
    with DagsterInstance.local_temp(str(tmp_path)) as instance:
        yield instance


def test_definitions_with_the_sensors_load(tmp_path):
    defs = _definitions(str(tmp_path))
    Definitions.validate_loadable(defs)
    repository = defs.get_repository_def()
    assert repository.get_sensor_def("language_registry_sensor").minimum_interval_seconds == 30
    assert repository.get_sensor_def("nightly_refresh") is not None


def test_a_registered_language_becomes_a_partition_and_one_run(instance, tmp_path):
    base = str(tmp_path / "data")
    defs = _definitions(base)
    added = registry.add_language(base, "ga").entry

    first = _tick(instance, defs)
    assert instance.get_dynamic_partitions("language") == ["ga"]
    assert len(first.run_requests) == 1
    request = first.run_requests[0]
    assert request.partition_key == "ga" and request.job_name in (None, "croco_job")
    assert request.run_key == f"ga:{added.added_at}"
    assert request.tags["dagster/partition"] == "ga"  # resolved against the job's partitions

    second = _tick(instance, defs, cursor=first.cursor)
    assert not second.run_requests and "no change" in second.skip_message
    # a lost cursor (sensor reset) must not re-run a language whose partition exists
    assert not _tick(instance, defs, cursor=None).run_requests


def test_a_removed_language_loses_its_partition_but_partitions_made_elsewhere_stay(instance, tmp_path):
    base = str(tmp_path / "data")
    defs = _definitions(base)
    instance.add_dynamic_partitions("language", ["es"])  # e.g. `croco demo`, not in the registry
    registry.add_language(base, "da")
    registry.add_language(base, "fr")
    cursor = _tick(instance, defs).cursor
    assert sorted(instance.get_dynamic_partitions("language")) == ["da", "es", "fr"]

    registry.remove_language(base, "da")
    data = _tick(instance, defs, cursor=cursor)
    assert not data.run_requests
    assert sorted(instance.get_dynamic_partitions("language")) == ["es", "fr"]

    readded = registry.add_language(base, "da").entry
    again = _tick(instance, defs, cursor=data.cursor)
    assert [request.run_key for request in again.run_requests] == [f"da:{readded.added_at}"]


def test_a_malformed_registry_fails_the_tick_with_the_file_named(instance, tmp_path):
    base = tmp_path / "data"
    base.mkdir()
    (base / "languages.json").write_text("{oops")
    with pytest.raises(Exception, match="languages.json is not valid JSON"):
        _tick(instance, _definitions(str(base)))


def _requested(result) -> dict[str, set[str]]:
    found = {
        name: result.get_requested_partitions(AssetKey(name)) for name in ["prompts", "generations", "evaluation"]
    }
    return {name: set(keys) for name, keys in found.items() if keys}


def test_nightly_refresh_requests_missing_and_stale_partitions_only_at_night(tmp_path):
    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("language", ["da", "fr"])
    assets = _chain()
    day = datetime.datetime(2026, 11, 2, 15, 0, tzinfo=datetime.timezone.utc)
    night = datetime.datetime(2026, 11, 3, 2, 0, 30, tzinfo=datetime.timezone.utc)

    result = evaluate_automation_conditions(defs=assets, instance=instance, evaluation_time=day)
    assert result.total_requested == 0  # nothing until the cron tick, even though all is missing
    materialize(assets, instance=instance, partition_key="da")
    result = evaluate_automation_conditions(
        defs=assets, instance=instance, cursor=result.cursor, evaluation_time=day + datetime.timedelta(hours=1)
    )
    assert result.total_requested == 0

    result = evaluate_automation_conditions(
        defs=assets, instance=instance, cursor=result.cursor, evaluation_time=night
    )
    assert _requested(result) == {"prompts": {"fr"}, "generations": {"fr"}, "evaluation": {"fr"}}

    materialize(assets, instance=instance, partition_key="fr")
    # the next night nothing is stale ...
    result = evaluate_automation_conditions(
        defs=assets, instance=instance, cursor=result.cursor, evaluation_time=night + datetime.timedelta(hours=2)
    )
    result = evaluate_automation_conditions(
        defs=assets, instance=instance, cursor=result.cursor, evaluation_time=night + datetime.timedelta(days=1)
    )
    assert result.total_requested == 0

    # ... until upstream data changes (prompts of da re-made by day): what follows it, the night after
    materialize([assets[0]], instance=instance, partition_key="da")
    result = evaluate_automation_conditions(
        defs=assets,
        instance=instance,
        cursor=result.cursor,
        evaluation_time=night + datetime.timedelta(days=1, hours=10),
    )
    assert result.total_requested == 0
    result = evaluate_automation_conditions(
        defs=assets, instance=instance, cursor=result.cursor, evaluation_time=night + datetime.timedelta(days=2)
    )
    assert _requested(result) == {"generations": {"da"}, "evaluation": {"da"}}
    materialize(assets[1:], instance=instance, partition_key="da")
    result = evaluate_automation_conditions(
        defs=assets,
        instance=instance,
        cursor=result.cursor,
        evaluation_time=night + datetime.timedelta(days=2, hours=1),
    )

    # ... or a code version changes (by day): that asset and what follows it, in every language
    changed = _chain(code_version="2")
    result = evaluate_automation_conditions(
        defs=changed,
        instance=instance,
        cursor=result.cursor,
        evaluation_time=night + datetime.timedelta(days=2, hours=10),
    )
    assert result.total_requested == 0
    result = evaluate_automation_conditions(
        defs=changed, instance=instance, cursor=result.cursor, evaluation_time=night + datetime.timedelta(days=3)
    )
    assert _requested(result) == {"generations": {"da", "fr"}, "evaluation": {"da", "fr"}}


def _model_load(name: str):
    @asset(name=name, pool=MODEL_POOL)
    def _load() -> None:
        marks = Path(os.environ["CROCO_TEST_POOL_MARKS"])
        (marks / f"{name}.start").write_text(repr(time.time()))
        time.sleep(0.5)
        (marks / f"{name}.end").write_text(repr(time.time()))

    return _load


def two_model_loads_job():
    """Module level, so the multiprocess executor can rebuild it in each step's process."""
    return Definitions(
        assets=[_model_load("policy_load"), _model_load("reward_load")],
        jobs=[define_asset_job("two_model_loads", executor_def=multiprocess_executor)],
    ).resolve_job_def("two_model_loads")


@pytest.mark.system  # a Dagster step (or croco child process) run whole
def test_the_model_pool_keeps_two_model_loads_apart(tmp_path, monkeypatch):
    """Two independent model-loading steps run in parallel processes unless the pool has one slot:
    the README's `concurrency: pools: default_limit: 1` (or `dagster instance concurrency set`)."""
    marks = tmp_path / "marks"
    marks.mkdir()
    monkeypatch.setenv("CROCO_TEST_POOL_MARKS", str(marks))
    monkeypatch.chdir(Path(__file__).parent)  # each step's process imports this file from here
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("concurrency:\n  pools:\n    default_limit: 1\n")
    with DagsterInstance.from_config(str(home)) as instance:
        with execute_job(reconstructable(two_model_loads_job), instance=instance) as result:
            assert result.success
            messages = [record.message for record in instance.all_logs(result.run_id)]
        assert instance.event_log_storage.get_concurrency_info(MODEL_POOL).slot_count == 1
    assert any(f"blocked by limit for pool {MODEL_POOL}" in message for message in messages)

    spans = sorted(
        (float((marks / f"{name}.start").read_text()), float((marks / f"{name}.end").read_text()))
        for name in ["policy_load", "reward_load"]
    )
    assert spans[0][1] <= spans[1][0], f"the two model loads overlapped: {spans}"
