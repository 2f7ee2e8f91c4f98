# Sourced by scripts/setup.sh, scripts/lock.sh and .ci/run: which Pythons croco supports, how an
# interpreter is picked, and the uv that writes and reads uv.lock.

# Supported: Python 3.$CROCO_PYTHON_MIN to 3.$CROCO_PYTHON_MAX, the same range as requires-python in
# pyproject.toml (tests/test_packaging.py keeps the two equal).
CROCO_PYTHON_MIN=11
CROCO_PYTHON_MAX=14
# One uv version for locking, checking and installing: uv.lock's layout and resolution depend on it.
CROCO_UV_VERSION=0.13.9

croco_python_ok() {  # croco_python_ok INTERPRETER: true when INTERPRETER runs and is a supported Python
  "$1" -c "import sys; sys.exit(not ((3, $CROCO_PYTHON_MIN) <= sys.version_info[:2] <= (3, $CROCO_PYTHON_MAX)))" \
    >/dev/null 2>&1
}

croco_python_version() {  # croco_python_version INTERPRETER: prints e.g. 3.12
  "$1" -c 'import sys; print("%d.%d" % sys.version_info[:2])'
}

croco_candidates() {  # croco_candidates MINOR: commands that may run Python 3.MINOR, best first
  echo "python3.$1"
  # pyenv installs that no pyenv setting (global, local, PYENV_VERSION) puts on PATH.
  if command -v pyenv >/dev/null 2>&1; then
    local root version
    root=$(pyenv root)
    for version in $(pyenv versions --bare 2>/dev/null | grep -E "^3\.$1\.[0-9]+$" | sort -t. -k3,3nr); do
      echo "$root/versions/$version/bin/python3.$1"
    done
  fi
}

croco_pick_python() {
  # Prints the interpreter to use: $PYTHON when set (it must be supported), else python3 when it is supported,
  # else Python 3.13, 3.12, 3.11 (the versions the tests run on), then a newer supported one, each from PATH
  # or pyenv. Without one, says what to install and fails.
  if [ -n "${PYTHON:-}" ]; then
    if croco_python_ok "$PYTHON"; then echo "$PYTHON"; return 0; fi
    echo "croco: PYTHON=$PYTHON is not Python 3.$CROCO_PYTHON_MIN-3.$CROCO_PYTHON_MAX (or does not run)" >&2
    return 1
  fi
  local candidate minor
  local candidates=(python3)
  for minor in 13 12 11; do mapfile -t -O "${#candidates[@]}" candidates < <(croco_candidates "$minor"); done
  for ((minor = CROCO_PYTHON_MAX; minor > 13; minor--)); do
    mapfile -t -O "${#candidates[@]}" candidates < <(croco_candidates "$minor")
  done
  for candidate in "${candidates[@]}"; do
    if command -v "$candidate" >/dev/null 2>&1 && croco_python_ok "$candidate"; then echo "$candidate"; return 0; fi
  done
  local found="no python3 on PATH"
  command -v python3 >/dev/null 2>&1 && found="python3 is $(python3 --version 2>&1)"
  cat >&2 <<EOF
croco needs Python 3.$CROCO_PYTHON_MIN to 3.$CROCO_PYTHON_MAX ($found, and no python3.11-python3.$CROCO_PYTHON_MAX
on PATH). Install one, then run this again, or point PYTHON at one:
  Debian/Ubuntu:  sudo apt install python3.12 python3.12-venv   (or whichever 3.11-3.$CROCO_PYTHON_MAX your release has)
  Fedora:         sudo dnf install python3.12
  uv:             uv python install 3.12, then PYTHON=\$(uv python find 3.12)
EOF
  return 1
}

croco_newest_python() {  # prints the newest supported Python the machine has (nothing when there is none)
  local minor candidate
  for ((minor = CROCO_PYTHON_MAX; minor >= CROCO_PYTHON_MIN; minor--)); do
    for candidate in $(croco_candidates "$minor"); do
      if croco_python_ok "$candidate"; then
        echo "$candidate"
        return 0
      fi
    done
  done
}

croco_ensure_uv() {  # croco_ensure_uv VENV_PYTHON: installs the pinned uv into that environment if needed
  local py=$1
  if [ "$("$py" -m uv --version 2>/dev/null | cut -d' ' -f2)" != "$CROCO_UV_VERSION" ]; then
    "$py" -m pip install --quiet "uv==$CROCO_UV_VERSION"
  fi
}
