"""What `croco demo` may skip: assets whose data are already there for the same configuration.

A demo tags each of its runs with a fingerprint of its configuration (the profile's resources with the
environment's overrides, the storage base, the run config, croco's version). An asset of a partition is
skipped when its latest materialization in the Dagster instance came from a run with the same fingerprint,
recorded the asset's current code version (so `--rounds 2` after a plain demo, whose graph has more
assets, still reuses round 0), its table is still in storage, and nothing it reads was materialised again
in this demo after it (an unpartitioned asset of a partitioned job, such as a later round's multilingual
policy, is checked once per language and done once). Whatever runs takes its whole multi-asset with it and
everything downstream of it. A step stopped half-way has no materialization, so it runs again (generation
and scoring reuse their staged chunks).
"""

from __future__ import annotations

from collections.abc import Iterable

from dagster import AssetKey, AssetRecordsFilter, DagsterInstance, Definitions

from croco_pipeline import __version__, envs
from croco_pipeline.core.io import storage
from croco_pipeline.core.io.hashing import config_hash
from croco_pipeline.profiles import resource_config

FINGERPRINT_TAG = "croco/demo_config"
TABLE_NAME = "data.parquet"


def fingerprint(run_config: dict) -> str:
    """16 hex digits naming what shapes all of the demo's data (loggers left out); each asset's own code
    version is checked against its materialization (:meth:`ResumePlan._is_current`)."""
    return config_hash(
        {
            "croco": __version__,
            "resources": resource_config(),
            "run_config": {key: value for key, value in run_config.items() if key != "loggers"},
        }
    )


class ResumePlan:
    """The assets each run of a demo must materialise, given what the instance and storage hold."""

    def __init__(self, definitions: Definitions, instance: DagsterInstance, demo_fingerprint: str):
        self.graph = definitions.resolve_asset_graph()
        self.instance = instance
        self.fingerprint = demo_fingerprint
        self.base = envs.storage_base()
        self.options = storage.storage_options_for(self.base)
        # (asset, partition or None) materialised by this demo so far -> the order it was, from 1: what reads
        # one must run again, unless it was itself materialised after it (an unpartitioned asset of a
        # partitioned job, checked again for the next language)
        self.materialized: dict[tuple[AssetKey, str | None], int] = {}

    def _partition(self, key: AssetKey, partition: str | None) -> str | None:
        return partition if self.graph.get(key).is_partitioned else None

    def _is_current(self, key: AssetKey, partition: str | None) -> bool:
        records = self.instance.fetch_materializations(
            AssetRecordsFilter(asset_key=key, asset_partitions=[partition] if partition else None), limit=1
        ).records
        if not records:
            return False
        run = self.instance.get_run_by_id(records[0].event_log_entry.run_id)
        if run is None or run.tags.get(FINGERPRINT_TAG) != self.fingerprint:
            return False
        code_version = self.graph.get(key).code_version
        recorded = (records[0].asset_materialization.tags or {}).get("dagster/code_version")
        if code_version is not None and recorded != code_version:
            return False
        path = storage.join(storage.partition_dir(self.base, key.path[-1], partition), TABLE_NAME)
        return storage.exists(path, self.options)

    def _parent_rematerialized(
        self, parent: AssetKey, partition: str | None, needed: set[AssetKey], child: tuple[AssetKey, str | None]
    ) -> bool:
        if parent in needed:
            return True
        since = self.materialized.get(child, 0)  # 0: the child was materialised before this demo
        if self.graph.get(parent).is_partitioned and partition is None:  # reads every partition of its parent
            return any(key == parent and order > since for (key, _), order in self.materialized.items())
        return self.materialized.get((parent, self._partition(parent, partition)), 0) > since

    def to_run(self, job_keys: Iterable[AssetKey], partition: str | None) -> set[AssetKey]:
        """The keys of ``job_keys`` to materialise for ``partition``; the others are current."""
        keys = set(job_keys)
        needed: set[AssetKey] = set()
        changed = True
        while changed:
            changed = False
            for key in sorted(keys - needed, key=AssetKey.to_user_string):
                node = self.graph.get(key)
                own = self._partition(key, partition)
                if not self._is_current(key, own) or any(
                    self._parent_rematerialized(parent, own, needed, (key, own)) for parent in node.parent_keys
                ):
                    needed |= {key} | (set(node.execution_set_asset_keys) & keys)
                    changed = True
        return needed

    def record(self, keys: Iterable[AssetKey], partition: str | None) -> None:
        order = max(self.materialized.values(), default=0) + 1
        self.materialized |= {(key, self._partition(key, partition)): order for key in keys}
