"""The processor-features → engine-settings decision, from features given (not read from this machine)."""

import pytest

from croco_pipeline.core.models.hardware import CpuFeatures, choose_cpu_engine, read_cpu_features

AVX2_LAPTOP = CpuFeatures(frozenset({"sse4_2", "avx", "avx2", "fma"}), (0, 1))
SAPPHIRE_RAPIDS = CpuFeatures(frozenset({"avx2", "avx512f", "avx512_bf16", "amx_bf16"}), tuple(range(32)))
GRAVITON3 = CpuFeatures(frozenset({"fp", "asimd", "sve", "bf16"}), tuple(range(8)), machine="aarch64")

EPYC_CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 7B13
flags\t\t: fpu vme sse sse2 ssse3 fma sse4_1 sse4_2 avx f16c avx2 bmi2
processor\t: 1
flags\t\t: fpu vme sse sse2 ssse3 fma sse4_1 sse4_2 avx f16c avx2 bmi2
"""


def test_avx2_only_machine_gets_float32_on_every_core_with_none_reserved():
    choice = choose_cpu_engine(AVX2_LAPTOP)
    assert (choice.dtype, choice.threads, choice.bind, choice.reserved_cpus) == ("float32", 2, "0-1", 0)
    assert choice.vllm_environment() == {
        "VLLM_CPU_OMP_THREADS_BIND": "0-1",
        "VLLM_CPU_NUM_OF_RESERVED_CPU": "0",
        "VLLM_ENABLE_V1_MULTIPROCESSING": "0",  # every core is the engine's: it runs inside the process
    }
    assert choice.in_process
    assert "no native bfloat16" in choice.reason and "avx2" in choice.reason and "inside this process" in choice.reason


def test_native_bf16_instructions_keep_bfloat16_and_a_big_machine_reserves_one_core():
    choice = choose_cpu_engine(SAPPHIRE_RAPIDS)
    assert (choice.dtype, choice.threads, choice.bind, choice.reserved_cpus) == ("bfloat16", 31, "0-30", 1)
    # the worker binds its process's threads to 31 of 32 cores: it must not be the caller's process
    assert not choice.in_process and choice.vllm_environment()["VLLM_ENABLE_V1_MULTIPROCESSING"] == "1"


def test_arm_bf16_feature_counts_as_native():
    assert choose_cpu_engine(GRAVITON3).dtype == "bfloat16"


def test_configuration_overrides_dtype_and_threads():
    assert choose_cpu_engine(AVX2_LAPTOP, dtype="bfloat16").dtype == "bfloat16"
    assert choose_cpu_engine(SAPPHIRE_RAPIDS, dtype="fp32").dtype == "float32"
    one = choose_cpu_engine(SAPPHIRE_RAPIDS, threads=4)
    assert (one.threads, one.bind, one.reserved_cpus) == (4, "0-3", 0)
    assert not one.in_process  # 4 of 32 cores: binding the caller's threads there would starve it
    with pytest.raises(ValueError, match="cpu_threads"):
        choose_cpu_engine(AVX2_LAPTOP, threads=0)


def test_the_cores_a_process_may_use_are_bound_as_ranges():
    pinned = CpuFeatures(frozenset({"avx2"}), (2, 3, 4, 8))
    assert choose_cpu_engine(pinned).bind == "2-4,8"


def test_cpuinfo_flags_are_parsed():
    features = read_cpu_features(EPYC_CPUINFO, cores=(0, 1))
    assert {"avx2", "fma"} <= features.flags and not features.native_bf16
    assert choose_cpu_engine(features).dtype == "float32"
