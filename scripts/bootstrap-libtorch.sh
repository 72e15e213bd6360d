#!/usr/bin/env bash
# Ensure a Python venv holding torch==$TORCH_VERSION (libtorch for tch) exists,
# and print the path of its python on stdout.
#
# - The venv lives in a per-user cache keyed by the torch version:
#     ${EIGENTRACE_TORCH_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/eigentrace/torch-$TORCH_VERSION}
#   EIGENTRACE_TORCH_VENV overrides the location.
# - Idempotent: when the venv is complete (a stamp file marks it), this returns
#   at once without touching the network.
# - A user's own LIBTORCH is respected by the Makefile, which then skips this
#   script entirely for the build (tests that need PyTorch still use the venv).
set -euo pipefail

TORCH_VERSION="${TORCH_VERSION:-2.13.0}"
VENV="${EIGENTRACE_TORCH_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/eigentrace/torch-$TORCH_VERSION}"
STAMP="$VENV/.eigentrace-complete"
# What the tests' Python references need besides torch. The stamp records this
# list: a venv made with an older list gets the missing packages added.
EXTRAS="numpy scipy safetensors pyarrow pyhessian==0.1"

if [ -f "$STAMP" ] && [ -x "$VENV/bin/python" ]; then
  if [ "$(cat "$STAMP")" = "$EXTRAS" ]; then
    echo "$VENV/bin/python"
    exit 0
  fi
  echo "bootstrap-libtorch: adding $EXTRAS to $VENV" >&2
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-cache-dir $EXTRAS >&2
  echo "$EXTRAS" > "$STAMP"
  echo "$VENV/bin/python"
  exit 0
fi

PY="${PYTHON:-python3}"
command -v "$PY" >/dev/null || { echo "bootstrap-libtorch: $PY not found; install Python 3.10+" >&2; exit 2; }

echo "bootstrap-libtorch: installing torch==$TORCH_VERSION into $VENV (one time, ~5 GB, ~2 min)" >&2
mkdir -p "$(dirname "$VENV")"
# Build in a temp dir next to the target, then rename: an interrupted install
# never looks complete.
TMP="$VENV.tmp.$$"
rm -rf "$TMP"
trap 'rm -rf "$TMP"' EXIT
"$PY" -m venv "$TMP"
"$TMP/bin/python" -m pip install --quiet --disable-pip-version-check --no-cache-dir \
  "torch==$TORCH_VERSION" $EXTRAS >&2
# venv scripts embed their own path; recreate the venv in place after the move.
rm -rf "$VENV"
mv "$TMP" "$VENV"
trap - EXIT
"$PY" -m venv --upgrade "$VENV" >/dev/null
"$VENV/bin/python" -c "import torch, numpy, scipy, safetensors, pyarrow, pyhessian; print(torch.__version__)" >&2
echo "$EXTRAS" > "$STAMP"
echo "$VENV/bin/python"
