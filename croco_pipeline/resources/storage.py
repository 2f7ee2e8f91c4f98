"""Storage resources: the Parquet IO manager every asset writes through, and the storage base for
checkpoints and the DuckDB catalogue. Local folders and ``s3://bucket/prefix`` work alike."""

from __future__ import annotations

from typing import Any

import polars as pl
from dagster import ConfigurableIOManagerFactory, ConfigurableResource, InputContext, MetadataValue, OutputContext, UPathIOManager
from upath import UPath

from croco_pipeline.core import storage
from croco_pipeline.core.tables import markdown_table


def _storage_options(base_path: str) -> dict:
    return storage.s3_storage_options_from_env() if storage.is_remote(base_path) else {}


class StorageResource(ConfigurableResource):
    """The storage base (``./croco_data`` or ``s3://bucket/prefix``); S3 endpoint and credentials come
    from the environment (``CROCO_S3_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``)."""

    base_path: str = storage.DEFAULT_BASE

    @property
    def storage_options(self) -> dict:
        return _storage_options(self.base_path)

    def checkpoint_dir(self, asset: str, language: str | None) -> str:
        return storage.partition_dir(storage.join(self.base_path, "checkpoints"), asset, language)


class _ParquetUPathIOManager(UPathIOManager):
    """polars DataFrames as Hive-partitioned Parquet: ``<base>/<asset>/language=<code>/data.parquet``."""

    extension = ".parquet"

    def __init__(self, base_path: UPath, storage_options: dict):
        super().__init__(base_path=base_path)
        self._options = storage_options

    def get_asset_relative_path(self, context: InputContext | OutputContext) -> UPath:
        path = UPath(*context.asset_key.path)
        # unpartitioned tables also get their own folder, so every table is `<asset>/**/data.parquet`
        return path if context.has_asset_partitions else path / "data"

    def get_path_for_partition(self, context, path: UPath, partition: str) -> UPath:
        return path / f"language={partition}" / "data"

    def dump_to_path(self, context: OutputContext, obj: pl.DataFrame, path: UPath) -> None:
        if not isinstance(obj, pl.DataFrame):
            raise TypeError(f"{context.asset_key.to_user_string()}: expected a polars DataFrame, got {type(obj).__name__}.")
        storage.write_parquet_atomic(obj, str(path), self._options)

    def load_from_path(self, context: InputContext, path: UPath) -> pl.DataFrame:
        return storage.read_parquet(str(path), self._options)

    def get_metadata(self, context: OutputContext, obj: Any) -> dict:
        if not isinstance(obj, pl.DataFrame):
            return {}
        return {
            "dagster/row_count": MetadataValue.int(obj.height),
            "preview": MetadataValue.md(markdown_table(obj, max_rows=5)),
        }


class ParquetIOManager(ConfigurableIOManagerFactory):
    """Writes every asset as Parquet under ``base_path`` (local or ``s3://``), atomically."""

    base_path: str = storage.DEFAULT_BASE

    def create_io_manager(self, context) -> _ParquetUPathIOManager:
        options = _storage_options(self.base_path)
        return _ParquetUPathIOManager(UPath(self.base_path, **options), options)
