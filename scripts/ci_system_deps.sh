#!/usr/bin/env bash
# System packages the test suite needs beyond Python: headless Chromium (+ a font) for tests/test_ui.py,
# which drives the Dagster web UI through Playwright with the system browser (Playwright's own browser
# download is never used); SLURM and MUNGE for tests/test_slurm.py, which starts its own single-node
# cluster (munged, slurmctld, slurmd as root, on a private configuration; no system service is enabled).
# For Debian/Ubuntu-style machines with apt; run as root (or with sudo).
# Idempotent and quiet: does nothing when everything is already installed.
set -euo pipefail

packages=(chromium fonts-liberation slurmctld slurmd slurm-client munge)

missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' || missing+=("$package")
done
if [ "${#missing[@]}" -eq 0 ]; then
  exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "ci_system_deps.sh: apt-get not found; install ${missing[*]} yourself" \
       "(tests/test_ui.py skips without Chromium, tests/test_slurm.py without SLURM)" >&2
  exit 1
fi
sudo=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then sudo=(sudo); else
    echo "ci_system_deps.sh: run as root to install ${missing[*]}" >&2
    exit 1
  fi
fi

echo "ci_system_deps.sh: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
for tool in chromium sbatch slurmctld slurmd munged; do
  command -v "$tool" >/dev/null 2>&1 || { echo "ci_system_deps.sh: $tool is still not on PATH" >&2; exit 1; }
done
