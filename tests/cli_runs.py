"""Helpers of the system tests that run the pipeline in child processes and fault them: the processes a run
started (found through /proc, so a kill can be aimed and leftovers seen) and `dagster asset materialize` in a
session of its own.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from dagster import AssetKey, DagsterInstance

DAGSTER = str(Path(sys.executable).with_name("dagster"))


def processes() -> dict[int, tuple[int, int, str]]:
    """pid -> (parent pid, session id, start time) of every process now."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        table[int(entry)] = (int(fields[1]), int(fields[3]), fields[19])
    return table


def descendants(root: int, table: dict[int, tuple[int, int, str]]) -> set[tuple[int, str]]:
    """(pid, start time) of every process below ``root`` in ``table``."""
    found, frontier = set(), {root}
    while frontier:
        frontier = {pid for pid, (parent, _, _) in table.items() if parent in frontier}
        found |= {(pid, table[pid][2]) for pid in frontier}
    return found


def alive(seen: set[tuple[int, str]]) -> list[int]:
    """The processes of ``seen`` still running (the same pid with the same start time)."""
    now = processes()
    return [pid for pid, started in seen if pid in now and now[pid][2] == started]


def in_session(session: int) -> list[int]:
    """Every process now in the session ``session``."""
    return [pid for pid, (_, sid, _) in processes().items() if sid == session]


def left_in_session(session: int, within_s: float = 10.0) -> list[str]:
    """The command lines of the processes of ``session`` still running after ``within_s`` seconds; returns at
    once when none is (processes reparented to init, like multiprocessing's resource tracker, may take a moment
    to finish exiting on a loaded machine)."""
    deadline = time.monotonic() + within_s
    while (left := in_session(session)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return [f"{pid} {process_title(pid)}" for pid in left]


def process_title(pid: int) -> str:
    """The command line as the process shows it (vLLM renames its processes, e.g. ``VLLM::EngineCore``)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def dagster_home(home: Path, languages: list[str], config: str = "telemetry:\n  enabled: false\n") -> Path:
    """A new Dagster instance folder: ``config`` as its dagster.yaml, the ``languages`` partitions added."""
    from croco_pipeline.partitions import language_partitions

    home.mkdir(parents=True)
    (home / "dagster.yaml").write_text(config)
    with DagsterInstance.from_config(str(home)) as instance:
        instance.add_dynamic_partitions(language_partitions.name, languages)
    return home


def cli_environment(croco_environ: dict[str, str], home: Path) -> dict[str, str]:
    """This process's environment without its CROCO_ settings (but the model cache), plus ``croco_environ``
    (the ``tiny_environ`` fixture's values) and ``DAGSTER_HOME``."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("CROCO_") or key == "CROCO_CACHE"}
    return {**env, **croco_environ, "DAGSTER_HOME": str(home)}


def staged_chunks(storage: Path, language: str, asset: str = "generations") -> list[Path]:
    """The chunks staged for ``asset`` and ``language`` under any configuration, in name order."""
    return sorted((storage / "_staging" / asset / f"language={language}").glob("*/chunk-*.parquet"))


def materialisation_metadata(instance: DagsterInstance, asset: str) -> dict:
    """The metadata of ``asset``'s latest materialisation in ``instance``, as plain values."""
    event = instance.get_latest_materialization_event(AssetKey(asset))
    return {key: value.value for key, value in event.asset_materialization.metadata.items()}


class CliRun:
    """`dagster asset materialize --select <select>` of one partition in a new session (its own process group),
    its output in ``log``."""

    def __init__(self, env: dict, cwd: Path, log: Path, *, select: str, partition: str, run_config: dict):
        command = [
            DAGSTER,
            "asset",
            "materialize",
            "-m",
            "croco_pipeline.definitions",
            "--select",
            select,
            "--partition",
            partition,
            "--config-json",
            json.dumps(run_config),
        ]
        self.log = log
        self._log_file = open(log, "wb")
        self.process = subprocess.Popen(
            command,
            cwd=cwd,
            env=env,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            # a non-interactive parent may leave SIGINT ignored (docs/design.md §3); give the run the default back
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        self.pid = self.process.pid

    def output(self, tail: int = 4000) -> str:
        self._log_file.flush()
        return self.log.read_text(errors="replace")[-tail:]

    def kill_group(self) -> None:
        """SIGKILL the whole process group (the CLI and its step process) and wait until it is gone."""
        if group_alive(self.pid):
            os.killpg(self.pid, signal.SIGKILL)
        self.process.wait(timeout=30)
        deadline = time.monotonic() + 30
        while group_alive(self.pid):
            assert time.monotonic() < deadline, "processes of the killed run are still alive"
            time.sleep(0.05)
        if not self._log_file.closed:
            self._log_file.close()

    def wait(self, timeout: float) -> int:
        """The run's exit status once it ends by itself; whatever of it is left is then killed."""
        try:
            return self.process.wait(timeout=timeout)
        finally:
            self.kill_group()
