#!/usr/bin/env bash
# Make an environment of EuroEval's own for the euroeval_scores asset: EuroEval 17.0.0, the version the paper
# ran, needs Python >= 3.12 and transformers < 5, so it cannot share croco's environment (transformers 5).
# Then point croco at it:  export CROCO_EUROEVAL_PYTHON=$PWD/.venv-euroeval/bin/python
#   PYTHON      interpreter to build it with (default: the first of python3.13, python3.12 found)
#   EUROEVAL_VENV  where (default .venv-euroeval)
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${EUROEVAL_VENV:-.venv-euroeval}
python=${PYTHON:-}
if [ -z "$python" ]; then
  for candidate in python3.13 python3.12; do
    if command -v "$candidate" >/dev/null 2>&1; then python=$candidate; break; fi
  done
fi
if [ -z "$python" ] || ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 12))'; then
  echo "euroeval_env.sh: EuroEval 17.0.0 needs Python 3.12 or newer; install python3.12 or set PYTHON" >&2
  exit 1
fi
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --upgrade pip
# vLLM is EuroEval's engine for generative models on GPUs: add euroeval[generative] there.
"$venv/bin/python" -m pip install --quiet "euroeval==17.0.0"
echo "euroeval_env.sh: ready; export CROCO_EUROEVAL_PYTHON=$PWD/$venv/bin/python"
