"""What the benchmark scripts share: the machine-load line they print, the ``--model`` values, and one
harness for comparing two (or more) ways of doing the same work:

- :func:`interleaved` runs the sides in rounds, the order reversed every other round (a b, b a, a b, …)
  after untimed warm-up runs, so a drift in the machine's load hits every side alike;
- :func:`medians` and :func:`paired_median` summarise them: the median of each side, and the median of
  the per-round ratios, which cancels slow drifts of the load that medians alone do not;
- :func:`run_child` times one run in a child process, so process start and imports are counted: wall
  seconds, CPU seconds and peak memory.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

REPO_ROOT = Path(__file__).resolve().parents[1]

Result = TypeVar("Result")


def print_load(when: str) -> None:
    """One line on the interpreter, the CPUs and the load average: figures from a busy machine say so."""
    print(
        f"[{when}] python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average "
        f"{', '.join(f'{x:.1f}' for x in os.getloadavg())} (1, 5, 15 min)",
        flush=True,
    )


def resolve_model_arg(spec: str, folder: Path) -> str:
    """``--model``: ``embedded`` (SmolLM2-135M-Instruct), ``tiny`` (the tests' tiny random policy, built
    in ``folder``) or a model folder."""
    if spec == "embedded":
        from croco_pipeline.core.models.specs import EMBEDDED_POLICY, resolve_model

        return resolve_model(EMBEDDED_POLICY)
    if spec == "tiny":
        sys.path.insert(0, str(REPO_ROOT / "tests"))  # the tests' tiny-model builders
        from tiny_models import build_tiny_policy

        return str(build_tiny_policy(folder / "tiny-policy"))
    path = Path(spec).expanduser()
    if not path.is_dir():
        raise SystemExit(f"--model: {spec!r} is neither 'embedded', 'tiny' nor a model folder")
    return str(path.resolve())


# ---------------------------------------------------------------------------------------------------
# Interleaved rounds


def interleaved(
    sides: Sequence[str],
    run: Callable[[str, int], Result],
    *,
    rounds: int,
    warmup: int = 0,
    report: Callable[[str, int, Result], None] | None = None,
) -> dict[str, list[Result]]:
    """``run(side, index)`` for every side: ``warmup`` untimed runs each first (index -1, -2, …; their
    results are reported, not kept), then ``rounds`` rounds (index 0, 1, …), every other one in reverse
    order. ``report(side, index, result)`` is called after each run. Returns each side's results of
    the timed rounds, in round order."""
    for i in range(warmup):
        for side in sides:
            result = run(side, -1 - i)
            if report:
                report(side, -1 - i, result)
    results: dict[str, list[Result]] = {side: [] for side in sides}
    for i in range(rounds):
        for side in sides if i % 2 == 0 else reversed(sides):
            result = run(side, i)
            results[side].append(result)
            if report:
                report(side, i, result)
    return results


def medians(results: Mapping[str, Sequence[Result]], value: Callable[[Result], float]) -> dict[str, float]:
    """The median of ``value`` over each side's runs."""
    return {side: statistics.median(value(r) for r in runs) for side, runs in results.items()}


def paired_median(
    first: Sequence[Result], second: Sequence[Result], ratio: Callable[[Result, Result], float]
) -> float:
    """The median over rounds of ``ratio(first run, second run)``: the two sides of a round ran back to
    back, so their ratio is little moved by slow changes of the machine's load."""
    return statistics.median(ratio(a, b) for a, b in zip(first, second, strict=True))


# ---------------------------------------------------------------------------------------------------
# A run in a child process


@dataclass
class ChildRun:
    wall: float  # seconds from starting the child to its exit
    cpu: float  # CPU seconds (user + system): the child's, or its whole process tree's (sample_tree)
    peak_rss_bytes: int  # the child's own peak resident memory
    stdout: str
    stderr: str


def run_child(
    command: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    sample_tree: bool = False,
) -> ChildRun:
    """Run ``command`` to its end and time it; a failing child ends the benchmark with its stderr.

    Wall seconds, CPU seconds and peak RSS come from ``os.wait4`` (the child's own figures, not the
    cumulative maximum of every child this process ever had). With ``sample_tree`` the CPU seconds are
    those of the child and of every process it starts (vLLM's engine core and workers), sampled every
    half second while it runs: an engine process killed at shutdown is never waited for, so ``wait4``
    would miss it. What a process spends after its last sample is not counted then.
    """
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        started = time.perf_counter()
        process = subprocess.Popen(
            list(command), env=None if env is None else dict(env), cwd=cwd, stdout=out, stderr=err
        )
        sampler = _TreeSampler(process.pid) if sample_tree else None
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)  # reaped by wait4; tell Popen
        tree_cpu = sampler.stop() if sampler else None
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, command[:4]))} ... failed ({process.returncode}):\n{stderr[-4000:]}")
    cpu = tree_cpu if tree_cpu is not None else usage.ru_utime + usage.ru_stime
    return ChildRun(wall, cpu, usage.ru_maxrss * 1024, stdout, stderr)  # ru_maxrss is in KiB on Linux


class _TreeSampler:
    """CPU seconds of a process and its descendants, sampled every half second by a thread of its own."""

    def __init__(self, pid: int) -> None:
        import psutil

        try:
            self._root: psutil.Process | None = psutil.Process(pid)
        except psutil.Error:  # gone already: nothing to sample
            self._root = None
        self._seen: dict[tuple[int, float], float] = {}  # (pid, start time) -> CPU seconds at the last sample
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._done.wait(0.5):
            self._sample()

    def _sample(self) -> None:
        import psutil

        if self._root is None:
            return
        try:
            processes = [self._root, *self._root.children(recursive=True)]
        except psutil.Error:
            return
        for process in processes:
            try:
                times = process.cpu_times()
                self._seen[(process.pid, process.create_time())] = times.user + times.system
            except psutil.Error:
                pass

    def stop(self) -> float:
        self._done.set()
        self._thread.join()
        return sum(self._seen.values())
