"""Automation: new languages flow in by themselves, stale partitions are refreshed at night, and two
model loads never share one accelerator.

- ``language_registry_sensor`` (every 30 s, on by default) reads ``<storage>/languages.json`` (written
  by ``croco languages add/remove``), adds a ``language`` partition for each new entry and requests one
  ``croco_job`` run for it (run key ``<code>:<added_at>``, so an addition is never run twice); a language
  removed from the registry loses its partition, while its data stays unless it was removed with
  ``--delete-data``.
- ``nightly_refresh`` (on by default) evaluates ``automation_condition()``, which the assets carry. We
  chose declarative automation over a hand-written schedule: Dagster itself then tracks, per
  partition, what is missing, whose code version changed and whose upstream data changed, and requests
  only those asset partitions (plus everything downstream of them) once a night, one run per language.

The definitions module wires these in; this module does not import it (it imports us).
"""

from __future__ import annotations

import json

from dagster import (
    AssetSelection,
    AutomationCondition,
    AutomationConditionSensorDefinition,
    DefaultSensorStatus,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    sensor,
)

from croco_pipeline.constants import CROCO_JOB
from croco_pipeline.core.languages.registry import load_registry, plan_partitions, registry_path
from croco_pipeline.partitions import language_partitions
from croco_pipeline.resources.storage import StorageResource

NIGHTLY_CRON = "0 2 * * *"
NIGHTLY_TIMEZONE = "UTC"


def _read_cursor(cursor: str | None) -> dict[str, str]:
    """The registry as seen on the previous tick: ``{code: added_at}``; an unreadable cursor counts as none."""
    if not cursor:
        return {}
    try:
        value = json.loads(cursor)
    except json.JSONDecodeError:
        return {}
    return {str(code): str(added_at) for code, added_at in value.items()} if isinstance(value, dict) else {}


@sensor(
    name="language_registry_sensor",
    job_name=CROCO_JOB,
    minimum_interval_seconds=30,
    default_status=DefaultSensorStatus.RUNNING,
    description=(
        "Turns <storage>/languages.json (croco languages add/remove) into `language` partitions and "
        "runs croco_job once for each newly added language."
    ),
)
def language_registry_sensor(context: SensorEvaluationContext, storage_base: StorageResource) -> SensorResult:
    """A malformed registry file fails the tick with a message naming the file (shown in the UI)."""
    entries = load_registry(storage_base.base_path, storage_base.storage_options)
    partitions = context.instance.get_dynamic_partitions(language_partitions.name)
    plan = plan_partitions(entries, partitions, _read_cursor(context.cursor))
    cursor = json.dumps(plan.seen, sort_keys=True)

    requests = []
    if plan.add:
        requests.append(language_partitions.build_add_request(plan.add))
    if plan.delete:
        requests.append(language_partitions.build_delete_request(plan.delete))
    runs = [
        RunRequest(
            run_key=f"{entry.code}:{entry.added_at}",
            partition_key=entry.code,
            tags={"croco/trigger": "language_registry", "croco/language": entry.code},
        )
        for entry in plan.run
    ]
    if not requests and not runs:
        where = registry_path(storage_base.base_path)
        return SensorResult(skip_reason=f"{len(entries)} language(s) in {where}; no change.", cursor=cursor)
    context.log.info(
        f"languages added: {plan.add or 'none'}; runs: {[e.code for e in plan.run] or 'none'}; "
        f"partitions deleted (data kept): {plan.delete or 'none'}"
    )
    return SensorResult(run_requests=runs, dynamic_partitions_requests=requests, cursor=cursor)


def automation_condition(cron: str = NIGHTLY_CRON, timezone: str = NIGHTLY_TIMEZONE) -> AutomationCondition:
    """When an asset partition is refreshed: on the nightly cron tick, if it is stale.

    Stale means: never materialised (``missing``), its code version changed since it was last
    requested or materialised, or an upstream asset was updated since then (new data, or it is being
    requested on this same tick, so a whole stale chain goes in one run). Partitions already in
    progress, or whose upstream is missing and not requested, wait. Outside the cron tick nothing is
    requested: a run that fails is retried the next night, never in a loop.

    Dagster notices a code version change by comparing with its previous evaluation (every ~30 s),
    not with the version each partition was made with; a partition that finishes within the same
    tick in which the new code version is first seen counts as up to date.
    """
    stale = (
        AutomationCondition.missing()
        | AutomationCondition.code_version_changed().since_last_handled()
        | AutomationCondition.any_deps_updated().since_last_handled()
    ).with_label("stale")
    return (
        AutomationCondition.cron_tick_passed(cron, timezone)
        & stale
        & ~AutomationCondition.any_deps_missing()
        & ~AutomationCondition.any_deps_in_progress()
        & ~AutomationCondition.in_progress()
    ).with_label(f"nightly_refresh({cron} {timezone})")


nightly_refresh = AutomationConditionSensorDefinition(
    "nightly_refresh",
    target=AssetSelection.all(),
    default_status=DefaultSensorStatus.RUNNING,
    run_tags={"croco/trigger": "nightly_refresh"},
    # one run per language holding all its stale assets (in dependency order), not one backfill
    emit_backfills=False,
    description=(
        f"Evaluates the assets' automation conditions; ours (croco_pipeline.sensors.automation_condition) "
        f"request stale language partitions once a night ({NIGHTLY_CRON} {NIGHTLY_TIMEZONE})."
    ),
)

croco_sensors = [language_registry_sensor, nightly_refresh]
croco_schedules: list = []  # the nightly refresh is the automation sensor above, not a ScheduleDefinition
