"""Where the pipeline's data lives: a base directory on local disk or an ``s3://bucket/prefix``.

Layout (Hive style, so DuckDB and polars see ``language`` as a partition):

    <base>/<asset>/language=<code>/data.parquet     per-language tables
    <base>/<asset>/data.parquet                     tables over all languages
    <base>/checkpoints/<asset>/language=<code>/     adapter folders

Writing goes through :mod:`croco_pipeline.core.io.atomic`, so a reader (or a crashed run) never sees a
half-written file or folder.

On S3, the usual failures (a bucket that does not exist, refused credentials, an endpoint that cannot
be reached) are raised as ``StorageError`` subclasses whose message names the bucket or endpoint and
what to fix; credentials never appear in them.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
import uuid
from pathlib import Path

import fsspec
import polars as pl

DEFAULT_BASE = "./croco_data"


def is_remote(path: str | os.PathLike[str]) -> bool:
    """True for object-store URLs such as ``s3://bucket/key``; local paths and ``file://`` URLs are local."""
    return "://" in str(path) and not str(path).startswith("file://")


def local_path(path: str | os.PathLike[str]) -> str:
    """A local path as a plain path (``file:///x`` -> ``/x``); remote URLs unchanged."""
    text = str(path)
    return text[len("file://") :] if text.startswith("file://") else text


def storage_options_for(base: str) -> dict:
    """The storage options for ``base`` from the environment: S3 endpoint and credentials for an ``s3://``
    base (``croco_pipeline.envs.s3_options``), none for a local folder. Never log the result."""
    from croco_pipeline import envs

    return envs.s3_options() if is_remote(base) else {}


class StorageError(OSError):
    """A storage operation failed for a reason the user can fix; the message says which."""


class MissingBucketError(StorageError, FileNotFoundError):
    pass


class StorageAccessDenied(StorageError, PermissionError):
    pass


class StorageUnreachable(StorageError, ConnectionError):
    pass


def bucket_of(path: str) -> str:
    return str(path).split("://", 1)[1].split("/", 1)[0]


def _endpoint(storage_options: dict | None) -> str:
    endpoint = ((storage_options or {}).get("client_kwargs") or {}).get("endpoint_url")
    return endpoint or "the default AWS endpoint"


def _is_connection_error(error: BaseException) -> bool:
    try:
        from botocore.exceptions import ConnectionError as BotoConnectionError
        from botocore.exceptions import HTTPClientError
    except ImportError:  # pragma: no cover - s3fs always brings botocore
        return isinstance(error, ConnectionError)
    return isinstance(error, (BotoConnectionError, HTTPClientError, ConnectionError))


def _bucket_missing(error: FileNotFoundError, path: str, storage_options: dict | None) -> bool:
    cause = error.__cause__
    code = (getattr(cause, "response", None) or {}).get("Error", {}).get("Code")
    if code == "NoSuchBucket" or "bucket does not exist" in str(error).lower():
        return True
    # a missing key and a missing bucket both surface as FileNotFoundError: ask the bucket itself
    try:
        filesystem(path, storage_options).call_s3("head_bucket", Bucket=bucket_of(path))
    except FileNotFoundError:
        return True
    except Exception:
        return False
    return False


@contextlib.contextmanager
def explain_errors(path: str, storage_options: dict | None = None, action: str = "accessing"):
    """Re-raise S3 failures under ``path`` as ``StorageError`` with a message saying what to fix.

    Other errors (and everything on local paths) pass through unchanged.
    """
    try:
        yield
    except StorageError:
        raise
    except FileNotFoundError as error:
        if is_remote(path) and str(path).startswith("s3://") and _bucket_missing(error, path, storage_options):
            bucket = bucket_of(path)
            raise MissingBucketError(
                f"S3 bucket '{bucket}' does not exist ({action} {path}): create it or fix CROCO_STORAGE."
            ) from error
        raise
    except PermissionError as error:
        if not is_remote(path):
            raise
        raise StorageAccessDenied(
            f"S3 refused access to bucket '{bucket_of(path)}' at {_endpoint(storage_options)} ({action} {path}): "
            f"{error}. Check the credentials (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, or the storage "
            "resources' aws_access_key_id / aws_secret_access_key) and the bucket's permissions."
        ) from error
    except Exception as error:
        if not (is_remote(path) and _is_connection_error(error)):
            raise
        raise StorageUnreachable(
            f"Cannot reach the S3 endpoint {_endpoint(storage_options)} ({action} {path}): {error}. "
            "Is the server running? Check CROCO_S3_ENDPOINT_URL (or the storage resources' s3_endpoint_url)."
        ) from error


def check_bucket(base: str, storage_options: dict | None = None) -> None:
    """Fail early, with a clear ``StorageError``, when an ``s3://`` base's bucket is missing, refuses
    the credentials or cannot be reached. Nothing is created. Local bases are not checked."""
    if not (is_remote(base) and str(base).startswith("s3://")):
        return
    bucket = bucket_of(base)
    with explain_errors(base, storage_options, "checking the storage base"):
        try:
            filesystem(base, storage_options).call_s3("head_bucket", Bucket=bucket)
        except FileNotFoundError as error:
            raise MissingBucketError(
                f"S3 bucket '{bucket}' does not exist (storage base {base}): create it or fix CROCO_STORAGE."
            ) from error


def filesystem(path: str, storage_options: dict | None = None) -> fsspec.AbstractFileSystem:
    protocol = str(path).split("://", 1)[0] if is_remote(path) else "file"
    return fsspec.filesystem(protocol, **(storage_options or {}))


def join(base: str, *parts: str) -> str:
    base = str(base).rstrip("/")
    return "/".join([base, *[part.strip("/") for part in parts if part]])


def partition_dir(base: str, asset: str, language: str | None) -> str:
    return join(base, asset, f"language={language}") if language else join(base, asset)


def checkpoint_dir(base: str, asset: str, language: str | None) -> str:
    """Where a training asset publishes its adapter: ``<base>/checkpoints/<asset>[/language=<code>]``."""
    return partition_dir(join(base, "checkpoints"), asset, language)


def read_parquet(path: str, storage_options: dict | None = None) -> pl.DataFrame:
    if is_remote(path):
        # through fsspec, like every other remote access here: polars' own object store client takes
        # differently named options (it rejects s3fs's ``client_kwargs``)
        with explain_errors(path, storage_options, "reading"):
            return pl.read_parquet(io.BytesIO(filesystem(path, storage_options).cat_file(path)))
    return pl.read_parquet(path)


def exists(path: str, storage_options: dict | None = None) -> bool:
    with explain_errors(path, storage_options, "looking for"):
        return filesystem(path, storage_options).exists(path)


def local_copy(path: str, storage_options: dict | None = None, cache_root: Path | None = None) -> Path:
    """A local folder holding ``path``: the path itself when local, else a downloaded copy."""
    if not is_remote(path):
        return Path(path)
    root = cache_root or Path(tempfile.mkdtemp(prefix="croco-download-"))
    target = root / uuid.uuid4().hex
    with explain_errors(path, storage_options, "downloading"):
        filesystem(path, storage_options).get(path.rstrip("/") + "/", str(target) + "/", recursive=True)
    return target
