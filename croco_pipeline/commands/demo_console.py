"""What a person sees while ``croco demo`` runs: one line per stage and language with its time, a
progress bar for chunked steps, then the results — and everything else in a log file.

vLLM prints its whole engine configuration at every start, Dagster an event per step, pip and the
libraries their warnings: hundreds of lines per language. Here the libraries' loggers are held at
WARNING (INFO with ``--verbose``), and unless ``--verbose`` is given the process's standard output
and error — the vLLM engine processes' included, which inherit them — go to the log file, while the
console lines are written to the terminal directly.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import time
from pathlib import Path
from typing import TextIO

# Libraries whose INFO chatter is hidden unless --verbose.
LIBRARY_LOGGERS = (
    "vllm",
    "transformers",
    "datasets",
    "accelerate",
    "peft",
    "trl",
    "torch",
    "httpx",
    "urllib3",
    "filelock",
    "huggingface_hub",
    "ray",
    "numexpr",
)
_CHUNK = re.compile(r"chunk (\d+)/(\d+) done")


class DemoConsole:
    """Context manager: routes library output to ``log_path`` and prints step lines to the terminal."""

    def __init__(self, log_path: Path, *, verbose: bool = False):
        self.log_path = log_path
        self.verbose = verbose
        self.terminal: TextIO = sys.stdout
        self._saved_fds: list[int] = []
        self._log_file: TextIO | None = None
        self._step_started: dict[str, float] = {}
        self._language = ""
        self._progress_open = False

    # ------------------------------------------------------------------ set-up and tear-down

    def __enter__(self) -> "DemoConsole":
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log_file = open(self.log_path, "a", buffering=1, encoding="utf-8")
        level = logging.INFO if self.verbose else logging.WARNING
        # vLLM reads its level from the environment when it is imported (also in its engine processes).
        os.environ.setdefault("VLLM_LOGGING_LEVEL", logging.getLevelName(level))
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "info" if self.verbose else "warning")
        for name in LIBRARY_LOGGERS:
            logging.getLogger(name).setLevel(level)
        root = logging.getLogger()
        self._file_handler = logging.StreamHandler(self._log_file)
        self._file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(self._file_handler)
        if not self.verbose:
            sys.stdout.flush()
            sys.stderr.flush()
            # Keep the terminal for our own lines, then point fds 1 and 2 (inherited by subprocesses) at the log.
            self.terminal = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8", errors="replace")
            self._saved_fds = [os.dup(1), os.dup(2)]
            os.dup2(self._log_file.fileno(), 1)
            os.dup2(self._log_file.fileno(), 2)
        return self

    def __exit__(self, *exc_info) -> None:
        self._end_progress()
        sys.stdout.flush()
        sys.stderr.flush()
        for fd, saved in zip((1, 2), self._saved_fds):
            os.dup2(saved, fd)
            os.close(saved)
        self._saved_fds = []
        logging.getLogger().removeHandler(self._file_handler)
        if self.terminal is not sys.stdout:
            self.terminal.close()
            self.terminal = sys.stdout
        if self._log_file:
            self._log_file.close()

    # ------------------------------------------------------------------ output

    def print(self, text: str = "") -> None:
        self._end_progress()
        print(text, file=self.terminal, flush=True)

    def start_run(self, label: str, language: str | None) -> None:
        """A job run begins (one language, or a run over every language)."""
        self._language = language or "all"
        print(f"# {label}", file=self._log_file, flush=True)

    def dagster_logger(self):
        """A Dagster logger definition that turns step events into console lines and logs the rest."""
        from dagster import logger

        console = self

        @logger(description="croco demo console: one line per step, everything in the log file")
        def croco_demo_console(_init_context) -> logging.Logger:
            log = logging.Logger("croco.demo", level=logging.DEBUG)
            log.addHandler(_StepLineHandler(console))
            file_handler = logging.StreamHandler(console._log_file)
            file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s dagster: %(message)s"))
            file_handler.setLevel(logging.DEBUG)  # step events too: the log tells the whole run
            log.addHandler(file_handler)
            return log

        return croco_demo_console

    # ------------------------------------------------------------------ step events

    def step_started(self, step: str) -> None:
        self._step_started[step] = time.perf_counter()
        self._show_progress(step, None)

    def step_progress(self, step: str, done: int, total: int) -> None:
        self._show_progress(step, (done, total))

    def step_finished(self, step: str, ok: bool, error: str = "") -> None:
        seconds = time.perf_counter() - self._step_started.pop(step, time.perf_counter())
        line = f"  {self._language:<4} {step:<26} {seconds:6.1f} s"
        if not ok:
            line += f"   FAILED: {error.splitlines()[0] if error else 'see the log'}"
        self.print(line)

    def _show_progress(self, step: str, fraction: tuple[int, int] | None) -> None:
        if not self.terminal.isatty():  # a pipe or a file gets the finished lines only
            return
        elapsed = time.perf_counter() - self._step_started.get(step, time.perf_counter())
        bar = ""
        if fraction:
            done, total = fraction
            filled = int(20 * done / max(total, 1))
            bar = f" [{'#' * filled}{'.' * (20 - filled)}] {done}/{total}"
        self.terminal.write(f"\r  {self._language:<4} {step:<26} {elapsed:6.1f} s{bar}\033[K")
        self.terminal.flush()
        self._progress_open = True

    def _end_progress(self) -> None:
        if self._progress_open:
            self.terminal.write("\r\033[K")
            self.terminal.flush()
            self._progress_open = False


class _StepLineHandler(logging.Handler):
    """Reads Dagster's step events off the log records and tells the console."""

    def __init__(self, console: DemoConsole):
        super().__init__(level=logging.DEBUG)
        self.console = console

    def emit(self, record: logging.LogRecord) -> None:
        meta = getattr(record, "dagster_meta", None) or {}
        step = meta.get("step_key")
        event = meta.get("dagster_event")
        if not step:
            return
        kind = getattr(event, "event_type_value", None)
        if kind == "STEP_START":
            self.console.step_started(step)
        elif kind == "STEP_SUCCESS":
            self.console.step_finished(step, ok=True)
        elif kind == "STEP_FAILURE":
            error = getattr(getattr(event, "event_specific_data", None), "error", None)
            while getattr(error, "cause", None) is not None:  # the user's exception, not Dagster's wrapper
                error = error.cause
            self.console.step_finished(step, ok=False, error=(getattr(error, "message", "") or "").strip())
        elif event is None:
            match = _CHUNK.search(meta.get("orig_message", ""))
            if match:
                self.console.step_progress(step, int(match.group(1)), int(match.group(2)))
