"""Run a command as if this CPU had AVX2 but no AVX-512, AMX or native bfloat16 (a common laptop or VM).

Timing croco on an AVX2-only machine matters (many laptops and cloud VMs are one), but not every
developer has one at hand. On a newer x86 machine this wrapper hides the newer instruction sets from
every library that picks kernels by them, in the command's process and in every Python process it
starts (vLLM's engine process, Dagster's step processes), through a ``sitecustomize`` module put first
on ``PYTHONPATH``:

* PyTorch's ATen kernels: ``ATEN_CPU_CAPABILITY=avx2``; oneDNN: ``ONEDNN_MAX_CPU_ISA=AVX2``; MKL:
  ``MKL_ENABLE_INSTRUCTIONS=AVX2``.
* vLLM's CPU backend asks ``torch.cpu._is_avx512_supported()`` and friends (which read CPUID, not the
  variables above) to pick its kernel library (``_C_AVX2`` vs ``_C_AVX512``/``_C``), its attention
  and GEMM paths: every ``torch.cpu._is_avx512*`` and ``torch.cpu._is_amx*`` answers False.
* croco's own choice (``core.models.hardware.read_cpu_features``) sees the processor's flags without
  ``avx512*``, ``amx*`` and ``avx_vnni*``, so it picks float32 engines as it would on such a machine.

What it cannot hide: the clock, caches and memory bandwidth of this machine. Calibrate against a real
AVX2-only figure where one is known (``--check`` prints what the libraries see; running
``benchmarks/generation_overhead.py`` under the wrapper gives bare-vLLM tokens/s to compare).

    python benchmarks/as_avx2_only.py --check
    python benchmarks/as_avx2_only.py -- python benchmarks/generation_overhead.py --repeat 1 --warmup 0
    python benchmarks/as_avx2_only.py -- croco demo
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

# Imported by every Python process that has the folder first on PYTHONPATH: patch the modules named
# below right after they are first imported (an import hook), so nothing is imported early.
SITECUSTOMIZE = r"""
import importlib.abc
import importlib.util
import sys

_HIDDEN_PREFIXES = ("avx512", "amx", "avx_vnni")


def _patch_torch(torch):
    cpu = torch.cpu
    for name in dir(cpu):
        if name.startswith(("_is_avx512", "_is_amx")):
            setattr(cpu, name, lambda: False)


def _patch_hardware(hardware):
    original = hardware.read_cpu_features

    def avx2_only_features(cpuinfo=None, cores=None):
        features = original(cpuinfo, cores)
        kept = frozenset(f for f in features.flags if not f.startswith(_HIDDEN_PREFIXES))
        return hardware.CpuFeatures(kept, features.cores, features.machine)

    hardware.read_cpu_features = avx2_only_features


_PATCHES = {"torch": _patch_torch, "croco_pipeline.core.models.hardware": _patch_hardware}


class _PatchAfterImport(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name not in _PATCHES:
            return None
        sys.meta_path.remove(self)  # find the real module without coming back here
        try:
            spec = importlib.util.find_spec(name)
        finally:
            sys.meta_path.insert(0, self)
        if spec is None or spec.loader is None:
            return spec
        loader, patch = spec.loader, _PATCHES[name]

        class PatchingLoader(importlib.abc.Loader):
            def create_module(self, spec):
                return loader.create_module(spec)

            def exec_module(self, module):
                loader.exec_module(module)
                patch(module)

        spec.loader = PatchingLoader()
        return spec


sys.meta_path.insert(0, _PatchAfterImport())
"""

ENVIRONMENT = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}

CHECK = r"""
import torch
from croco_pipeline.core.models.hardware import cpu_engine_for_this_machine
print("torch CPU capability:", torch.backends.cpu.get_cpu_capability())
print("torch.cpu AVX-512 / AVX-512 bf16 / AMX:", torch.cpu._is_avx512_supported(),
      torch.cpu._is_avx512_bf16_supported(), torch.cpu._is_amx_tile_supported())
print("croco's engine choice:", cpu_engine_for_this_machine().reason)
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="print what the libraries see, then exit")
    parser.add_argument("command", nargs="*", help="the command to run (after --)")
    args = parser.parse_args(argv)
    if not args.check and not args.command:
        parser.error("give a command after --, or --check")
    if sys.platform != "linux" or os.uname().machine not in ("x86_64", "AMD64"):
        raise SystemExit("as_avx2_only.py emulates an x86 AVX2-only CPU; run it on an x86-64 Linux machine")
    with tempfile.TemporaryDirectory(prefix="as-avx2-") as folder:
        (Path(folder) / "sitecustomize.py").write_text(SITECUSTOMIZE)
        env = dict(os.environ, **ENVIRONMENT)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [folder, os.environ.get("PYTHONPATH")]))
        command = [sys.executable, "-c", CHECK] if args.check else args.command
        return subprocess.call(command, env=env)


if __name__ == "__main__":
    sys.exit(main())
