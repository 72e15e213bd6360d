#!/usr/bin/env bash
# The report test loads index.html in headless Chromium (Debian's package).
# Install it when missing and we can (root with apt-get); otherwise say so:
# the test then reports itself skipped outside CI, and fails in CI.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then exit 0; fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "ensure-chromium: installing Debian's chromium (one time)" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq chromium >&2
else
  echo "ensure-chromium: chromium is not installed and cannot be installed here; the headless-browser test will be skipped" >&2
fi
