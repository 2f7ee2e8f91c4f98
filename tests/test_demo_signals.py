"""SIGTERM and SIGINT to `croco demo` in the middle of a model-loading step (tiny profile, vLLM when installed):
the demo exits within 15 s with a clear line, leaves no process behind (engine processes included), and
the same command run again resumes: what was finished is skipped, the rest runs, and every table comes
out whole, without duplicates.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest
from cli_runs import alive, descendants, in_session, processes

pytestmark = pytest.mark.system  # runs the demo as a user would and kills it

STOP_WITHIN_S = 15
STEP = "base_answers"  # loads the policy and generates: the first step that holds a generation engine


def _command() -> list[str]:
    entry = Path(sys.executable).with_name("croco")
    return [str(entry)] if entry.exists() else [sys.executable, "-m", "croco_pipeline.cli"]


def _demo(args: list[str], environ: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [*_command(), "demo", *args, "--log-file", str(log), "--quiet"],
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own session: whatever it starts can be found by session id
        # a shell that starts jobs in the background ignores SIGINT in them; a terminal user's Ctrl-C does not
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_mid_step_stops_the_demo_and_the_rerun_resumes(signum, tmp_path, tiny_environ):
    storage = tmp_path / "croco_data"
    environ = {**os.environ, **tiny_environ(storage)}
    args = ["--languages", "da", "--dagster-home", str(tmp_path / "home")]
    first_log = tmp_path / "first.log"
    demo = _demo(args, environ, first_log)
    seen: set[tuple[int, str]] = set()
    try:
        deadline = time.monotonic() + 600
        while f'Started execution of step "{STEP}"' not in (first_log.read_text() if first_log.exists() else ""):
            assert demo.poll() is None, demo.stdout.read()
            assert time.monotonic() < deadline, "the demo never reached the step"
            seen |= descendants(demo.pid, processes())
            time.sleep(0.2)
        step_started = time.monotonic()
        while time.monotonic() - step_started < 8:  # well into the step: the engine loads and generates
            seen |= descendants(demo.pid, processes())
            time.sleep(0.2)
        assert demo.poll() is None, "the step ended before the signal"
        signalled = time.monotonic()
        demo.send_signal(signum)
        while demo.poll() is None and time.monotonic() - signalled < 60:
            seen |= descendants(demo.pid, processes())
            time.sleep(0.1)
        stopped_after = time.monotonic() - signalled
        output = demo.stdout.read()
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait()
    print(f"reliability: {signum.name} to croco demo mid-step: exit in {stopped_after:.1f} s ({len(seen)} children)")
    assert stopped_after < STOP_WITHIN_S, output
    assert demo.returncode != 0
    assert "croco demo: croco_job [da] failed" in output or "interrupted" in output.lower(), output
    time.sleep(1)  # children reparented to init get a moment to finish exiting
    assert alive(seen) == [], "processes left behind"
    assert in_session(demo.pid) == []
    # nothing half-written: every table is either absent or whole
    tables = sorted(storage.rglob("*.parquet"))
    for path in tables:
        pl.read_parquet(path)

    # the same command again: what was finished is skipped, the rest runs
    second_log = tmp_path / "second.log"
    started = time.monotonic()
    rerun = subprocess.run(
        [*_command(), "demo", *args, "--log-file", str(second_log), "--quiet"],
        env=environ,
        capture_output=True,
        text=True,
        timeout=900,
    )
    print(f"reliability: {signum.name}: the resumed demo took {time.monotonic() - started:.0f} s")
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    [resuming] = [line for line in rerun.stdout.splitlines() if "resuming; already done:" in line]
    assert "prompts" in resuming and STEP not in resuming
    assert 'Started execution of step "prompts"' not in second_log.read_text()
    generations = pl.read_parquet(storage / "generations" / "language=da" / "data.parquet")
    assert generations.height == 4 * 3 and not generations.select("prompt_id", "sample_idx").is_duplicated().any()
    assert (storage / "croco_report" / "data.parquet").is_file()
