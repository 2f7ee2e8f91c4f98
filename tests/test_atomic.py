"""Atomic writes (``core.io.atomic``): a file, a replaced folder and a folder built once appear whole or
not at all, whatever fails halfway, and leave no temporary file or folder behind."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from croco_pipeline.core.io import atomic


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# --- files -------------------------------------------------------------------------------------------


def test_write_file_creates_the_folder_and_replaces_the_file(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "data.bin"
    atomic.write_bytes(target, b"first")
    atomic.write_bytes(target, b"second")
    assert target.read_bytes() == b"second"
    assert _names(target.parent) == ["data.bin"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary_one(tmp_path: Path) -> None:
    target = tmp_path / "data.parquet"
    atomic.write_parquet(pl.DataFrame({"a": [1]}), target)
    before = target.read_bytes()

    def half_then_fail(handle) -> None:
        handle.write(b"half a file")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic.write_file(target, half_then_fail)
    assert target.read_bytes() == before and _names(tmp_path) == ["data.parquet"]
    assert pl.read_parquet(target)["a"].to_list() == [1]


def test_staged_file_renames_only_a_finished_file(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    with atomic.staged_file(target) as temporary:
        temporary.write_text("done")
        assert not target.exists() and temporary.parent == tmp_path and temporary.name.startswith(".out.txt.")
    assert target.read_text() == "done"
    with pytest.raises(RuntimeError), atomic.staged_file(target) as temporary:
        temporary.write_text("half")
        raise RuntimeError("killed")
    assert target.read_text() == "done" and _names(tmp_path) == ["out.txt"]


def test_a_file_in_place_of_a_folder_is_named(tmp_path: Path) -> None:
    blocker = tmp_path / "base"
    blocker.write_text("not a folder")
    with pytest.raises(NotADirectoryError, match=f"{blocker} is a file, not a folder"):
        atomic.write_bytes(blocker / "table" / "data.parquet", b"x")


# --- replacing a folder --------------------------------------------------------------------------------


def test_replace_directory_swaps_in_the_new_folder(tmp_path: Path) -> None:
    target = tmp_path / "adapter"
    atomic.replace_directory(target, lambda folder: (folder / "weights").write_text("v1"))
    assert atomic.replace_directory(target, lambda folder: (folder / "weights").write_text("v2")) == target
    assert (target / "weights").read_text() == "v2"
    assert _names(tmp_path) == ["adapter"]  # neither the new folder's temporary name nor the old folder


def test_a_failed_build_keeps_the_previous_folder(tmp_path: Path) -> None:
    target = tmp_path / "adapter"
    atomic.replace_directory(target, lambda folder: (folder / "weights").write_text("v1"))

    def crash(folder: Path) -> None:
        (folder / "weights").write_text("half")
        raise KeyboardInterrupt  # a kill, not only an error

    with pytest.raises(KeyboardInterrupt):
        atomic.replace_directory(target, crash)
    assert (target / "weights").read_text() == "v1" and _names(tmp_path) == ["adapter"]


def test_a_failed_swap_puts_the_previous_folder_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "adapter"
    atomic.replace_directory(target, lambda folder: (folder / "weights").write_text("v1"))
    real_rename = atomic.os.rename

    def rename(source, destination) -> None:
        # the new folder's rename into place fails; putting the old one back works
        if Path(destination) == target and Path(source).name.endswith(".tmp"):
            raise OSError("rename failed")
        real_rename(source, destination)

    monkeypatch.setattr(atomic.os, "rename", rename)
    with pytest.raises(OSError, match="rename failed"):
        atomic.replace_directory(target, lambda folder: (folder / "weights").write_text("v2"))
    monkeypatch.undo()
    assert (target / "weights").read_text() == "v1" and _names(tmp_path) == ["adapter"]


def test_publish_directory_copies_a_finished_folder_into_place(tmp_path: Path) -> None:
    source = tmp_path / "scratch"
    (source / "sub").mkdir(parents=True)
    (source / "report.md").write_text("new")
    (source / "sub" / "chart.png").write_bytes(b"png")
    destination = tmp_path / "base" / "report"
    destination.mkdir(parents=True)
    (destination / "stale.md").write_text("old")
    atomic.publish_directory(source, str(destination))
    assert _names(destination) == ["report.md", "sub"] and (destination / "sub" / "chart.png").read_bytes() == b"png"
    assert _names(destination.parent) == ["report"] and (source / "report.md").exists()


# --- building a folder once ----------------------------------------------------------------------------


def test_build_runs_once_and_reuses(tmp_path: Path) -> None:
    calls = []

    def build(folder: Path) -> None:
        calls.append(folder)
        (folder / "done").write_text("ok")

    target = tmp_path / "thing"
    assert atomic.build_directory_once(target, build) == target
    assert atomic.build_directory_once(target, build) == target
    assert len(calls) == 1
    assert (target / "done").read_text() == "ok"
    assert _names(tmp_path) == ["thing"]  # no temp folder left behind


def test_failed_build_leaves_nothing(tmp_path: Path) -> None:
    def build(folder: Path) -> None:
        (folder / "half").write_text("partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic.build_directory_once(tmp_path / "thing", build)
    assert list(tmp_path.iterdir()) == []


def test_losing_a_race_keeps_the_winner(tmp_path: Path) -> None:
    target = tmp_path / "thing"

    def build(folder: Path) -> None:
        (folder / "who").write_text("loser")
        # Another process finishes first, while we are still building.
        target.mkdir()
        (target / "who").write_text("winner")

    assert atomic.build_directory_once(target, build) == target
    assert (target / "who").read_text() == "winner"
    assert _names(tmp_path) == ["thing"]
