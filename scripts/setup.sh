#!/usr/bin/env bash
# Set-up on a fresh machine: the Debian packages mixc needs (flite: the demo's TTS voices), uv, and
# the pinned environment (.venv, from pyproject.toml). Safe to rerun: it installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

debian=(flite)
missing=()
for pkg in "${debian[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if ((${#missing[@]})); then
  sudo=(); [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" apt-get install -y -q "${missing[@]}" >/dev/null \
    || { "${sudo[@]}" apt-get update -q >/dev/null && "${sudo[@]}" apt-get install -y -q "${missing[@]}" >/dev/null; }
fi

if command -v uv >/dev/null 2>&1; then uv=(uv); else
  python3 -m pip install --quiet uv
  uv=(python3 -m uv)
fi
# byte-compile once here (imports of torch, streaming and composer cost seconds each without .pyc
# files where Python cannot write them), not on every `uv run`
"${uv[@]}" sync --quiet --compile-bytecode
