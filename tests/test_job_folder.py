"""No way in through the job folder: under CROCO_EXECUTOR=slurm a step and its job exchange pickles there,
so the folder is private and a pickle someone else could have written is refused, not unpickled.

The step-level tests run the real job program (``python -m croco_pipeline.core.execution.slurm_job``)
in a child process in place of ``sbatch`` (no SLURM needed here; tests/test_slurm.py runs the same
refusal on a real cluster), and tamper with the folder between the job and the step.
"""

from __future__ import annotations

import operator
import os
import pickle
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from dagster import Output, asset, materialize

from croco_pipeline.core.execution import slurm
from croco_pipeline.core.execution.job_folder import (
    UnsafeJobFolderError,
    check_private,
    make_private_folder,
    write_private,
)
from croco_pipeline.core.execution.slurm_job import CALL_NAME, RESULT_NAME
from croco_pipeline.resources.compute import ComputeResource


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_job_folders_and_pickles_are_private(tmp_path):
    old = os.umask(0o002)  # a permissive umask (group-writable by default) changes nothing
    try:
        folder = make_private_folder(tmp_path / "work" / "run" / "step-1", tmp_path / "work")
        write_private(folder / CALL_NAME, b"call")
    finally:
        os.umask(old)
    assert [_mode(path) for path in (tmp_path / "work", tmp_path / "work" / "run", folder)] == [0o700] * 3
    assert _mode(folder / CALL_NAME) == 0o600 and (folder / CALL_NAME).read_bytes() == b"call"
    assert [path.name for path in folder.iterdir()] == [CALL_NAME]  # no temporary file left
    check_private(folder, folder / CALL_NAME)
    with pytest.raises(FileExistsError, match="already exists"):  # a folder that exists may hold others' files
        make_private_folder(folder, tmp_path / "work")


@pytest.mark.parametrize(
    "tamper, reason",
    [
        (lambda folder, file: folder.chmod(0o707), r"step-1 is writable by others \(mode 0707\)"),
        (lambda folder, file: folder.chmod(0o770), r"step-1 is writable by group \(mode 0770\)"),
        (lambda folder, file: file.chmod(0o666), r"result.pkl is writable by group and others \(mode 0666\)"),
        (lambda folder, file: (file.unlink(), file.symlink_to("/etc/hostname")), r"result.pkl is a symbolic link"),
    ],
)
def test_a_folder_or_file_others_can_write_is_refused_with_the_reason(tmp_path, tamper, reason):
    folder = make_private_folder(tmp_path / "step-1")
    write_private(folder / RESULT_NAME, b"result")
    tamper(folder, folder / RESULT_NAME)
    with pytest.raises(UnsafeJobFolderError, match=reason) as refused:
        check_private(folder, folder / RESULT_NAME)
    assert "would run their code as this user" in str(refused.value)


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")
def test_a_file_owned_by_someone_else_is_refused(tmp_path):
    folder = make_private_folder(tmp_path / "step-1")
    write_private(folder / RESULT_NAME, b"result")
    os.chown(folder / RESULT_NAME, 65534, 65534)
    with pytest.raises(UnsafeJobFolderError, match=r"result.pkl is owned by user id 65534, not by this user \(0\)"):
        check_private(folder, folder / RESULT_NAME)


# ----------------------------------------------------------------------------- through a step


class _Payload:
    """Unpickling it creates ``marker``: what an attacker's pickle would do, harmlessly."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def _fake_sbatch(monkeypatch, tamper_before=None, tamper_after=None):
    """``sbatch`` that runs the job program at once in a child process; ``wait`` says COMPLETED."""
    folders: list[Path] = []

    def submit(script: Path, env: dict | None = None) -> str:
        folder = script.parent
        folders.append(folder)
        if tamper_before:
            tamper_before(folder)
        job = subprocess.run(
            [sys.executable, "-m", slurm.JOB_MODULE, str(folder)], env=env, capture_output=True, text=True
        )
        (folder / "slurm-1.out").write_text(job.stdout + job.stderr)
        if tamper_after:
            tamper_after(folder)
        return "1"

    monkeypatch.setattr(slurm, "submit", submit)
    monkeypatch.setattr(slurm, "wait", lambda job_id, *a, **k: slurm.JobStatus(job_id, "COMPLETED", "0:0", "node"))
    return folders


def _materialize(tmp_path) -> tuple[object, str]:
    @asset
    def doubled(context, compute: ComputeResource) -> Output[int]:
        # a function the job can import (this test module is not importable there); Output, as after Pipes
        return Output(compute.call(context, "training", operator.mul, 21, 2))

    compute = ComputeResource(slurm=True, slurm_work_dir=str(tmp_path / "jobs"), slurm_poll_seconds=0.1)
    result = materialize([doubled], resources={"compute": compute}, raise_on_error=False)
    failures = [event.step_failure_data.error.to_string() for event in result.all_events if event.is_step_failure]
    return result, "\n".join(failures)


@pytest.mark.system  # a Dagster step (or croco child process) run whole
def test_the_step_reads_the_result_of_an_untouched_folder(tmp_path, monkeypatch):
    folders = _fake_sbatch(monkeypatch)
    result, failures = _materialize(tmp_path)
    assert result.success, failures
    assert result.output_for_node("doubled") == 42
    [folder] = folders
    assert _mode(tmp_path / "jobs") == _mode(folder.parent) == _mode(folder) == 0o700
    assert _mode(folder / CALL_NAME) == 0o600


@pytest.mark.system  # a Dagster step (or croco child process) run whole
def test_a_job_folder_made_writable_by_others_makes_the_step_refuse(tmp_path, monkeypatch):
    """Someone widened the folder and swapped in their own result: the step refuses and never unpickles it."""
    marker = tmp_path / "attacker-code-ran"

    def widen_and_swap(folder: Path) -> None:
        folder.chmod(0o777)
        (folder / RESULT_NAME).unlink()
        (folder / RESULT_NAME).write_bytes(pickle.dumps(_Payload(str(marker))))

    _fake_sbatch(monkeypatch, tamper_after=widen_and_swap)
    result, failures = _materialize(tmp_path)
    assert not result.success
    assert "UnsafeJobFolderError" in failures
    assert "is writable by group and others (mode 0777)" in failures
    assert "Refusing to read the job folder's pickle" in failures
    assert not marker.exists()  # the swapped-in pickle was never loaded


@pytest.mark.system  # a Dagster step (or croco child process) run whole
def test_a_call_others_could_write_is_refused_by_the_job(tmp_path, monkeypatch):
    """The job checks the call it unpickles the same way: a call file made writable by others is not run."""
    _fake_sbatch(monkeypatch, tamper_before=lambda folder: (folder / CALL_NAME).chmod(0o646))
    result, failures = _materialize(tmp_path)
    assert not result.success
    assert "call.pkl is writable by others (mode 0646)" in failures  # the job's error, passed on by the step
