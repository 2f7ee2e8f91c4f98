"""What the processor can do, and the engine settings that follow from it on CPU-only machines.

Decided from what the processor reports (instruction sets, the cores this process may use), never
from what happened to be fast on one machine:

* **dtype.** bfloat16 only where the CPU has native bfloat16 instructions (x86: ``avx512_bf16`` or
  ``amx_bf16``; Arm: ``bf16``). Elsewhere — e.g. the many AVX2-only laptops and cloud VMs — bfloat16
  is emulated and several times slower than float32 (measured on a 2-core AVX2-only machine with
  SmolLM2-135M in vLLM: 35 tok/s in bfloat16 against 135 in float32 on one core), so float32 it is.
* **threads.** Every core the process may use (``os.sched_getaffinity``). vLLM's default binding
  reserves one core for its front-end process; on a small machine that halves the throughput (225 vs
  135 tok/s on 2 cores), so machines with at most :data:`SMALL_MACHINE_CORES` cores reserve none.

GPUs keep bfloat16 and vLLM's own settings: nothing here applies to them. Every choice can be
overridden (the policy's ``dtype`` and ``cpu_threads``; ``VLLM_CPU_OMP_THREADS_BIND`` and
``VLLM_CPU_NUM_OF_RESERVED_CPU`` set by the user are left alone).
"""

from __future__ import annotations

import logging
import os
import platform
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

# x86 flags (/proc/cpuinfo "flags") and Arm features ("Features") that mean native bfloat16 arithmetic.
NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16", "sve_bf16"})
# Up to this many usable cores, no core is reserved for vLLM's front-end process.
SMALL_MACHINE_CORES = 4
# Instruction sets worth naming in the log line, most capable first.
_NAMED_FLAGS = ("amx_bf16", "avx512_bf16", "avx512f", "avx2", "fma", "neon", "asimd", "sve", "bf16")


@dataclass(frozen=True)
class CpuFeatures:
    """What the processor reports: its instruction-set flags and the cores this process may use."""

    flags: frozenset[str]
    cores: tuple[int, ...]
    machine: str = "x86_64"

    @property
    def native_bf16(self) -> bool:
        return bool(self.flags & NATIVE_BF16_FLAGS)

    def describe(self) -> str:
        named = [flag for flag in _NAMED_FLAGS if flag in self.flags]
        return f"{self.machine} {' '.join(named) or 'no SIMD flags found'}, {len(self.cores)} usable core(s)"


@dataclass(frozen=True)
class CpuEngineChoice:
    """Engine settings for a CPU: dtype, threads and the vLLM thread binding."""

    dtype: str  # "float32" or "bfloat16"
    threads: int
    bind: str  # VLLM_CPU_OMP_THREADS_BIND, e.g. "0-1"
    reserved_cpus: int  # VLLM_CPU_NUM_OF_RESERVED_CPU
    reason: str  # one line for the log: what was found and what was chosen
    # vLLM's engine and its one worker run inside the calling process (VLLM_ENABLE_V1_MULTIPROCESSING=0):
    # no two processes to start and import torch and vLLM in (measured on 2 cores: engine start 5 s
    # against 19-20 s, the same tokens/s). Only when the engine's threads are bound to every core the
    # process may use, since the worker binds the threads of the process it runs in.
    in_process: bool = False

    def vllm_environment(self) -> dict[str, str]:
        """The variables vLLM's CPU backend reads when an engine starts."""
        return {
            "VLLM_CPU_OMP_THREADS_BIND": self.bind,
            "VLLM_CPU_NUM_OF_RESERVED_CPU": str(self.reserved_cpus),
            "VLLM_ENABLE_V1_MULTIPROCESSING": "0" if self.in_process else "1",
        }


def read_cpu_features(cpuinfo: str | None = None, cores: tuple[int, ...] | None = None) -> CpuFeatures:
    """The features of this machine (``/proc/cpuinfo`` on Linux; elsewhere no flags are known)."""
    if cpuinfo is None:
        path = Path("/proc/cpuinfo")
        cpuinfo = path.read_text(errors="replace") if path.exists() else ""
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            flags.update(value.split())
            break  # every core reports the same set
    if cores is None:
        cores = (
            tuple(sorted(os.sched_getaffinity(0)))
            if hasattr(os, "sched_getaffinity")
            else tuple(range(os.cpu_count() or 1))
        )
    return CpuFeatures(frozenset(flags), tuple(cores), platform.machine() or "unknown")


def _core_list(cores: tuple[int, ...]) -> str:
    """``(0, 1, 2, 5)`` -> ``"0-2,5"`` (the form VLLM_CPU_OMP_THREADS_BIND takes)."""
    parts: list[str] = []
    start = previous = None
    for core in sorted(cores):
        if start is None:
            start = previous = core
        elif core == previous + 1:
            previous = core
        else:
            parts.append(f"{start}-{previous}" if previous != start else f"{start}")
            start = previous = core
    if start is not None:
        parts.append(f"{start}-{previous}" if previous != start else f"{start}")
    return ",".join(parts)


def choose_cpu_engine(features: CpuFeatures, *, dtype: str = "auto", threads: int | None = None) -> CpuEngineChoice:
    """dtype and threads for a CPU engine. ``dtype`` other than "auto" and ``threads`` are overrides."""
    if dtype in ("auto", None, ""):
        chosen_dtype = "bfloat16" if features.native_bf16 else "float32"
        why = "native bfloat16 instructions" if features.native_bf16 else "no native bfloat16 instructions"
    else:
        chosen_dtype = {"bf16": "bfloat16", "fp32": "float32", "half": "float16", "fp16": "float16"}.get(dtype, dtype)
        why = "set in the configuration"
    usable = features.cores or (0,)
    reserved = 0 if len(usable) <= SMALL_MACHINE_CORES else 1
    if threads is not None:
        if threads < 1:
            raise ValueError(f"cpu_threads must be at least 1, got {threads}")
        reserved = 0 if threads < len(usable) else reserved
        bound = usable[:threads]
    else:
        bound = usable[: len(usable) - reserved]
    in_process = len(bound) == len(usable)
    reason = (
        f"CPU {features.describe()}: dtype {chosen_dtype} ({why}), {len(bound)} thread(s) on cores "
        f"{_core_list(bound)}, {reserved} core(s) reserved, engine "
        f"{'inside this process' if in_process else 'in processes of its own'}"
    )
    return CpuEngineChoice(chosen_dtype, len(bound), _core_list(bound), reserved, reason, in_process)


_logged: set[str] = set()


def cpu_engine_for_this_machine(*, dtype: str = "auto", threads: int | None = None) -> CpuEngineChoice:
    """:func:`choose_cpu_engine` for this machine, logged once per distinct choice."""
    choice = choose_cpu_engine(read_cpu_features(), dtype=dtype, threads=threads)
    if choice.reason not in _logged:
        _logged.add(choice.reason)
        log.info(choice.reason)
    return choice
