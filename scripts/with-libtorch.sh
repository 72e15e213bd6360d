#!/usr/bin/env bash
# Run a command with the environment tch needs to build and run:
#   - a user's own LIBTORCH is respected (tch links against it);
#   - otherwise libtorch comes from the cached PyTorch venv
#     (scripts/bootstrap-libtorch.sh), through LIBTORCH_USE_PYTORCH=1.
# EIGENTRACE_PYTHON is exported as that venv's python: the tests that compare
# against PyTorch itself run it. With --no-python and a user LIBTORCH, no venv
# is created at all.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
need_python=1
if [ "${1:-}" = "--no-python" ]; then need_python=0; shift; fi

if [ -n "${LIBTORCH:-}" ]; then
  unset LIBTORCH_USE_PYTORCH
  if [ "$need_python" = 1 ]; then
    export EIGENTRACE_PYTHON="${EIGENTRACE_PYTHON:-$("$here/bootstrap-libtorch.sh")}"
  fi
else
  py="$("$here/bootstrap-libtorch.sh")"
  venv="$(dirname "$(dirname "$py")")"
  export EIGENTRACE_PYTHON="$py"
  export VIRTUAL_ENV="$venv"
  export PATH="$venv/bin:$PATH"
  export LIBTORCH_USE_PYTORCH=1
fi
exec "$@"
