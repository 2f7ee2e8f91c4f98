"""The benchmarks still run: each script at its smallest size with a tiny model, as a user would
start it (a child process), and it prints its figures. These are smoke tests, not measurements."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = REPO_ROOT / "benchmarks"


def _run(script: str, *args: str, timeout: int = 300, environ: dict[str, str] | None = None) -> str:
    env = {**os.environ, **(environ or {}), "PYTHONPATH": str(REPO_ROOT)}
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, f"{script} failed ({result.returncode}):\n{result.stderr[-4000:]}"
    return result.stdout


@pytest.mark.system
@pytest.mark.parametrize("script", ["training_overhead.py", "gpu_throughput.py", "generation_overhead.py"])
def test_help(script):
    assert "usage:" in _run(script, "--help", timeout=120)


@pytest.mark.system
def test_base_language_shares_smoke(tiny_environ, tmp_path):
    """A shipped language and one from the screening prompts, answered by the tiny policy."""
    stdout = _run(
        "base_language_shares.py",
        "--languages",
        "da",
        "--languages-file",
        "ca",
        "--n",
        "2",
        environ=tiny_environ(tmp_path / "data"),
    )
    rows = [line for line in stdout.splitlines() if re.match(r"\| (da|ca) \| 32 \| [\d.]+ \| [\d.]+ \|", line)]
    assert len(rows) == 2, stdout  # 16 held-out prompts x 2 answers each


@pytest.mark.system
def test_training_overhead_smoke(tmp_path):
    out = tmp_path / "overhead.json"
    stdout = _run(
        "training_overhead.py",
        "--model",
        "tiny",
        "--pairs",
        "2",
        "--steps",
        "2",
        "--repeat",
        "1",
        "--warmup",
        "0",
        "--workdir",
        str(tmp_path),
        "--out",
        str(out),
    )
    assert re.search(r"run 1 asset: +[\d.]+ s wall", stdout), stdout
    assert re.search(r"run 1 bare : +[\d.]+ s wall", stdout), stdout
    assert re.search(r"overhead of the asset: [+-][\d.]+ % wall", stdout), stdout
    assert "final train loss identical between the variants" in stdout, stdout
    figures = json.loads(out.read_text())
    assert len(figures["runs"]["asset"]) == len(figures["runs"]["bare"]) == 1
    assert figures["median_wall_seconds"]["asset"] > 0 and figures["median_wall_seconds"]["bare"] > 0
    assert figures["same_loss"] is True
    assert not any(tmp_path.glob("croco-training-overhead-*")), "the temporary folder was left behind"


@pytest.mark.system
def test_generation_overhead_smoke(tmp_path):
    out = tmp_path / "generation.json"
    stdout = _run(
        "generation_overhead.py",
        "--model",
        "tiny",
        "--prompts",
        "2",
        "--n",
        "2",
        "--max-new-tokens",
        "4",
        "--repeat",
        "1",
        "--warmup",
        "0",
        "--workdir",
        str(tmp_path),
        "--out",
        str(out),
        timeout=600,
    )
    assert re.search(r"run 1 croco: +[\d.]+ s wall, +[\d.]+ s CPU, \d+ tokens", stdout), stdout
    assert re.search(r"run 1 bare : +[\d.]+ s wall, +[\d.]+ s CPU, \d+ tokens", stdout), stdout
    assert re.search(r"ratio bare / croco: [\d.]+ \(median wall seconds", stdout), stdout
    assert re.search(r"croco: median [\d.]+ s wall .* [\d.]+ tok/s end to end", stdout), stdout
    assert re.search(r"answers identical in [01] of 1 rounds \(4 answers each\)", stdout), stdout
    figures = json.loads(out.read_text())
    assert len(figures["runs"]["croco"]) == len(figures["runs"]["bare"]) == 1
    assert all(run["cpu"] > 0 and run["wall"] > 0 for runs in figures["runs"].values() for run in runs)
    assert figures["median_tokens"]["croco"] > 0 and figures["median_tokens"]["bare"] > 0
    assert figures["ratio"] > 0
    assert not any(tmp_path.glob("croco-generation-overhead-*")), "the temporary folder was left behind"


@pytest.mark.system
def test_gpu_throughput_toy(tmp_path):
    out = tmp_path / "throughput.json"
    stdout = _run("gpu_throughput.py", "--toy", "--workdir", str(tmp_path), "--out", str(out))
    for phase in ("dpo_train", "rm_forward", "rm_scorer"):
        assert re.search(rf"^{phase} .* [\d,]+ +[\d.e+-]+ +(n/a|[\d.]+ %)$", stdout, re.MULTILINE), stdout
    assert re.search(r"[\d.]+ steps/s", stdout), stdout
    figures = json.loads(out.read_text())
    assert figures["toy"] is True
    rows = {row["phase"]: row for row in figures["results"]}
    assert set(rows) == {"dpo_train", "rm_forward", "rm_scorer"}
    dpo = rows["dpo_train"]
    assert dpo["steps_per_s"] > 0 and dpo["tokens_per_s"] > 0 and dpo["achieved_tflops"] > 0
    assert dpo["trl_num_tokens"] == dpo["tokens_per_step"] * (dpo["timed_steps"] + dpo["warmup_steps"])  # no padding
    assert rows["rm_scorer"]["tokens"] == rows["rm_scorer"]["conversations"] * 24  # toy conversations: 24 tokens
    if figures["peak_tflops"] is None:  # CPU: no peak, no MFU
        assert all(row["mfu"] is None for row in rows.values())


def test_gpu_throughput_peak_lookup():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        from gpu_throughput import peak_tflops
    finally:
        sys.path.remove(str(BENCHMARKS))
    assert peak_tflops("NVIDIA H100 80GB HBM3", None)[0] == 989.0
    assert peak_tflops("NVIDIA H200", None)[0] == 989.0
    assert peak_tflops("NVIDIA H100 PCIe", None)[0] == 756.0
    assert peak_tflops("NVIDIA L4", None)[0] == 121.0
    assert peak_tflops("NVIDIA L40", None)[0] is None  # not mistaken for an L4
    assert peak_tflops("NVIDIA H100 80GB HBM3", 500.0)[0] == 500.0
    assert peak_tflops("Some Future GPU", None)[0] is None


@pytest.mark.system
def test_as_avx2_only_hides_newer_instruction_sets_from_every_library():
    """The AVX2-only emulation reaches what picks kernels: torch's dispatch, vLLM's checks and croco's choice,
    also in a grandchild process (vLLM's engine runs in one)."""
    stdout = _run("as_avx2_only.py", "--check", timeout=120)
    assert "torch CPU capability: AVX2" in stdout
    assert "torch.cpu AVX-512 / AVX-512 bf16 / AMX: False False False" in stdout
    assert "dtype float32 (no native bfloat16 instructions)" in stdout
    assert not re.search(r"avx512|amx", stdout.split("croco's engine choice:")[1])
    nested = _run(
        "as_avx2_only.py",
        "--",
        sys.executable,
        "-c",
        "import subprocess, sys; subprocess.run([sys.executable, '-c', "
        "'import torch; print(torch.cpu._is_avx512_supported(), torch.backends.cpu.get_cpu_capability())'])",
        timeout=120,
    )
    assert nested.strip() == "False AVX2"


@pytest.mark.system
def test_one_run_per_stage_smoke():
    stdout = _run(
        "one_run_per_stage.py",
        *("--languages", "da,ga", "--prompts", "1", "--samples", "1", "--max-new-tokens", "4", "--rounds", "1"),
        timeout=900,
    )
    assert re.search(r"per_language +[\d.]+ +2 +4", stdout), stdout
    assert re.search(r"one_run +[\d.]+ +1 +2", stdout), stdout
