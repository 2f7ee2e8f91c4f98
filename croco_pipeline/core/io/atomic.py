"""Writes that appear whole or not at all: a reader, or a run that crashed halfway, never sees half a file
or half a folder.

Every write in the pipeline goes through one of these:

- :func:`write_file` / :func:`write_bytes` / :func:`write_parquet`: a file, local or on an object store.
  Local: written under a temporary name beside the target, then renamed over it (a rename within one
  folder is atomic on POSIX). Object store: the finished bytes go up in one request, and an object is
  never visible half-written. :func:`staged_file` is the same for writers that want a path rather
  than a file handle.
- :func:`replace_directory`: build a folder (a checkpoint, an export) beside the target, then swap it in;
  the previous folder stays in place until the new one is complete, and is put back if the swap fails.
- :func:`build_directory_once`: a cache entry built by whichever process gets there first; a folder
  at the target is always complete, and a process that loses the race keeps the winner's folder.
- :func:`publish_directory`: a finished local folder to its place under the storage base, local
  (:func:`replace_directory`) or on an object store (uploaded, the old objects removed first).

Temporary names are hidden and unique (``.<name>.<hex>.tmp``, ``.<name>.<hex>.old``), so two writers
never share one and a leftover from a killed process is easy to spot.

A local disk that fills up mid-write raises :class:`DiskFullError`, which names the file or folder, how
much had been written and how much space is left; the half-written temporary is removed, and whatever
stood at the target before is left as it was.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from croco_pipeline.core.io import storage

if TYPE_CHECKING:
    import polars as pl


class DiskFullError(OSError):
    """A local write ran out of space (or quota); the message names the path and the space left."""

    def __init__(self, message: str):
        super().__init__(message)
        self.errno = errno.ENOSPC


_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def _is_disk_full(error: BaseException) -> bool:
    """True when ``error``, or an error it was raised from, is 'no space left' or 'quota exceeded' (writers
    such as polars may wrap the OSError in an error of their own)."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if getattr(error, "errno", None) in _DISK_FULL:
            return True
        if any(text in str(error) for text in ("No space left on device", "Disk quota exceeded")):
            return True
        error = error.__cause__ or error.__context__
    return False


def _human(size: int) -> str:
    value = float(size)
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} bytes"  # pragma: no cover


def _size_of(path: Path) -> int:
    """Bytes in a file, or in every file under a folder (0 when it is gone)."""
    try:
        if path.is_dir():
            return sum(item.stat().st_size for item in path.rglob("*") if item.is_file())
        return path.stat().st_size
    except OSError:
        return 0


def _disk_full(target: Path, what: str, written: int, error: BaseException) -> DiskFullError:
    """The error to raise when writing ``target`` filled its disk (after the temporary was measured)."""
    folder = next((p for p in (target.parent, *target.parent.parents) if p.exists()), Path("/"))
    quota = getattr(error, "errno", None) == errno.EDQUOT or "quota exceeded" in str(error).lower()
    reason = "Disk quota exceeded" if quota else "No space left on the device"
    try:
        usage = shutil.disk_usage(folder)
        space = f"{_human(usage.free)} free of {_human(usage.total)} on the file system of {folder}"
    except OSError:
        space = f"the free space on the file system of {folder} could not be read"
    return DiskFullError(
        f"{reason} while writing the {what} {target}: {_human(written)} had been written when the write failed; "
        f"{space}. Nothing half-written was kept "
        f"and what stood at {target.name} before is unchanged. Free some space, or point the storage base "
        "(CROCO_STORAGE) or the cache (CROCO_CACHE) at a larger disk, then run the step again: staged chunks "
        "already written are reused."
    )


def _beside(target: Path, suffix: str) -> Path:
    """A hidden, unique name in ``target``'s folder, so a rename to ``target`` stays on one file system."""
    return target.with_name(f".{target.name}.{uuid.uuid4().hex}.{suffix}")


def make_parent_folder(target: Path) -> None:
    """Create the folder ``target`` goes in; when a regular file stands in the way, say which one."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        if _is_disk_full(error):
            raise _disk_full(target, "folder for", 0, error) from error
        if not isinstance(error, (FileExistsError, NotADirectoryError)):
            raise
        blocker = next((p for p in (target.parent, *target.parent.parents) if p.exists() and not p.is_dir()), None)
        if blocker is None:
            raise
        raise NotADirectoryError(
            f"Cannot create the folder {target.parent} to write {target.name}: {blocker} is a file, not a "
            "folder. Point the storage base (CROCO_STORAGE) at a folder that can be created, or move that file."
        ) from error


# ----------------------------------------------------------------------------- files


@contextlib.contextmanager
def staged_file(path: str | os.PathLike[str]) -> Iterator[Path]:
    """A temporary path beside the local file ``path``: write it inside the block; when the block ends
    without an error it is renamed over ``path``, otherwise removed and ``path`` left as it was.

    For writers that take a path (polars' streaming sinks); :func:`write_file` for those that take a
    handle. (Not ``mkstemp``: its files are private to the owner, and the rename would carry that over.)
    """
    target = Path(path)
    make_parent_folder(target)
    temporary = _beside(target, "tmp")
    try:
        yield temporary
        os.replace(temporary, target)
    except Exception as error:
        if _is_disk_full(error):
            raise _disk_full(target, "file", _size_of(temporary), error) from error
        raise
    finally:
        temporary.unlink(missing_ok=True)


def write_file(
    path: str | os.PathLike[str], write: Callable[[BinaryIO], object], storage_options: dict | None = None
) -> None:
    """Write the file ``path`` (local or ``s3://…``) whole or not at all; ``write`` fills a binary handle."""
    if storage.is_remote(path):
        buffer = io.BytesIO()
        write(buffer)
        with storage.explain_errors(str(path), storage_options, "writing"):
            storage.filesystem(str(path), storage_options).pipe_file(str(path), buffer.getvalue())
        return
    with staged_file(storage.local_path(path)) as temporary, open(temporary, "wb") as handle:
        write(handle)


def write_bytes(path: str | os.PathLike[str], data: bytes, storage_options: dict | None = None) -> None:
    """:func:`write_file` of ``data``."""
    write_file(path, lambda handle: handle.write(data), storage_options)


def write_parquet(frame: pl.DataFrame, path: str | os.PathLike[str], storage_options: dict | None = None) -> None:
    """``frame`` as the Parquet file ``path`` (local or ``s3://…``), whole or not at all."""
    write_file(path, frame.write_parquet, storage_options)


# ----------------------------------------------------------------------------- folders


def replace_directory(target: str | os.PathLike[str], build: Callable[[Path], object]) -> Path:
    """Run ``build(folder)`` on a fresh folder beside ``target``, then put that folder at ``target``.

    An existing ``target`` is replaced only once ``build`` succeeded: it is moved aside, the new folder
    renamed into place, and the old one removed; should the second rename fail, the old folder is put
    back. On any failure the half-built folder is removed.
    """
    target = Path(target)
    make_parent_folder(target)
    fresh = _beside(target, "tmp")
    old: Path | None = None
    try:
        fresh.mkdir()
        build(fresh)
        if target.exists():
            old = _beside(target, "old")
            os.rename(target, old)  # aside first, so the swap below is one rename
        os.rename(fresh, target)
    except BaseException as error:
        if old is not None and not target.exists():
            os.rename(old, target)  # put the previous folder back
            old = None
        if isinstance(error, Exception) and _is_disk_full(error):
            raise _disk_full(target, "folder", _size_of(fresh), error) from error
        raise
    finally:
        shutil.rmtree(fresh, ignore_errors=True)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    return target


def build_directory_once(target: str | os.PathLike[str], build: Callable[[Path], object]) -> Path:
    """``target`` if it exists; else ``build(folder)`` on a fresh folder beside it, renamed into place.

    For caches shared by processes (converted models, tiny test models): a folder at ``target`` is
    always complete. When another process renamed its folder into place first, that one is kept and
    ours thrown away.
    """
    target = Path(target)
    if target.is_dir():
        return target
    make_parent_folder(target)
    fresh = _beside(target, "tmp")
    fresh.mkdir()
    try:
        build(fresh)
        try:
            os.rename(fresh, target)
        except OSError:
            if not target.is_dir():  # not a lost race: a real error
                raise
    except Exception as error:
        if _is_disk_full(error):
            raise _disk_full(target, "folder", _size_of(fresh), error) from error
        raise
    finally:
        shutil.rmtree(fresh, ignore_errors=True)
    return target


def publish_directory(
    local_dir: str | os.PathLike[str], destination: str, storage_options: dict | None = None
) -> None:
    """Put a finished local folder (a trained adapter, the report) at ``destination``, replacing what is there.

    Local destinations: :func:`replace_directory` with a copy, so a reader never sees a half-copied
    folder. Object stores have no folder rename: the old objects are removed, then the files uploaded.
    """
    if storage.is_remote(destination):
        fs = storage.filesystem(destination, storage_options)
        with storage.explain_errors(destination, storage_options, "publishing"):
            if fs.exists(destination):
                fs.rm(destination, recursive=True)
            fs.put(str(local_dir).rstrip("/") + "/", destination.rstrip("/") + "/", recursive=True)
        return
    replace_directory(
        storage.local_path(destination), lambda fresh: shutil.copytree(local_dir, fresh, dirs_exist_ok=True)
    )
