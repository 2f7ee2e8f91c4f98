"""Storage resources: the Parquet IO manager every asset writes through, and the storage base for
checkpoints and the DuckDB catalogue. Local folders and ``s3://bucket/prefix`` work alike.

S3 endpoint and credentials default to the environment (``CROCO_S3_ENDPOINT_URL``,
``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``); each can also be set on the resources, best as
``EnvVar(...)`` so that Dagster shows the variable's name and never stores or displays its value
(see ``s3_env_fields``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import polars as pl
from dagster import (
    ConfigurableIOManagerFactory,
    ConfigurableResource,
    EnvVar,
    InputContext,
    MetadataValue,
    OutputContext,
    UPathIOManager,
)
from upath import UPath

from croco_pipeline import envs
from croco_pipeline.core.execution.staging import clear_stage
from croco_pipeline.core.io import atomic, storage
from croco_pipeline.core.io.markdown import markdown_table

# resource field -> the environment variable it defaults to
S3_ENV_FIELDS = {
    "s3_endpoint_url": "CROCO_S3_ENDPOINT_URL",
    "aws_access_key_id": "AWS_ACCESS_KEY_ID",
    "aws_secret_access_key": "AWS_SECRET_ACCESS_KEY",
}


def s3_env_fields(environ: Mapping[str, str] | None = None) -> dict[str, EnvVar]:
    """``EnvVar`` values for the S3 fields whose variable is set (in the process environment by default), to
    pass to ``StorageResource`` / ``ParquetIOManager``. Unset ones are left out: an ``EnvVar`` of an
    unset variable fails at run time, and the field then falls back to the environment anyway."""
    return {field: EnvVar(variable) for field, variable in S3_ENV_FIELDS.items() if envs.get(variable, environ)}


def _storage_options(
    base_path: str,
    endpoint_url: str | None = None,
    access_key_id: str | None = None,
    secret_access_key: str | None = None,
) -> dict:
    """s3fs options: the environment's, overridden by the fields that are set. Never log the result."""
    if not storage.is_remote(base_path):
        return {}
    options = envs.s3_options()
    if endpoint_url:
        options["client_kwargs"] = {**options.get("client_kwargs", {}), "endpoint_url": endpoint_url}
    if access_key_id:
        options["key"] = access_key_id
    if secret_access_key:
        options["secret"] = secret_access_key
    return options


class StorageResource(ConfigurableResource):
    """The storage base (``./croco_data`` or ``s3://bucket/prefix``). S3 endpoint and credentials:
    the fields when set (use ``EnvVar``), else ``CROCO_S3_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``,
    ``AWS_SECRET_ACCESS_KEY``."""

    base_path: str = storage.DEFAULT_BASE
    s3_endpoint_url: str | None = None
    aws_access_key_id: str | None = None
    aws_secret_access_key: str | None = None

    @property
    def storage_options(self) -> dict:
        return _storage_options(
            self.base_path, self.s3_endpoint_url, self.aws_access_key_id, self.aws_secret_access_key
        )

    def checkpoint_dir(self, asset: str, language: str | None) -> str:
        return storage.checkpoint_dir(self.base_path, asset, language)


class _ParquetUPathIOManager(UPathIOManager):
    """polars DataFrames as Hive-partitioned Parquet: ``<base>/<asset>/language=<code>/data.parquet``."""

    extension = ".parquet"

    def __init__(self, base_path: str, storage_options: dict):
        super().__init__(base_path=UPath(base_path, **storage_options))
        self._base = base_path
        self._options = storage_options

    def get_asset_relative_path(self, context: InputContext | OutputContext) -> UPath:
        path = UPath(*context.asset_key.path)
        # unpartitioned tables also get their own folder, so every table is `<asset>/**/data.parquet`
        return path if context.has_asset_partitions else path / "data"

    def get_path_for_partition(self, context, path: UPath, partition: str) -> UPath:
        return path / f"language={partition}" / "data"

    def make_directory(self, path: UPath) -> None:
        # Object stores have no folders, and s3fs's mkdir would *create a missing bucket*; local
        # folders are made by the atomic write itself.
        return None

    def dump_to_path(self, context: OutputContext, obj: pl.DataFrame, path: UPath) -> None:
        if not isinstance(obj, pl.DataFrame):
            raise TypeError(
                f"{context.asset_key.to_user_string()}: expected a polars DataFrame, got {type(obj).__name__}."
            )
        atomic.write_parquet(obj, str(path), self._options)
        if context.has_asset_partitions:
            # The final table is safely written: chunks staged by a resumable stage are done with.
            clear_stage(self._base, context.asset_key.path[-1], context.asset_partition_key, self._options)

    def load_partitions(self, context: InputContext):
        loaded = super().load_partitions(context)
        # Dagster hands over a lone partition as the table itself; a step that is not partitioned
        # (pooling every language) always gets {language: table}, however many languages exist.
        # A missing lone partition (allowed by `allow_missing_partitions`) is then simply absent.
        if not context.has_partition_key and not isinstance(loaded, dict):
            return {} if loaded is None else {context.asset_partition_keys[0]: loaded}
        return loaded

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
    """Writes every asset as Parquet under ``base_path`` (local or ``s3://``), atomically. S3 settings
    as on ``StorageResource``. An ``s3://`` base whose bucket is missing, refuses the credentials or
    cannot be reached fails the step before it computes anything, with a message saying which."""

    base_path: str = storage.DEFAULT_BASE
    s3_endpoint_url: str | None = None
    aws_access_key_id: str | None = None
    aws_secret_access_key: str | None = None

    def create_io_manager(self, context) -> _ParquetUPathIOManager:
        options = _storage_options(
            self.base_path, self.s3_endpoint_url, self.aws_access_key_id, self.aws_secret_access_key
        )
        storage.check_bucket(self.base_path, options)
        return _ParquetUPathIOManager(self.base_path, options)
