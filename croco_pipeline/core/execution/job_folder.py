"""Job folders that nobody else can write into.

Under ``CROCO_EXECUTOR=slurm`` a step and its SLURM job hand each other pickled calls and results through
a folder on a shared file system, and unpickling runs code. A file someone else could write or replace
there would run as the pipeline's user, so:

- folders are created private to the user (0700) and the pickles written 0600 (:func:`make_private_folder`,
  :func:`write_private`);
- before a pickle is read, :func:`check_private` makes sure the folder and the file are owned by this
  user, are what they say (a folder, a regular file, no symbolic link) and are not writable by group or
  others, and refuses otherwise with the reason.

Standard library only: the job side (``slurm_job``) imports it too.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

PRIVATE_FOLDER_MODE = 0o700
PRIVATE_FILE_MODE = 0o600


class UnsafeJobFolderError(PermissionError):
    """A job folder or file that someone other than this user could have written: it is not read."""


def make_private_folder(folder: str | os.PathLike[str], root: str | os.PathLike[str] | None = None) -> Path:
    """Create the new folder ``folder`` private to this user (0700), and so any missing folder from ``root``
    (default: its parent) down to it. Existing folders on the way are left as they are; ``folder`` itself
    must not exist yet, as an existing one could hold files someone else put there."""
    folder = Path(folder)
    root = Path(root) if root is not None else folder.parent
    root.parent.mkdir(parents=True, exist_ok=True)
    path = root
    for part in ("", *folder.relative_to(root).parts):
        path = path / part if part else path
        created = False
        try:
            path.mkdir(mode=PRIVATE_FOLDER_MODE)
            created = True
        except FileExistsError:
            if path == folder:
                raise FileExistsError(f"job folder {folder} already exists; every job needs a new one") from None
        if created:
            os.chmod(path, PRIVATE_FOLDER_MODE)  # mkdir's mode is cut by the umask, chmod's is not
    return folder


def write_private(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``path`` whole or not at all, readable and writable by this user only (0600).

    The bytes go to a new hidden file beside ``path`` opened with ``O_EXCL`` (never one someone else put
    there), which is then renamed over ``path``.
    """
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
        os.chmod(temporary, PRIVATE_FILE_MODE)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def _problems(path: Path, kind: str, uid: int) -> list[str]:
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return [f"{path} does not exist"]
    problems = []
    if stat.S_ISLNK(info.st_mode):
        problems.append(f"{path} is a symbolic link")
    elif kind == "folder" and not stat.S_ISDIR(info.st_mode):
        problems.append(f"{path} is not a folder")
    elif kind == "file" and not stat.S_ISREG(info.st_mode):
        problems.append(f"{path} is not a regular file")
    if info.st_uid != uid:
        problems.append(f"{path} is owned by user id {info.st_uid}, not by this user ({uid})")
    writable = [who for who, bit in (("group", stat.S_IWGRP), ("others", stat.S_IWOTH)) if info.st_mode & bit]
    if writable:
        problems.append(f"{path} is writable by {' and '.join(writable)} (mode {stat.S_IMODE(info.st_mode):04o})")
    return problems


def check_private(folder: str | os.PathLike[str], file: str | os.PathLike[str] | None = None) -> None:
    """Refuse (:class:`UnsafeJobFolderError`, with every reason) unless ``folder`` and ``file`` are owned
    by this user and writable by nobody else."""
    uid = os.geteuid()
    problems = _problems(Path(folder), "folder", uid)
    if file is not None:
        problems += _problems(Path(file), "file", uid)
    if problems:
        raise UnsafeJobFolderError(
            "Refusing to read the job folder's pickle: "
            + "; ".join(problems)
            + ". Unpickling a file that someone else could have written would run their code as this user. "
            "Job folders are made 0700 and their pickles 0600; if this folder was changed since, check who "
            "changed it and why, and run the step again (it gets a new folder). The folder's location is "
            "CROCO_SLURM_WORK_DIR."
        )
